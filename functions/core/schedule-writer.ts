import type { SourceRunReport } from './model';
import type { Logger, MailConnector, SourceRegistry } from './ports';
import { loginDelaySeconds, scheduleAfterRun } from './schedule';

/** Schedule writes that lost a race (a dispatcher's claim in between) are read again and retried this often. */
const SCHEDULE_RETRIES = 3;

/**
 * Writes a source's next due time after a run (scheduleAfterRun), conditional on the revision read just before, so
 * a dispatcher's claim made meanwhile is read again rather than overwritten. Shared by the sync Lambda and local
 * mode's scheduler: one rule for when a source runs next, wherever it ran. Returns the consecutive failures as
 * written (or as they stand when the run changes nothing); undefined when the source is gone or every attempt lost.
 */
export async function writeScheduleAfterRun(
  registry: SourceRegistry,
  sourceId: string,
  report: SourceRunReport,
  run: { startedAt: number; finishedAt: number; requeued: boolean; loginDelay?: number },
  log: Pick<Logger, 'info' | 'warn'>,
): Promise<number | undefined> {
  for (let attempt = 0; attempt < SCHEDULE_RETRIES; attempt++) {
    // Read again (strongly consistent): the dispatcher may have claimed the source while it ran.
    const current = await registry.get(sourceId);
    if (!current) return undefined;
    const next = scheduleAfterRun(current.schedule, {
      outcome: report.outcome,
      ...(report.error ? { errorCode: report.error.code } : {}),
      startedAt: run.startedAt,
      finishedAt: run.finishedAt,
      pollMinutes: current.source.pollMinutes,
      ...(run.loginDelay === undefined ? {} : { loginDelaySeconds: run.loginDelay }),
      requeued: run.requeued,
    });
    if (!next) return current.schedule.failures;
    if (await registry.setSchedule(sourceId, next, current.revision)) {
      log.info('next run scheduled', {
        nextDueAt: new Date(next.nextDueAt).toISOString(),
        failures: next.failures,
        ...(next.backoffUntil ? { backoffUntil: new Date(next.backoffUntil).toISOString() } : {}),
      });
      return next.failures;
    }
  }
  // The source stays claimed or due as last written; the dispatcher sends it again when that runs out.
  log.warn('the schedule changed at every attempt; left as it is');
  return undefined;
}

/** What the POP3 sessions of a run announced as LOGIN-DELAY, per source (read off the session, after login). */
export class LoginDelays {
  private readonly seen = new Map<string, number>();

  wrap(connector: MailConnector): MailConnector {
    return {
      openImap: (source, password, options) => connector.openImap(source, password, options),
      openPop3: async (source, password, options) => {
        const session = await connector.openPop3(source, password, options);
        const delay = loginDelaySeconds(session.capabilities);
        if (delay !== undefined) this.seen.set(source.id, delay);
        return session;
      },
    };
  }

  take(sourceId: string): number | undefined {
    const delay = this.seen.get(sourceId);
    this.seen.delete(sourceId);
    return delay;
  }
}
