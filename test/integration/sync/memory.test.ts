import type { Source, SourceRunReport } from '../../../functions/core/model';
import { spawnChildSync } from '../../support/child-sync';
import { bigMessage } from '../../support/corpus';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

const MESSAGE_BYTES = 30 * 1024 * 1024;
/**
 * What syncing the message may add to the process's memory (socket and TLS buffers, S3 parts in flight, the header
 * block kept for parsing, garbage not yet collected). Holding the message even once would be 30 MB per copy.
 */
const ADDED_LIMIT_BYTES = 128 * 1024 * 1024;

async function childSync(
  source: Source,
  password: string,
): Promise<SourceRunReport & { maxRssBytes: number; rssBefore: number; rssPeak: number }> {
  const { code, output } = await spawnChildSync(source, password, { leaseMs: 30_000 }).exited;
  const line = output.split('\n').find((l) => l.startsWith('report '));
  if (code !== 0 || !line) throw new Error(`child sync exited ${code}: ${output}`);
  return JSON.parse(line.slice('report '.length)) as SourceRunReport & {
    maxRssBytes: number;
    rssBefore: number;
    rssPeak: number;
  };
}

describe('memory of a sync of a 30 MB message', () => {
  const mib = (n: number) => (n / 1024 / 1024).toFixed(0);

  it.each(['imap', 'pop3'] as const)('stays bounded over %s', async (protocol) => {
    const user = lab.createUser();
    lab.deliver(user, bigMessage(MESSAGE_BYTES, 17));
    const report = await childSync(t.source(user, protocol), user.password);
    const added = report.rssPeak - report.rssBefore;
    process.stdout.write(
      `[memory] ${protocol}, 30 MB message: RSS ${mib(report.rssBefore)} MB before the sync, peak ${mib(report.rssPeak)} MB during it (+${mib(added)} MB); process peak ${mib(report.maxRssBytes)} MB\n`,
    );
    expect(report).toMatchObject({ outcome: 'ok', fetched: 1, fetchedBytes: MESSAGE_BYTES });
    expect(added).toBeLessThan(ADDED_LIMIT_BYTES);
  });
});
