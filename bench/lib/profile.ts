/**
 * Where the CLI bundle's CPU goes: a summary of V8 CPU profiles (`node --cpu-prof`, written by
 * `npm run bench -- --profile DIR`) for docs/benchmarks.md.
 *
 * Self time per profile node comes from `samples` and `timeDeltas` (each sample's delta counted for that sample).
 * Frames of the esbuild bundle are mapped to their original source with the bundle's external source map (Node's
 * own `SourceMap`), then grouped: node_modules by package (`@aws-sdk/*` and `@smithy/*` as one each), project
 * code by folder (`functions/core`), Node's JS by module family (`node:streams`), and V8's own entries
 * (`(garbage collector)`, `(program)`). Native frames (empty url: a builtin like `Buffer.concat`'s C++ part)
 * count for the nearest ancestor with a category, so native work shows under who called it. `(idle)` is reported
 * apart; shares are of the non-idle time. The samples are of the main thread's wall time: a syscall (a socket
 * write, an fsync under SQLite) counts with the time the thread waited in it or for a CPU, while work on other
 * threads (libuv's pool, GC helpers) is not seen, so the busy total is not the process's CPU time.
 *
 * Several profiles (the runs of one contender) are summed: pass them together to `summarizeProfile`.
 *
 * CLI: `npx tsx bench/lib/profile.ts FILE.cpuprofile [FILE ...] --map tributary.cjs.map [--top N]
 * [--categories N]` prints one markdown section per directory of profiles (one directory per contender).
 */
import fs from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface ProfileSummary {
  /** Profiles summed into this summary. */
  profiles: number;
  /** Sampled time, idle included. */
  totalMs: number;
  idleMs: number;
  /** By self time, largest first; `share` is of `totalMs - idleMs`. `(idle)` is not listed. */
  categories: Array<{ name: string; selfMs: number; share: number }>;
  /** Functions by self time (all call paths of one function summed); `where` is `file:line` of the original. */
  top: Array<{ name: string; where: string; selfMs: number; share: number }>;
}

/** The parts of a `.cpuprofile` (V8's Profiler.Profile) read here. */
interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }>;
  samples?: number[];
  timeDeltas?: number[];
}

/** A frame once located: `category` undefined for a native frame, which takes its caller's. */
interface Frame {
  category: string | undefined;
  name: string;
  where: string;
}

const IDLE = '(idle)';
/** The tree's top: a category of its own (always ~0 ms), none to give to the natives right under it. */
const ROOT = '(root)';
/** Native frames with no JS frame above them. */
const NATIVE = '(native)';

/** The repository's top-level folders: a source path is cut to start at the first of them. */
const REPO_DIRS = new Set(['functions', 'bench', 'scripts', 'infra', 'test', 'bin', 'eslint']);
const REPO_ROOT = path.resolve(__dirname, '..', '..');

/**
 * A source path made repo-relative (`functions/core/x.ts`, `node_modules/<pkg>/…`), whatever the directory the
 * map was written from: never an absolute path of this machine.
 */
export function repoPath(source: string): string {
  const s = source.replace(/\\/g, '/');
  const nm = s.lastIndexOf('node_modules/');
  if (nm >= 0) return s.slice(nm);
  const parts = s.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  const absolute = `/${parts.join('/')}`;
  if (absolute.startsWith(`${REPO_ROOT}/`)) return path.relative(REPO_ROOT, absolute).replace(/\\/g, '/');
  const top = parts.findIndex((p) => REPO_DIRS.has(p));
  if (top >= 0) return parts.slice(top).join('/');
  return parts.slice(-2).join('/');
}

/** The category of a repo-relative source: its package under node_modules, else its folder. */
export function sourceCategory(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'node_modules') {
    const name = parts[1] ?? '?';
    if (name === '@aws-sdk' || name === '@smithy') return name;
    return name.startsWith('@') ? `${name}/${parts[2] ?? '?'}` : name;
  }
  return parts.length > 1 ? parts.slice(0, -1).join('/') : file;
}

/** Node's built-in JS (`node:internal/streams/readable`) by family; the rest is `node:other`. */
const NODE_FAMILIES: Array<[RegExp, string]> = [
  [/^(stream|internal\/streams\/|internal\/webstreams\/)/, 'node:streams'],
  [/^(tls|_tls_|internal\/tls\/)/, 'node:tls'],
  [/^(crypto|internal\/crypto\/)/, 'node:crypto'],
  // stream_base_commons is the socket write path (writeGeneric, onStreamRead).
  [/^(net|internal\/net|internal\/stream_base_commons)/, 'node:net'],
  [/^(buffer|internal\/buffer)/, 'node:buffer'],
  // Big in a CLI's short run: loading (compiling) the bundle and Node's own modules; then the file system.
  [/^(internal\/modules\/|internal\/bootstrap\/)/, 'node:modules'],
  [/^(fs|internal\/fs\/)/, 'node:fs'],
];

export function nodeCategory(url: string): string {
  const id = url.slice('node:'.length);
  return NODE_FAMILIES.find(([re]) => re.test(id))?.[1] ?? 'node:other';
}

/** Source maps by file, parsed once (the bundle's map is ~10 MB). */
const maps = new Map<string, { map: SourceMap; bundle: string }>();

function loadMap(file: string): { map: SourceMap; bundle: string } {
  let loaded = maps.get(file);
  if (!loaded) {
    const payload = JSON.parse(fs.readFileSync(file, 'utf8')) as SourceMapPayload;
    // esbuild's external map has no `file`: the bundle is the map's name without `.map`.
    const bundle = payload.file ? path.basename(payload.file) : path.basename(file).replace(/\.map$/, '');
    loaded = { map: new SourceMap(payload), bundle };
    maps.set(file, loaded);
  }
  return loaded;
}

/** Where a call frame's function is, and its category (undefined for a native frame). */
function locate(
  frame: CpuProfile['nodes'][number]['callFrame'],
  sourceMap: { map: SourceMap; bundle: string } | undefined,
): Frame {
  const { url, lineNumber, columnNumber } = frame;
  const name = frame.functionName || '(anonymous)';
  if (url === '') {
    if (/^\(.*\)$/.test(frame.functionName)) return { category: frame.functionName, name, where: '' };
    return { category: undefined, name: frame.functionName || NATIVE, where: 'native' };
  }
  if (url.startsWith('node:'))
    return { category: nodeCategory(url), name, where: `${url}:${lineNumber + 1}` };
  if (!url.startsWith('file:')) return { category: '(other)', name, where: url };
  const file = fileURLToPath(url);
  const base = path.basename(file);
  if (sourceMap && base === sourceMap.bundle) {
    // findEntry: the last mapping at or before the position (0-based line and column), {} before the first.
    const entry = sourceMap.map.findEntry(lineNumber, columnNumber);
    if ('originalSource' in entry && entry.originalSource) {
      const source = repoPath(entry.originalSource);
      return { category: sourceCategory(source), name, where: `${source}:${entry.originalLine + 1}` };
    }
  }
  const source = repoPath(file);
  if (!source.startsWith('node_modules/') && (sourceMap === undefined || base === sourceMap.bundle)) {
    // The bundle with no map, or its unmapped head: esbuild's helpers (`__require` runs a bundled CommonJS
    // module the first time it is required, `__init` an ES module) and the bundle's top level.
    return { category: `${base} (unmapped)`, name, where: `${base}:${lineNumber + 1}` };
  }
  return { category: sourceCategory(source), name, where: `${source}:${lineNumber + 1}` };
}

/** Self time in µs by category and by function, over one or more profiles. */
interface Totals {
  profiles: number;
  totalUs: number;
  categories: Map<string, number>;
  functions: Map<string, { name: string; where: string; us: number }>;
}

function add(
  totals: Totals,
  profile: CpuProfile,
  sourceMap: { map: SourceMap; bundle: string } | undefined,
): void {
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (deltas[i] ?? 0)));
  totals.profiles++;
  totals.totalUs += deltas.reduce((a, b) => a + b, 0);

  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const frames = new Map<number, Frame>();
  const frameOf = (id: number): Frame => {
    let f = frames.get(id);
    if (!f) {
      f = locate(byId.get(id)!.callFrame, sourceMap);
      frames.set(id, f);
    }
    return f;
  };
  // What a native frame under a node counts for: the node's own category, else (a native itself) what it
  // counts for; (root) has no category to give.
  const passed = new Map<number, string>();
  const passedDown = (id: number): string => {
    const chain: number[] = [];
    let found: string | undefined;
    for (let at: number | undefined = id; at !== undefined && !found; at = parent.get(at)) {
      const own = frameOf(at).category;
      found = passed.get(at) ?? (own === ROOT ? NATIVE : own);
      chain.push(at);
    }
    for (const at of chain) passed.set(at, found ?? NATIVE);
    return found ?? NATIVE;
  };
  const categoryOf = (id: number): string => {
    const up = parent.get(id);
    return frameOf(id).category ?? (up === undefined ? NATIVE : passedDown(up));
  };

  for (const [id, us] of selfUs) {
    if (!byId.has(id)) continue;
    const cat = categoryOf(id);
    totals.categories.set(cat, (totals.categories.get(cat) ?? 0) + us);
    const f = frameOf(id);
    const where = f.category === undefined ? `native, in ${cat}` : f.where;
    const key = `${f.name}\0${where}`;
    const fn = totals.functions.get(key) ?? { name: f.name, where, us: 0 };
    fn.us += us;
    totals.functions.set(key, fn);
  }
}

/**
 * Summarizes one profile, or several summed (the runs of one contender: same bundle, same map). Without a
 * source map, the bundle's frames are one `tributary.cjs (unmapped)` category.
 */
export function summarizeProfile(
  profileFile: string | string[],
  sourceMapFile?: string,
  options: { top?: number } = {},
): ProfileSummary {
  const sourceMap = sourceMapFile ? loadMap(sourceMapFile) : undefined;
  const totals: Totals = { profiles: 0, totalUs: 0, categories: new Map(), functions: new Map() };
  for (const file of typeof profileFile === 'string' ? [profileFile] : profileFile) {
    add(totals, JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile, sourceMap);
  }
  const totalMs = totals.totalUs / 1000;
  const idleMs = (totals.categories.get(IDLE) ?? 0) / 1000;
  const busyMs = totalMs - idleMs;
  const share = (ms: number): number => (busyMs > 0 ? ms / busyMs : 0);
  const categories = [...totals.categories]
    .filter(([name]) => name !== IDLE)
    .map(([name, us]) => ({ name, selfMs: us / 1000, share: share(us / 1000) }))
    .sort((a, b) => b.selfMs - a.selfMs);
  const top = [...totals.functions.values()]
    .filter((f) => f.name !== IDLE && f.name !== ROOT)
    .sort((a, b) => b.us - a.us)
    .slice(0, options.top ?? 20)
    .map((f) => ({ name: f.name, where: f.where, selfMs: f.us / 1000, share: share(f.us / 1000) }));
  return { profiles: totals.profiles, totalMs, idleMs, categories, top };
}

const ms = (n: number): string => n.toFixed(n < 10 ? 1 : 0);
const pct = (n: number): string => `${(n * 100).toFixed(1)} %`;
const cell = (s: string): string => s.replace(/\|/g, '\\|');

/**
 * A markdown section: the categories (the first `categories`, default 15, the rest in one row), then the top
 * functions. Not aligned: docs/benchmarks.md goes through prettier.
 */
export function summaryMarkdown(
  title: string,
  s: ProfileSummary,
  options: { categories?: number } = {},
): string {
  const busy = s.totalMs - s.idleMs;
  const runs = s.profiles === 1 ? '1 profile' : `${s.profiles} profiles summed`;
  const lines = [
    `### ${title}`,
    '',
    `${runs}: ${ms(busy)} ms busy, ${ms(s.idleMs)} ms idle not counted. Self time; native code counts for its caller.`,
    '',
    '| Category | ms | % |',
    '| --- | ---: | ---: |',
  ];
  const shown = options.categories ?? 15;
  for (const c of s.categories.slice(0, shown))
    lines.push(`| ${cell(c.name)} | ${ms(c.selfMs)} | ${pct(c.share)} |`);
  const rest = s.categories.slice(shown);
  if (rest.length > 0) {
    const restMs = rest.reduce((a, c) => a + c.selfMs, 0);
    lines.push(`| ${rest.length} more | ${ms(restMs)} | ${pct(busy > 0 ? restMs / busy : 0)} |`);
  }
  lines.push('', '| Function | Where | ms | % |', '| --- | --- | ---: | ---: |');
  for (const f of s.top) {
    lines.push(`| ${cell(f.name)} | ${cell(f.where)} | ${ms(f.selfMs)} | ${pct(f.share)} |`);
  }
  return `${lines.join('\n')}\n`;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      map: { type: 'string' },
      top: { type: 'string', default: '20' },
      categories: { type: 'string', default: '15' },
    },
  });
  if (positionals.length === 0) {
    console.error(
      'usage: tsx bench/lib/profile.ts FILE.cpuprofile [FILE ...] --map tributary.cjs.map [--top N] [--categories N]',
    );
    process.exit(2);
  }
  // One section per directory: `--profile DIR` writes DIR/<contender>/*.cpuprofile.
  const groups = new Map<string, string[]>();
  for (const file of positionals) {
    const dir = path.dirname(path.resolve(file));
    groups.set(dir, [...(groups.get(dir) ?? []), file]);
  }
  const sections = [...groups].map(([dir, files]) =>
    summaryMarkdown(path.basename(dir), summarizeProfile(files, values.map, { top: Number(values.top) }), {
      categories: Number(values.categories),
    }),
  );
  console.log(sections.join('\n'));
}

if (require.main === module) main();
