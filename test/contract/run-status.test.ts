import type { SourceRunReport } from '../../functions/core/model';
import type { Lease } from '../../functions/core/ports';
import { implementations, iso, newSourceId, openFor, record, T0 } from './implementations';

function report(
  sourceId: string,
  outcome: SourceRunReport['outcome'],
  extra: Partial<SourceRunReport> = {},
): SourceRunReport {
  return {
    sourceId,
    outcome,
    fetched: 4,
    fetchedBytes: 4000,
    skipped: 1,
    deletedUpstream: 2,
    evicted: 1,
    durationMs: 1234,
    notes: ['a note', 'another'],
    ...(outcome === 'failed' ? { error: { code: 'AUTH_FAILED', message: 'bad password' } } : {}),
    ...extra,
  };
}

/** RunStatusLog and SourceStatus.summary: the last run of a source, its failures in a row, and its counters. */
describe.each(implementations)('RunStatusLog and SourceStatus on $name', (impl) => {
  const store = openFor(impl);
  const index = () => store().index;

  async function lease(): Promise<Lease> {
    return (await index().acquireLease(newSourceId('status'), 'status-test', 600_000, T0))!;
  }

  it('summarizes a source never run: no counters, no last run, no failures', async () => {
    const sourceId = newSourceId('status');
    const summary = await index().summary(sourceId);
    expect(summary).toMatchObject({ sourceId, messages: 0, bytes: 0, consecutiveFailures: 0 });
    expect(summary.lastRun).toBeUndefined();
  });

  it('records the last run with its time, outcome and figures', async () => {
    const l = await lease();
    const usage = { usedBytes: 900, limitBytes: 1000, afterBytes: 700 };
    await index().recordRun(l, report(l.sourceId, 'ok', { upstreamUsage: usage }), T0 + 5000);

    const summary = await index().summary(l.sourceId);

    expect(summary.lastRun).toMatchObject({
      at: iso(T0 + 5000),
      outcome: 'ok',
      fetched: 4,
      deletedUpstream: 2,
      evicted: 1,
      upstreamUsage: usage,
      notes: ['a note', 'another'],
    });
    expect(summary.lastRun?.error).toBeUndefined();
    expect(summary.consecutiveFailures).toBe(0);
  });

  it('counts failed runs in a row with the last error, and a run that gets through resets them', async () => {
    const l = await lease();
    await index().recordRun(l, report(l.sourceId, 'failed'), T0 + 1);
    await index().recordRun(
      l,
      report(l.sourceId, 'failed', { error: { code: 'TIMEOUT', message: 'slow' } }),
      T0 + 2,
    );
    const failed = await index().summary(l.sourceId);
    expect(failed.consecutiveFailures).toBe(2);
    expect(failed.lastRun).toMatchObject({
      at: iso(T0 + 2),
      outcome: 'failed',
      error: { code: 'TIMEOUT', message: 'slow' },
    });

    await index().recordRun(l, report(l.sourceId, 'more'), T0 + 3);
    const ok = await index().summary(l.sourceId);
    expect(ok.consecutiveFailures).toBe(0);
    expect(ok.lastRun).toMatchObject({ at: iso(T0 + 3), outcome: 'more' });
    expect(ok.lastRun?.error).toBeUndefined();
  });

  it('shows the counters the commits keep', async () => {
    const l = await lease();
    await index().commitMessage(l, record(l.sourceId, 1, { size: 10 }));
    await index().commitMessage(l, record(l.sourceId, 2, { size: 20 }));
    expect(await index().summary(l.sourceId)).toMatchObject({ sourceId: l.sourceId, messages: 2, bytes: 30 });
  });
});
