import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { SIZING } from '../infra/service-stack';
import {
  CONTEXT_JS,
  HANDLER_NAMES,
  bundleSize,
  buildBundles,
  idleEvent,
  lambdaEnv,
  type BundleSize,
  type HandlerName,
} from './lib/lambda-host';

/**
 * The Lambda bundles (issue #14): each handler bundled with the stack's esbuild options, its size, and its cold
 * init in a plain Node process: a fresh `node` that requires the bundle and makes a first handler call with nothing
 * to do (the dispatcher with no source due, the sync function with an empty SQS batch, the API answering
 * GET /api/sources over an empty table), against DynamoDB Local. Timed inside the process from before `require`
 * to the end of that first call; the whole process (node start-up included) is timed from outside as well.
 */

/** Issue #17, item 6: cold init at most 300 ms in a plain Node process here. */
export const COLD_INIT_TARGET_MS = 300;

export interface ColdInitRun {
  /** require(bundle): reading, compiling and running the module's top level (the composition root). */
  loadMs: number;
  /** The first handler call, its first requests to DynamoDB included. */
  firstCallMs: number;
  /** loadMs + firstCallMs: the target's measure. */
  initMs: number;
  /** CPU of the process up to the end of the first call (node start-up included). */
  cpuMs: number;
  /** Spawn to exit, seen from outside: node's own start-up added. */
  processMs: number;
}

export interface LambdaHandlerFigures {
  name: HandlerName;
  memoryMb: number;
  size: BundleSize;
  runs: ColdInitRun[];
  initMs: { median: number; min: number; max: number };
  loadMs: number;
  firstCallMs: number;
  processMs: number;
  cpuMs: number;
  meetsTarget: boolean;
}

export interface LambdaFigures {
  handlers: LambdaHandlerFigures[];
  runs: number;
  targetMs: number;
}

const COLD = String.raw`
'use strict';
${CONTEXT_JS}
const fs = require('node:fs');
const [bundle, name, memoryMb, eventFile, resultFile] = process.argv.slice(2);
const event = JSON.parse(fs.readFileSync(eventFile, 'utf8'));
setTraceHeader();
const t0 = process.hrtime.bigint();
const mod = require(bundle);
const t1 = process.hrtime.bigint();
const done = (ok, result) => {
  const t2 = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  fs.writeFileSync(resultFile, JSON.stringify({ ok, result, loadMs: Number(t1 - t0) / 1e6, firstCallMs: Number(t2 - t1) / 1e6, cpuMs: (cpu.user + cpu.system) / 1000 }));
  process.exit(0);
};
Promise.resolve()
  .then(() => mod.handler(event, lambdaContext(name, Number(memoryMb), Date.now() + 30000)))
  .then((r) => done(true, r === undefined ? null : r), (err) => done(false, String(err && err.message)));
`;

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};

/** Whether the first call did what a call with nothing to do should (and so measured the real path). */
function answered(name: HandlerName, result: unknown): boolean {
  const r = result as Record<string, unknown> | null;
  switch (name) {
    case 'dispatch':
      return Array.isArray(r?.dispatched) && (r.dispatched as unknown[]).length === 0;
    case 'sync':
      return Array.isArray(r?.batchItemFailures) && (r.batchItemFailures as unknown[]).length === 0;
    case 'api':
      return r?.statusCode === 200 && String(r.body).includes('"sources":[]');
  }
}

export function memoryOf(name: HandlerName): number {
  return SIZING[name].memorySize;
}

/** One cold start of `name`: a fresh node process, the bundle required, one call with nothing to do. */
export async function coldInit(
  dir: string,
  bundle: string,
  name: HandlerName,
  env: Record<string, string>,
): Promise<ColdInitRun> {
  const script = path.join(dir, 'cold.cjs');
  if (!fs.existsSync(script)) fs.writeFileSync(script, COLD);
  const eventFile = path.join(dir, `event-${name}.json`);
  fs.writeFileSync(eventFile, JSON.stringify(idleEvent(name)));
  const resultFile = path.join(dir, `cold-${name}-${process.pid}.json`);
  fs.rmSync(resultFile, { force: true });
  const memoryMb = memoryOf(name);
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, [script, bundle, name, String(memoryMb), eventFile, resultFile], {
    env: { ...process.env, ...env, ...lambdaEnv(name, memoryMb) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4000)));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output = (output + d).slice(-4000)));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const processMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (!fs.existsSync(resultFile)) throw new Error(`${name}: cold start exited ${code}: ${output}`);
  const r = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as {
    ok: boolean;
    result: unknown;
    loadMs: number;
    firstCallMs: number;
    cpuMs: number;
  };
  fs.rmSync(resultFile, { force: true });
  if (!r.ok || !answered(name, r.result))
    throw new Error(
      `${name}: the first call did not answer as expected: ${JSON.stringify(r.result)}\n${output}`,
    );
  return {
    loadMs: r.loadMs,
    firstCallMs: r.firstCallMs,
    initMs: r.loadMs + r.firstCallMs,
    cpuMs: r.cpuMs,
    processMs,
  };
}

/**
 * Sizes and cold inits of the three handlers. `env`: the stand-ins' endpoints and the functions' variables
 * (TABLE_NAME of an empty table, BUCKET_NAME, QUEUE_URL, SECRETS_PREFIX). One unmeasured start of each first (the
 * bundle read from disk once), then `runs` measured rounds, the handlers in turn.
 */
export async function benchLambda(options: {
  dir: string;
  env: Record<string, string>;
  runs?: number;
  log?: (line: string) => void;
}): Promise<LambdaFigures> {
  const runs = options.runs ?? 7;
  const dir = path.join(options.dir, 'lambda');
  fs.mkdirSync(dir, { recursive: true });
  const bundles = await buildBundles(dir, 'deployed');
  const measured = new Map<HandlerName, ColdInitRun[]>(HANDLER_NAMES.map((n) => [n, []]));
  for (const name of HANDLER_NAMES) await coldInit(dir, bundles[name], name, options.env);
  for (let round = 0; round < runs; round++)
    for (const name of HANDLER_NAMES)
      measured.get(name)!.push(await coldInit(dir, bundles[name], name, options.env));
  const handlers = HANDLER_NAMES.map((name): LambdaHandlerFigures => {
    const rs = measured.get(name)!;
    const inits = rs.map((r) => r.initMs);
    const figures: LambdaHandlerFigures = {
      name,
      memoryMb: memoryOf(name),
      size: bundleSize(bundles[name]),
      runs: rs,
      initMs: { median: median(inits), min: Math.min(...inits), max: Math.max(...inits) },
      loadMs: median(rs.map((r) => r.loadMs)),
      firstCallMs: median(rs.map((r) => r.firstCallMs)),
      processMs: median(rs.map((r) => r.processMs)),
      cpuMs: median(rs.map((r) => r.cpuMs)),
      meetsTarget: median(inits) <= COLD_INIT_TARGET_MS,
    };
    options.log?.(lambdaLine(figures));
    return figures;
  });
  return { handlers, runs, targetMs: COLD_INIT_TARGET_MS };
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(0)} KB`;
const ms = (x: number) => x.toFixed(0);

export function lambdaLine(h: LambdaHandlerFigures): string {
  return (
    `${h.name}: bundle ${kb(h.size.jsBytes)} (+ ${kb(h.size.mapBytes)} map, zip ~${kb(h.size.gzipBytes)}), ` +
    `cold init ${ms(h.initMs.median)} ms (${ms(h.initMs.min)}-${ms(h.initMs.max)}; load ${ms(h.loadMs)} + first call ${ms(h.firstCallMs)}), ` +
    `process ${ms(h.processMs)} ms; target ${COLD_INIT_TARGET_MS} ms: ${h.meetsTarget ? 'met' : 'missed'}`
  );
}

/** The table bench/run.ts writes into docs/benchmarks.md. */
export function lambdaTable(figures: LambdaFigures): string {
  const rows = [
    `| function | memory | bundle (minified) | source map | zip (gzip of both) | cold init ms, median of ${figures.runs} (range) | require / first call ms | whole process ms | target ${figures.targetMs} ms |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const h of figures.handlers) {
    rows.push(
      `| ${h.name} | ${h.memoryMb} MB | ${kb(h.size.jsBytes)} | ${kb(h.size.mapBytes)} | ${kb(h.size.gzipBytes)} | ${ms(h.initMs.median)} (${ms(h.initMs.min)}-${ms(h.initMs.max)}) | ${ms(h.loadMs)} / ${ms(h.firstCallMs)} | ${ms(h.processMs)} | ${h.meetsTarget ? 'met' : '**missed**'} |`,
    );
  }
  rows.push(
    '',
    'Cold init: a fresh `node` process (NODE_OPTIONS=--enable-source-maps, as deployed) that requires the bundle built with the stack\'s esbuild options and calls the handler once with nothing to do (dispatch: no source due; sync: an empty SQS batch; api: GET /api/sources with JWT claims over an empty table), against DynamoDB Local; timed from before `require` to the end of that call. "Whole process" adds node\'s own start-up, timed from outside. One unmeasured start of each first.',
  );
  return rows.join('\n');
}
