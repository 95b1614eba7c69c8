import fs from 'node:fs';
import { z } from 'zod';
import { gbSeconds, lambdaDurationMs } from './cost-model';

/**
 * docs/benchmarks.json: the figures of `npm run bench` (bench/run.ts) that other reports read, beside
 * docs/benchmarks.md. `npm run cost` (bench/cost.ts) prices its imports in docs/cost.md.
 */
export interface BenchFigures {
  /** ISO time of the bench run. */
  generated: string;
  /** Short commit of the run (may end in "+dirty"). */
  commit: string;
  /** The machine, one line. */
  machine: string;
  /** The sync function's memorySize in the deploy stack (SIZING.sync.memorySize, infra/service-stack.ts). */
  lambdaMemoryMb: number;
  imports: BenchImport[];
}

/** One full sync of a corpus into an empty store, as the bench measured it (medians of its runs). */
export interface BenchImport {
  /** e.g. "2,000 mixed (835 MB)" or "10,000 small (100 MB)". */
  corpus: string;
  protocol: 'imap' | 'pop3';
  messages: number;
  bytes: number;
  /** Tributary's own process CPU (user + system), median of the runs, store without delay. */
  ownCpuMs: number;
  /** In-process sync time, store without delay. */
  wallMs: number;
  /** In-process sync time with every S3/DynamoDB request delayed 20 ms (absent if not measured). */
  storeLatencyWallMs?: number;
  /** Computed by gbSecondsPer1000() at lambdaMemoryMb. */
  gbSecondsPer1000: number;
}

const ms = z.number().finite().nonnegative();

const importSchema: z.ZodType<BenchImport> = z.object({
  corpus: z.string().min(1),
  protocol: z.enum(['imap', 'pop3']),
  messages: z.number().int().positive(),
  bytes: z.number().int().nonnegative(),
  ownCpuMs: ms,
  wallMs: ms,
  storeLatencyWallMs: ms.optional(),
  gbSecondsPer1000: z.number().finite().nonnegative(),
});

const figuresSchema: z.ZodType<BenchFigures> = z.object({
  generated: z.iso.datetime({ offset: true }),
  commit: z.string().min(1),
  machine: z.string(),
  lambdaMemoryMb: z.number().int().min(128).max(10_240),
  imports: z.array(importSchema),
});

/**
 * Reads and checks a figures file. Undefined when it does not exist (the bench has not been run); an Error naming
 * the file and what is wrong when it is not JSON or not of this shape.
 */
export function readBenchFigures(file: string): BenchFigures | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const result = figuresSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new Error(
      `${file} is not a bench figures file (bench/lib/bench-figures.ts):\n  - ${issues.join('\n  - ')}`,
    );
  }
  return result.data;
}

/** The measured times of an import that its Lambda duration is estimated from. */
export type ImportTimes = Pick<BenchImport, 'messages' | 'ownCpuMs' | 'wallMs' | 'storeLatencyWallMs'>;

/** The estimate of gbSecondsPer1000() with its parts (for docs/cost.md). */
export interface LambdaImportEstimate {
  /** The whole import on Lambda, ms. */
  durationMs: number;
  /** `wall`: the measured sync time set it; `cpu`: the own CPU at the memory's vCPU share did. */
  bound: 'wall' | 'cpu';
  /** Whether the wall time is the one with every S3/DynamoDB request delayed (storeLatencyWallMs). */
  storeLatency: boolean;
  durationPer1000Ms: number;
  gbSecondsPer1000: number;
}

/** gbSecondsPer1000() and the figures it comes from (the reasoning is there). */
export function lambdaImportEstimate(row: ImportTimes, memoryMb: number): LambdaImportEstimate {
  const wallMs = row.storeLatencyWallMs ?? row.wallMs;
  // The CPU at the memory's vCPU share, no waits (cost-model.ts; rounded up to the ms).
  const cpuBoundMs = lambdaDurationMs({ cpuMs: row.ownCpuMs, waitMs: 0 }, memoryMb);
  const durationMs = Math.max(wallMs, cpuBoundMs);
  const durationPer1000Ms = (durationMs * 1000) / row.messages;
  return {
    durationMs,
    bound: cpuBoundMs > wallMs ? 'cpu' : 'wall',
    storeLatency: row.storeLatencyWallMs !== undefined,
    durationPer1000Ms,
    gbSecondsPer1000: gbSeconds(durationPer1000Ms, memoryMb),
  };
}

/**
 * Lambda GB-seconds per 1,000 messages of an import run by the sync function at `memoryMb`. Lambda bills duration
 * x memory; the duration is estimated from what the bench measured:
 *
 *     duration = max(storeLatencyWallMs ?? wallMs, ownCpuMs / vcpuShare(memoryMb))
 *     GB-s per 1,000 = duration (s) x 1000 / messages x memoryMb / 1024
 *
 * - The wall time: the bench's S3 and DynamoDB stand-ins answer over loopback; with every request delayed 20 ms the
 *   sync's time stands for the in-region latency a Lambda function sees (the time without delay, an underestimate,
 *   when that was not measured). The bench's mail server is on the same machine and sends as fast as it can: a
 *   slower server makes the import longer (docs/cost.md models that with an upstream rate).
 * - The CPU: Lambda gives CPU in proportion to memory, one whole vCPU at 1,769 MB (vcpuShare, cost-model.ts). The
 *   bench's own CPU (user + system of Tributary's process) ran on a whole core, taken as equal to a Graviton vCPU,
 *   so below 1,769 MB the same work takes ownCpuMs / share. The sync is mostly single-threaded: above 1,769 MB the
 *   share stays 1 and more memory only costs more.
 * - The larger of the two, not their sum: the engine pipelines fetching, hashing and storing, so the waits on the
 *   store overlap the CPU work, and with a whole vCPU the wall time already contains the CPU time. At small memory
 *   sizes, where a throttled CPU may not hide every wait, this is a lower estimate.
 */
export function gbSecondsPer1000(importRow: ImportTimes, memoryMb: number): number {
  return lambdaImportEstimate(importRow, memoryMb).gbSecondsPer1000;
}
