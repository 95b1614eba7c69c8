import type { Source, SourceRunReport } from '../../../functions/core/model';
import { spawnChildSync } from '../../support/child-sync';
import { bigMessage } from '../../support/corpus';
import { MailLab } from '../../support/mail-lab';
import { TestTributary } from '../../support/tributary';

const lab = MailLab.fromEnv();
const t = new TestTributary(lab);
afterAll(() => t.close());

const MESSAGE_BYTES = 30 * 1024 * 1024;
/** The whole process (Node, the SDK, imapflow, one message in flight) stays under this with a 30 MB message. */
const RSS_LIMIT_BYTES = 250 * 1024 * 1024;

async function childSync(
  source: Source,
  password: string,
): Promise<SourceRunReport & { maxRssBytes: number }> {
  const { code, output } = await spawnChildSync(source, password, { leaseMs: 30_000 }).exited;
  const line = output.split('\n').find((l) => l.startsWith('report '));
  if (code !== 0 || !line) throw new Error(`child sync exited ${code}: ${output}`);
  return JSON.parse(line.slice('report '.length)) as SourceRunReport & { maxRssBytes: number };
}

describe('memory of a sync of a 30 MB message', () => {
  const mib = (n: number) => (n / 1024 / 1024).toFixed(0);

  it.each(['imap', 'pop3'] as const)(
    'stays bounded over %s (peak RSS of the whole sync process)',
    async (protocol) => {
      const user = lab.createUser();
      lab.deliver(user, bigMessage(MESSAGE_BYTES, 17));
      const report = await childSync(t.source(user, protocol), user.password);
      process.stdout.write(
        `[memory] ${protocol}: peak RSS ${mib(report.maxRssBytes)} MB for a 30 MB message\n`,
      );
      expect(report).toMatchObject({ outcome: 'ok', fetched: 1, fetchedBytes: MESSAGE_BYTES });
      expect(report.maxRssBytes).toBeLessThan(RSS_LIMIT_BYTES);
    },
  );
});
