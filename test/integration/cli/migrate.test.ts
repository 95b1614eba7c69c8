import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DynamoInbox } from '../../../functions/adapters/dynamodb/inbox';
import { DynamoMessageIndex } from '../../../functions/adapters/dynamodb/message-index';
import { PostalMimeParser } from '../../../functions/adapters/mime';
import { S3RawMailStore } from '../../../functions/adapters/s3/raw-mail-store';
import { openEmbeddedStore } from '../../../functions/adapters/sqlite/embedded-store';
import type { Source } from '../../../functions/core/model';
import { syncSource, type SyncDeps } from '../../../functions/core/sync';
import { ensureTable, startLocalAws } from '../../../functions/local/emulators';
import { makeAwsClients } from '../../../functions/shared/aws-clients';
import { makeConnector } from '../../../functions/shared/connector';
import { silentLogger } from '../../../functions/shared/runtime';
import { bulkCorpus } from '../../support/corpus';
import { BIN } from '../../support/local-service';
import { MailLab } from '../../support/mail-lab';

/**
 * `tributary migrate --from local-aws` (issue #16): a data folder written the way earlier versions did (DynamoDB
 * Local and the S3 server on it, the engine syncing into them) is moved into the embedded store, and the CLI then
 * sees the same mail, fetches nothing again, and keeps the audit trail, the evictions and the read state.
 */
const lab = MailLab.fromEnv();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-migrate-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => (out += t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => (err += t));
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, out, err })),
  );
}

describe('tributary migrate --from local-aws', () => {
  it('moves an earlier version’s data folder into the embedded store: same mail, nothing fetched again, audit and read state kept', async () => {
    const imapUser = lab.createUser('mig-imap');
    const popUser = lab.createUser('mig-pop');
    const imapMails = bulkCorpus(12, 2101, { maxBytes: 8_000, attachmentRatio: 0 });
    const popMails = bulkCorpus(8, 2102, { maxBytes: 8_000, attachmentRatio: 0 });
    for (const m of imapMails) lab.deliver(imapUser, m.raw);
    for (const m of popMails) lab.deliver(popUser, m.raw);
    const dir = path.join(root, 'user');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'ca.pem'), lab.ca);
    const dataDir = path.join(dir, 'data');
    const common = {
      host: '127.0.0.1',
      tls: 'implicit' as const,
      servername: lab.info.servername,
      pollMinutes: 5,
      enabled: true,
    };
    const sources: Source[] = [
      {
        ...common,
        id: 'work',
        protocol: 'imap',
        port: lab.info.ports.imaps,
        ca: lab.ca.toString(),
        user: imapUser.name,
        folders: ['INBOX'],
        retention: { mode: 'keep' },
      },
      {
        ...common,
        id: 'home',
        protocol: 'pop3',
        port: lab.info.ports.pop3s,
        ca: lab.ca.toString(),
        user: popUser.name,
        folders: [],
        retention: { mode: 'keep' },
        // Keeps 5 of 8: three evictions, each with its audit record, for the migration to replay.
        inboxQuota: { maxMessages: 5, onExceed: 'evict-oldest' },
      },
    ];

    // The earlier version's store, written by the engine itself through the DynamoDB and S3 adapters.
    const legacy = await startLocalAws({ dataDir, bucket: 'tributary-raw', s3Dir: path.join(dataDir, 's3') });
    const savedEnv = { ...process.env };
    Object.assign(process.env, legacy.env);
    const clients = makeAwsClients();
    // Two entries of the old inbox: one marked read, one removed.
    const marked = { read: '', removed: '' };
    try {
      await ensureTable(clients.dynamodb, 'tributary');
      const passwords = new Map([
        ['work', imapUser.password],
        ['home', popUser.password],
      ]);
      const deps: SyncDeps = {
        connector: makeConnector(),
        store: new S3RawMailStore(clients.s3, 'tributary-raw'),
        index: new DynamoMessageIndex(clients.documents, 'tributary'),
        parser: new PostalMimeParser(),
        credentials: { password: (s) => Promise.resolve(passwords.get(s.id)!) },
        clock: { now: () => Date.now() },
        logger: silentLogger,
      };
      for (const source of sources) {
        const report = await syncSource(deps, source, { deadline: Date.now() + 60_000 });
        expect(report.outcome).toBe('ok');
      }
      const inbox = new DynamoInbox(clients.documents, 'tributary');
      const page = await inbox.list({ limit: 50 });
      expect(page.entries).toHaveLength(12 + 5);
      marked.read = page.entries[0]!.id;
      marked.removed = page.entries[1]!.id;
      expect(await inbox.setUnread(marked.read, false, Date.now())).toBe(true);
      expect(await inbox.removeFromInbox(marked.removed, 'test', Date.now())).toBe(true);
    } finally {
      clients.dynamodb.destroy();
      clients.s3.destroy();
      await legacy.stop();
      process.env = savedEnv;
    }

    const config = path.join(dir, 'tributary.config.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        store: { mode: 'local', dataDir: 'data' },
        sources: sources.map((s) => ({
          id: s.id,
          protocol: s.protocol,
          host: s.host,
          port: s.port,
          tls: s.tls,
          caFile: 'ca.pem',
          servername: s.servername,
          user: s.user,
          secret: { env: `PW_${s.id.toUpperCase()}` },
          ...(s.inboxQuota ? { inboxQuota: s.inboxQuota } : {}),
        })),
      }),
    );
    const env = { PW_WORK: imapUser.password, PW_HOME: popUser.password };

    // Before migrating, the new version refuses the old folder with the command to run.
    const refused = await run(['sync', '--config', config], env);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain('tributary migrate --from local-aws');

    const migrated = await run(['migrate', '--from', 'local-aws', '--config', config, '--json'], env);
    expect({ code: migrated.code, err: migrated.err }).toMatchObject({ code: 0 });
    expect(migrated.err).toMatch(/work: 12 messages .*each checked by sha256/);
    const result = JSON.parse(migrated.out) as {
      sources: Array<{ sourceId: string; messages: number; evicted: number; audit: number }>;
      inbox: { read: number; removed: number };
    };
    const bySource = Object.fromEntries(result.sources.map((s) => [s.sourceId, s]));
    expect(bySource.work).toMatchObject({ messages: 12, evicted: 0 });
    expect(bySource.home).toMatchObject({ messages: 5, evicted: 3, audit: 3 });
    expect(result.inbox).toEqual({ read: 1, removed: 1 });
    expect(fs.existsSync(path.join(dataDir, 'index.sqlite'))).toBe(true);
    const embedded = openEmbeddedStore(dataDir);
    try {
      expect((await embedded.inbox.get(marked.read))?.unread).toBe(false);
      expect(await embedded.inbox.get(marked.removed)).toBeUndefined();
      expect((await embedded.inbox.list({ limit: 50 })).entries).toHaveLength(12 + 5 - 1);
    } finally {
      embedded.close();
    }

    // The CLI on the embedded store: the same counters, nothing fetched again, the evictions in the audit trail.
    const list = await run(['sources', 'list', '--json', '--config', config], env);
    const counts = Object.fromEntries(
      (JSON.parse(list.out) as { sources: Array<{ id: string; inbox: { messages: number } }> }).sources.map(
        (s) => [s.id, s.inbox.messages],
      ),
    );
    expect(counts).toEqual({ work: 12, home: 5 });
    const sync = await run(['sync', '--json', '--config', config], env);
    expect(sync.code).toBe(0);
    const fetched = (JSON.parse(sync.out) as { sources: Array<{ fetched: number }> }).sources.map(
      (s) => s.fetched,
    );
    expect(fetched).toEqual([0, 0]);
    const audit = await run(['audit', '--source', 'home', '--json', '--config', config], env);
    expect(audit.code).toBe(0);
    expect((audit.out.match(/"evict"/g) ?? []).length).toBe(3);

    // Again: done already, nothing changed.
    const again = await run(['migrate', '--from', 'local-aws', '--config', config], env);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/migrated already/);
  }, 240_000);
});
