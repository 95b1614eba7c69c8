import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  gbSecondsPer1000,
  lambdaImportEstimate,
  readBenchFigures,
  type BenchFigures,
} from '../../../bench/lib/bench-figures';

/** docs/benchmarks.json (bench/lib/bench-figures.ts): its reading and the Lambda GB-seconds of an import. */

// 2,000 messages: 11.6 s of own CPU, 14.5 s in-process, 16 s with every S3/DynamoDB request delayed 20 ms.
const mixed = { messages: 2000, ownCpuMs: 11_600, wallMs: 14_500, storeLatencyWallMs: 16_000 };

describe('gbSecondsPer1000', () => {
  it('is bound by the delayed wall time with a whole vCPU (1,769 MB)', () => {
    // max(16,000, 11,600 / 1) = 16,000 ms for 2,000 messages: 8 s per 1,000, x 1769/1024 GB
    expect(gbSecondsPer1000(mixed, 1769)).toBeCloseTo(8 * (1769 / 1024), 9);
    expect(lambdaImportEstimate(mixed, 1769)).toMatchObject({ bound: 'wall', storeLatency: true });
  });

  it('is bound by the CPU at a fraction of a vCPU (512 MB)', () => {
    // 11,600 / (512 / 1769) = 40,078.9 -> 40,079 ms > 16,000: 20,039.5 ms per 1,000, x 0.5 GB
    expect(gbSecondsPer1000(mixed, 512)).toBeCloseTo(20.0395 * 0.5, 9);
    expect(lambdaImportEstimate(mixed, 512)).toMatchObject({ bound: 'cpu', durationMs: 40_079 });
  });

  it('takes the wall time without delay when the delayed one was not measured', () => {
    const { storeLatencyWallMs: _, ...undelayed } = mixed;
    expect(gbSecondsPer1000(undelayed, 1769)).toBeCloseTo(7.25 * (1769 / 1024), 9);
    expect(lambdaImportEstimate(undelayed, 1769).storeLatency).toBe(false);
  });

  it('gets no more CPU above 1,769 MB: the same duration, more GB-s', () => {
    expect(gbSecondsPer1000(mixed, 3008)).toBeCloseTo(8 * (3008 / 1024), 9);
  });
});

describe('readBenchFigures', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-figures-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const valid: BenchFigures = {
    generated: '2026-12-05T09:41:12.345Z',
    commit: '1a2b3c4d5e6f+dirty',
    machine: '2 x AMD EPYC',
    lambdaMemoryMb: 1769,
    imports: [
      {
        corpus: '2,000 mixed (835 MB)',
        protocol: 'imap',
        bytes: 835_000_000,
        ...mixed,
        gbSecondsPer1000: gbSecondsPer1000(mixed, 1769),
      },
    ],
  };
  const write = (name: string, content: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, content);
    return file;
  };

  it('returns undefined when the bench has not written the file', () => {
    expect(readBenchFigures(path.join(dir, 'missing.json'))).toBeUndefined();
  });

  it('returns the figures of a valid file', () => {
    expect(readBenchFigures(write('valid.json', JSON.stringify(valid)))).toEqual(valid);
  });

  it('throws naming the file and the fields that are wrong', () => {
    const bad = { ...valid, imports: [{ ...valid.imports[0], protocol: 'smtp', messages: undefined }] };
    const file = write('invalid.json', JSON.stringify(bad));
    expect(() => readBenchFigures(file)).toThrow(file);
    expect(() => readBenchFigures(file)).toThrow(/imports\.0\.protocol/);
    expect(() => readBenchFigures(file)).toThrow(/imports\.0\.messages/);
  });

  it('throws naming the file when it is not JSON', () => {
    const file = write('truncated.json', JSON.stringify(valid).slice(0, 40));
    expect(() => readBenchFigures(file)).toThrow(`${file} is not valid JSON`);
  });
});
