import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoPath, sourceCategory, summarizeProfile, summaryMarkdown } from '../../../bench/lib/profile';

/** The CPU profile summary of docs/benchmarks.md (bench/lib/profile.ts) on hand-made profiles. */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-profile-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const BUNDLE = 'file:///tmp/tributary-bench-x/build/tributary.cjs';

function frame(id: number, functionName: string, url = '', line = -1, column = -1, children?: number[]) {
  return {
    id,
    callFrame: { functionName, scriptId: '0', url, lineNumber: line, columnNumber: column },
    hitCount: 0,
    ...(children ? { children } : {}),
  };
}

/** Writes a profile whose node `id` has `selfUs[id]` µs of samples (in 1 ms samples, in node order). */
function profile(
  name: string,
  nodes: Array<ReturnType<typeof frame>>,
  selfUs: Record<number, number>,
): string {
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  for (const [id, us] of Object.entries(selfUs)) {
    for (let left = us; left > 0; left -= 1000) {
      samples.push(Number(id));
      timeDeltas.push(Math.min(1000, left));
    }
  }
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify({ nodes, startTime: 0, endTime: 0, samples, timeDeltas }));
  return file;
}

// (root) > (program), (idle), (garbage collector), a stream function calling a native `concat`, a bundle
// function calling a native `createHash`, and a native directly under (root).
const nodes = [
  frame(1, '(root)', '', -1, -1, [2, 3, 4, 5, 7, 9]),
  frame(2, '(program)'),
  frame(3, '(idle)'),
  frame(4, '(garbage collector)'),
  frame(5, 'Readable.push', 'node:internal/streams/readable', 9, 2, [6]),
  frame(6, 'concat'),
  frame(7, 'handler', BUNDLE, 30, 4, [8]),
  frame(8, 'createHash'),
  frame(9, 'runMicrotasks'),
];
const selfUs = { 2: 1000, 3: 4000, 4: 2000, 5: 3000, 6: 1000, 7: 1000, 8: 5000, 9: 500 };

describe('summarizeProfile', () => {
  it('sums self time by category, native frames counting for their caller, shares of the non-idle time', () => {
    const s = summarizeProfile(profile('one.cpuprofile', nodes, selfUs));
    expect(s.profiles).toBe(1);
    expect(s.totalMs).toBe(17.5);
    expect(s.idleMs).toBe(4);
    expect(s.categories).toEqual([
      { name: 'tributary.cjs (unmapped)', selfMs: 6, share: 6 / 13.5 },
      { name: 'node:streams', selfMs: 4, share: 4 / 13.5 },
      { name: '(garbage collector)', selfMs: 2, share: 2 / 13.5 },
      { name: '(program)', selfMs: 1, share: 1 / 13.5 },
      { name: '(native)', selfMs: 0.5, share: 0.5 / 13.5 },
    ]);
    expect(s.top.slice(0, 3)).toEqual([
      { name: 'createHash', where: 'native, in tributary.cjs (unmapped)', selfMs: 5, share: 5 / 13.5 },
      { name: 'Readable.push', where: 'node:internal/streams/readable:10', selfMs: 3, share: 3 / 13.5 },
      { name: '(garbage collector)', where: '', selfMs: 2, share: 2 / 13.5 },
    ]);
    expect(s.top.map((f) => f.name)).not.toContain('(idle)');
  });

  it('maps bundle frames to their original files with the source map, and sums several profiles', () => {
    // Bundle line 0 is the project's sync-run.ts line 1, bundle lines 2+ imapflow's line 3 (VLQ: A 0, C 1, E 2).
    const map = path.join(dir, 'tributary.cjs.map');
    fs.writeFileSync(
      map,
      JSON.stringify({
        version: 3,
        sources: [
          '../../../work/main/functions/core/sync-run.ts',
          '../../node_modules/imapflow/lib/imap-flow.js',
        ],
        names: [],
        mappings: 'AAAA;;ACEA',
      }),
    );
    const mapped = [
      frame(1, '(root)', '', -1, -1, [2, 3]),
      frame(2, 'syncSource', BUNDLE, 1, 10, [4]),
      frame(3, 'ImapFlow.fetch', BUNDLE, 5, 3),
      frame(4, 'digest'),
    ];
    const files = [
      profile('a.cpuprofile', mapped, { 2: 2000, 3: 1000, 4: 1000 }),
      profile('b.cpuprofile', mapped, { 3: 4000 }),
    ];
    const s = summarizeProfile(files, map, { top: 2 });
    expect(s.profiles).toBe(2);
    expect(s.categories).toEqual([
      { name: 'imapflow', selfMs: 5, share: 5 / 8 },
      { name: 'functions/core', selfMs: 3, share: 3 / 8 },
    ]);
    expect(s.top).toEqual([
      { name: 'ImapFlow.fetch', where: 'node_modules/imapflow/lib/imap-flow.js:3', selfMs: 5, share: 5 / 8 },
      { name: 'syncSource', where: 'functions/core/sync-run.ts:1', selfMs: 2, share: 2 / 8 },
    ]);
    expect(summaryMarkdown('imap', s)).toContain('| imapflow | 5.0 | 62.5 % |');
  });
});

describe('source paths', () => {
  it('are made repo-relative and grouped by package or folder', () => {
    expect(repoPath('../../../work/main/functions/adapters/imap/client.ts')).toBe(
      'functions/adapters/imap/client.ts',
    );
    expect(repoPath('../../../home/ci/tributary/functions/core/x.ts')).toBe('functions/core/x.ts');
    expect(repoPath('../../node_modules/@aws-sdk/client-s3/dist-es/index.js')).toBe(
      'node_modules/@aws-sdk/client-s3/dist-es/index.js',
    );
    expect(sourceCategory('functions/adapters/mime/parse.ts')).toBe('functions/adapters/mime');
    expect(sourceCategory('node_modules/@aws-sdk/client-s3/dist-es/index.js')).toBe('@aws-sdk');
    expect(sourceCategory('node_modules/@smithy/core/dist-es/index.js')).toBe('@smithy');
    expect(sourceCategory('node_modules/@aws-lambda-powertools/logger/lib/x.js')).toBe(
      '@aws-lambda-powertools/logger',
    );
    expect(sourceCategory('node_modules/postal-mime/src/postal-mime.js')).toBe('postal-mime');
  });
});
