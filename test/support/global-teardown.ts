import fs from 'node:fs';

/** Stops every server the global setup started and removes the scratch folder: nothing is left running. */
export default async function globalTeardown(): Promise<void> {
  const globals = globalThis as {
    __TRIBUTARY_HARNESS__?: { scratch: string; stops: Array<() => Promise<void>> };
  };
  const harness = globals.__TRIBUTARY_HARNESS__;
  if (!harness) return;
  await Promise.all(harness.stops.map((stop) => stop()));
  if (!process.env.TRIBUTARY_KEEP_SCRATCH) fs.rmSync(harness.scratch, { recursive: true, force: true });
}
