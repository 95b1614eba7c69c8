import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { main, type Io } from '../../../functions/cli/main';
import { bulkCorpus, standardCorpus } from '../../support/corpus';
import { MailLab, type TestUser } from '../../support/mail-lab';
import { freePort } from '../../../functions/local/processes';
import { TestTributary } from '../../support/tributary';
import { startFakePop3 } from '../../unit/pop3/fake-pop3-server';
import { displayWidth } from '../../../functions/cli/text-width';

const lab = MailLab.fromEnv();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-cli-'));
fs.writeFileSync(path.join(dir, 'ca.pem'), lab.ca);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function writeConfig(sources: Array<Record<string, unknown>>): string {
  const file = path.join(dir, `config-${++n}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      store: {
        mode: 'aws',
        table: process.env.TRIBUTARY_TEST_TABLE,
        bucket: process.env.TRIBUTARY_TEST_BUCKET,
      },
      sources,
    }),
  );
  return file;
}

function imapSource(user: TestUser, id: string, extra: Record<string, unknown> = {}) {
  const env = `PW_${id.replace(/-/g, '_').toUpperCase()}`;
  process.env[env] = user.password;
  return {
    id,
    protocol: 'imap',
    host: '127.0.0.1',
    port: lab.info.ports.imaps,
    tls: 'implicit',
    caFile: 'ca.pem',
    servername: 'localhost',
    user: user.name,
    secret: { env },
    ...extra,
  };
}

async function cli(
  args: string[],
  extra: Partial<Io> = {},
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => (out += t), err: (t) => (err += t), isTty: false, ...extra };
  const code = await main(args, io);
  return { code, out, err };
}

const uniq = () => Math.random().toString(36).slice(2, 8);

/** What the server serves for every message of INBOX (CRLF), the bytes a byte-for-byte export must hold. */
async function served(user: TestUser): Promise<Buffer[]> {
  const client = await lab.imap(user);
  const out: Buffer[] = [];
  try {
    const lock = await client.getMailboxLock('INBOX', { readOnly: true });
    try {
      for await (const m of client.fetch('1:*', { source: true })) out.push(m.source!);
    } finally {
      lock.release();
    }
  } finally {
    await client.logout();
  }
  return out;
}

/** The messages of an mboxrd file: split at unquoted From_ lines, the separating blank line dropped, unquoted. */
function readMboxrd(file: Buffer): Buffer[] {
  const text = file.toString('latin1');
  const lines = text.split(/(?<=\n)/);
  const messages: string[][] = [];
  for (const line of lines) {
    if (line.startsWith('From ')) messages.push([]);
    else messages[messages.length - 1]!.push(line.replace(/^>(>*From )/, '$1'));
  }
  return messages.map((m) => {
    const blank = m.pop();
    expect(blank === '\r\n' || blank === '\n').toBe(true);
    return Buffer.from(m.join(''), 'latin1');
  });
}

describe('the tributary CLI', () => {
  it('syncs, lists the inbox newest first, lists sources and exports byte for byte', async () => {
    const user = lab.createUser();
    const corpus = standardCorpus(3);
    for (const m of corpus) lab.deliver(user, m.raw);
    const id = `cli-${uniq()}`;
    const config = writeConfig([imapSource(user, id)]);

    const sync = await cli(['sync', '--config', config]);
    expect(sync.err).toBe('');
    expect(sync.code).toBe(0);
    expect(sync.out).toMatch(new RegExp(`${id}: ok, ${corpus.length} new messages`));

    const again = await cli(['sync', '--config', config, '--json']);
    expect(JSON.parse(again.out)).toMatchObject({ sources: [{ sourceId: id, outcome: 'ok', fetched: 0 }] });

    const inbox = await cli(['inbox', '--config', config, '--json', '--limit', '5']);
    const page = JSON.parse(inbox.out) as {
      messages: Array<{ date: string; sourceId: string }>;
      cursor: string | null;
    };
    expect(page.messages).toHaveLength(5);
    const dates = page.messages.map((m) => m.date);
    expect([...dates].sort().reverse()).toEqual(dates);
    expect(page.cursor).toEqual(expect.any(String));

    const list = await cli(['sources', 'list', '--config', config]);
    expect(list.out).toContain(`inbox: ${corpus.length} messages`);
    expect(list.out).toMatch(/last run: .* ok/);

    const out = path.join(dir, `export-${id}`);
    const exp = await cli(['export', '--config', config, '--format', 'maildir', '--out', out]);
    expect(exp.code).toBe(0);
    const files = fs.readdirSync(path.join(out, id, 'cur'));
    expect(files).toHaveLength(corpus.length);
    // The export holds exactly the bytes the server serves (CRLF) for every corpus message.
    const client = await lab.imap(user);
    const served: Buffer[] = [];
    try {
      const lock = await client.getMailboxLock('INBOX', { readOnly: true });
      try {
        for await (const m of client.fetch('1:*', { source: true })) served.push(m.source!);
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
    const exported = files
      .map((f) => fs.readFileSync(path.join(out, id, 'cur', f)).toString('base64'))
      .sort();
    expect(exported).toEqual(served.map((b) => b.toString('base64')).sort());

    const mbox = await cli(['export', '--config', config, '--format', 'mbox', '--out', out]);
    expect(mbox.code).toBe(0);
    const text = fs.readFileSync(path.join(out, `${id}.mbox`), 'latin1');
    expect(text.split(/^From /m).length - 1).toBe(corpus.length);
  });

  it('tests a source: TLS, certificate, capabilities, folders, count and quota', async () => {
    const user = lab.createUser('q', { quotaBytes: 5 * 1024 * 1024 });
    await lab.append(
      user,
      bulkCorpus(2, 1, { maxBytes: 10_000 }).map((m) => m.raw),
    );
    const id = `cli-${uniq()}`;
    const config = writeConfig([imapSource(user, id)]);
    const res = await cli(['sources', 'test', id, '--config', config]);
    expect(res.code).toBe(0);
    expect(res.out).toMatch(/TLS: TLSv1\.[23] .* certificate localhost issued by Tributary Test CA/);
    expect(res.out).toMatch(/UIDPLUS yes/);
    expect(res.out).toMatch(/QUOTA yes/);
    expect(res.out).toMatch(/INBOX: 2 messages/);
    expect(res.out).toMatch(/quota: .* of 5\.0 MB/);
  });

  it('tests a POP3 source over STLS: TLS, capabilities, maildrop; and a wrong POP3 password fails clearly', async () => {
    const user = lab.createUser();
    lab.deliver(user, bulkCorpus(1, 2, { maxBytes: 5_000 })[0]!.raw);
    const id = `pop-${uniq()}`;
    const pop = { ...imapSource(user, id), protocol: 'pop3', port: lab.info.ports.pop3, tls: 'starttls' };
    const config = writeConfig([pop]);
    const res = await cli(['sources', 'test', id, '--config', config]);
    expect(res.err).toBe('');
    expect(res.out).toMatch(/TLS: TLSv1\.[23] .* certificate localhost issued by Tributary Test CA/);
    expect(res.out).toMatch(/UIDL yes, TOP yes, PIPELINING yes/);
    expect(res.out).toMatch(/maildrop: 1 messages/);
    expect(res.out).toMatch(/quota: POP3 reports no quota; declare "capacityBytes" in "upstreamQuota"/);

    const wrong = writeConfig([{ ...pop, secret: { env: 'PW_WRONG' } }]);
    const sync = await cli(['sync', '--config', wrong]);
    expect(sync.code).toBe(1);
    expect(sync.out).toMatch(
      new RegExp(
        `${id}: FAILED \\[AUTH_FAILED\\] POP3 login refused by 127\\.0\\.0\\.1 for user ${user.name}`,
      ),
    );
    const json = await cli(['sync', '--config', wrong, '--json']);
    const list = await cli(['sources', 'list', '--config', wrong, '--json']);
    for (const o of [sync, json, list]) {
      expect(o.out + o.err).not.toContain(process.env.PW_WRONG!);
    }
  });

  it('exports identical twins as two files, overwrites nothing, and writes mbox with one line end', async () => {
    const user = lab.createUser();
    const twin = standardCorpus(5)[0]!.raw;
    const fromLines = Buffer.from(
      [
        'From: ann@example.com',
        'To: bob@example.com',
        'Subject: From lines',
        `Message-ID: <from-lines-${uniq()}@example.com>`,
        '',
        'From here on, quoted.',
        '>From already quoted once.',
        'plain line',
        '',
      ].join('\r\n'),
    );
    for (const m of [twin, twin, fromLines]) lab.deliver(user, m);
    const id = `twin-${uniq()}`;
    const config = writeConfig([imapSource(user, id)]);
    expect((await cli(['sync', '--config', config])).out).toContain(`${id}: ok, 3 new messages`);
    const bytes = (await served(user)).map((b) => b.toString('base64')).sort();

    const out = path.join(dir, `export-${id}`);
    const exp = await cli(['export', '--config', config, '--format', 'maildir', '--out', out]);
    expect(exp.code).toBe(0);
    const cur = path.join(out, id, 'cur');
    const files = fs.readdirSync(cur);
    expect(files).toHaveLength(3);
    expect(files.map((f) => fs.readFileSync(path.join(cur, f)).toString('base64')).sort()).toEqual(bytes);
    expect(exp.out).toContain(`${id}: 3 messages written to ${path.join(out, id)}\n`);

    // Again into the same folder: what is there is kept, nothing written twice, the count says so.
    const mtimes = files.map((f) => fs.statSync(path.join(cur, f)).mtimeMs);
    const again = await cli(['export', '--config', config, '--format', 'maildir', '--out', out]);
    expect(again.out).toContain(`${id}: 0 messages written to ${path.join(out, id)}; 3 already there`);
    expect(fs.readdirSync(cur).sort()).toEqual([...files].sort());
    expect(files.map((f) => fs.statSync(path.join(cur, f)).mtimeMs)).toEqual(mtimes);

    const mbox = await cli(['export', '--config', config, '--format', 'mbox', '--out', out]);
    expect(mbox.code).toBe(0);
    expect(mbox.out).toContain(`${id}: 3 messages written to ${path.join(out, `${id}.mbox`)}`);
    const file = fs.readFileSync(path.join(out, `${id}.mbox`));
    expect(file.toString('latin1')).not.toMatch(/(?<!\r)\n/); // CRLF mail: CRLF throughout
    expect(
      readMboxrd(file)
        .map((b) => b.toString('base64'))
        .sort(),
    ).toEqual(bytes);
    const twice = await cli(['export', '--config', config, '--format', 'mbox', '--out', out]);
    expect(twice.code).toBe(2);
    expect(twice.err).toContain(`${path.join(out, `${id}.mbox`)} already exists: export never overwrites`);
    expect(fs.readFileSync(path.join(out, `${id}.mbox`))).toEqual(file);
  });

  it('says who holds the lease of a busy source, until when, and when it is stale', async () => {
    const user = lab.createUser();
    const id = `lease-${uniq()}`;
    const config = writeConfig([imapSource(user, id)]);
    const t = new TestTributary(lab);
    try {
      const elsewhere = await t.index.acquireLease(id, 'mail.example.net:4242:cafe', 60_000, Date.now());
      const busy = await cli(['sync', '--config', config]);
      expect(busy.code).toBe(0);
      expect(busy.out).toMatch(
        new RegExp(
          `${id}: busy: another sync \\(mail\\.example\\.net:4242:cafe\\) holds this source's lease until .+ \\((59|60) s from now\\); nothing done`,
        ),
      );
      const json = JSON.parse((await cli(['sync', '--config', config, '--json'])).out) as {
        sources: Array<{ outcome: string; lease: { holder: string; until: string; stale: boolean } }>;
      };
      expect(json.sources[0]).toMatchObject({
        outcome: 'busy',
        lease: {
          holder: 'mail.example.net:4242:cafe',
          until: new Date(elsewhere!.expiresAt).toISOString(),
          stale: false,
        },
      });
      await t.index.releaseLease(elsewhere!);

      // A holder on this machine whose process is gone (Ctrl-C twice, kill -9): its lease is taken over at once.
      const gone = spawnSync(process.execPath, ['-e', 'process.pid']).pid;
      await t.index.acquireLease(id, `${os.hostname()}:${gone}:beef`, 60_000, Date.now());
      const stale = await cli(['sync', '--config', config]);
      expect(stale.code).toBe(0);
      expect(stale.out).toMatch(new RegExp(`^${id}: ok, 0 new messages`));
      expect(stale.out).toContain(
        `note: took over the lease ${os.hostname()}:${gone}:beef left when it stopped without releasing it`,
      );
      expect((await t.index.leaseState(id))?.holder ?? '').not.toContain(':beef');
    } finally {
      t.close();
    }
  });

  it('uses a secret file only when no one else can read it', async () => {
    const user = lab.createUser();
    lab.deliver(user, bulkCorpus(1, 5, { maxBytes: 5_000 })[0]!.raw);
    const id = `file-${uniq()}`;
    const secretFile = path.join(dir, `${id}.secret`);
    fs.writeFileSync(secretFile, `${user.password}\n`, { mode: 0o644 });
    fs.chmodSync(secretFile, 0o644);
    const config = writeConfig([{ ...imapSource(user, id), secret: { file: `${id}.secret` } }]);
    const refused = await cli(['sync', '--config', config]);
    expect(refused.code).toBe(1);
    expect(refused.out).toContain(
      `${id}: FAILED [SECRET_MISSING] source ${id}: the secret file ${secretFile} can be read by other users (mode 0644), so it is not used: run "chmod 600 ${secretFile}"`,
    );
    expect(refused.out + refused.err).not.toContain(user.password);
    fs.chmodSync(secretFile, 0o600);
    expect((await cli(['sync', '--config', config])).out).toContain(`${id}: ok, 1 new message`);
  });

  describe('shows each failure with a message a person can act on, and the other sources go on', () => {
    const cases: Array<[string, (u: TestUser) => Promise<Record<string, unknown>>, RegExp]> = [
      [
        'wrong password',
        async () => ({ secret: { env: 'PW_WRONG' } }),
        /\[AUTH_FAILED\] IMAP login refused by 127\.0\.0\.1 for user .*: check the password/,
      ],
      [
        'refused connection',
        async () => ({ port: await freePort() }),
        /\[CONNECTION_REFUSED\] nothing accepts connections on 127\.0\.0\.1:\d+/,
      ],
      [
        'untrusted certificate',
        async () => ({ caFile: undefined }),
        /\[TLS_CERT_UNTRUSTED\] the certificate of .* is not trusted/,
      ],
      [
        'certificate for another host',
        async () => ({ servername: 'mail.other.example' }),
        /\[TLS_HOSTNAME_MISMATCH\] the certificate of .* is not valid for the name mail\.other\.example/,
      ],
      [
        'STARTTLS required but not offered',
        async () => ({ host: lab.info.noTlsHost, port: lab.info.ports.imap, tls: 'starttls' }),
        /\[STARTTLS_UNAVAILABLE\] .* does not offer STARTTLS/,
      ],
      [
        'missing folder',
        async () => ({ folders: ['INBOX', 'Archive/2019'] }),
        /\[FOLDER_NOT_FOUND\] the folder "Archive\/2019" does not exist/,
      ],
      [
        'a server that does not speak IMAP',
        async () => ({ port: lab.info.ports.pop3s }),
        /\[NOT_THAT_PROTOCOL\] .* does not speak IMAP/,
      ],
      [
        'a secret that is not set',
        async () => ({ secret: { env: 'TRIBUTARY_NOT_SET_ANYWHERE' } }),
        /\[SECRET_MISSING\] source .*: no password found in the environment variable TRIBUTARY_NOT_SET_ANYWHERE/,
      ],
    ];
    process.env.PW_WRONG = `wrong-${uniq()}${uniq()}`;

    it.each(cases)('%s', async (_name, broken, message) => {
      const bad = lab.createUser();
      const good = lab.createUser();
      lab.deliver(good, bulkCorpus(1, 4, { maxBytes: 5_000 })[0]!.raw);
      const badId = `bad-${uniq()}`;
      const goodId = `good-${uniq()}`;
      const badSource = { ...imapSource(bad, badId), ...(await broken(bad)) };
      const config = writeConfig([badSource, imapSource(good, goodId)]);
      const res = await cli(['sync', '--config', config]);
      expect(res.code).toBe(1);
      expect(res.out).toMatch(new RegExp(`${badId}: FAILED ${message.source}`));
      expect(res.out).toContain(`${goodId}: ok, 1 new message`);
      const list = await cli(['sources', 'list', '--config', config]);
      expect(list.out).toMatch(message);
      // The password that was sent (the wrong one, for a wrong password) appears in no output at all.
      const secret = badSource.secret.env;
      const sent = process.env[secret];
      const outputs = [
        res,
        await cli(['sync', '--config', config, '--json']),
        list,
        await cli(['sources', 'list', '--config', config, '--json']),
        await cli(['audit', '--config', config]),
        await cli(['audit', '--config', config, '--json']),
      ];
      for (const o of outputs) {
        for (const password of [sent, bad.password].filter(Boolean) as string[]) {
          expect(o.out).not.toContain(password);
          expect(o.err).not.toContain(password);
        }
      }
    });

    it('sends no login when STARTTLS is missing', async () => {
      const user = lab.createUser();
      const id = `nostls-${uniq()}`;
      const config = writeConfig([
        { ...imapSource(user, id), host: lab.info.noTlsHost, port: lab.info.ports.imap, tls: 'starttls' },
      ]);
      await cli(['sync', '--config', config]);
      const log = fs.readFileSync(path.join(lab.info.dir, 'dovecot.log'), 'utf8');
      expect(log).not.toContain(user.name);
    });
  });

  it('plan, sync, audit and sources list for a source with policies', async () => {
    const user = lab.createUser('pol', { quotaBytes: 200 * 1024 });
    const mails = bulkCorpus(6, 7, { maxBytes: 8_000, attachmentRatio: 0 }).map((m) => m.raw);
    for (const m of mails) lab.deliver(user, m);
    await lab.recalcQuota(user);
    const id = `pol-${uniq()}`;
    const config = writeConfig([
      imapSource(user, id, {
        retention: { mode: 'delete-on-retrieve' },
        upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
        inboxQuota: { maxMessages: 4, onExceed: 'pause' },
      }),
    ]);

    const plan = await cli(['plan', '--config', config]);
    expect(plan.err).toBe('');
    expect(plan.code).toBe(0);
    expect(plan.out).toMatch(new RegExp(`${id}: the next sync would`));
    expect(plan.out).toMatch(/fetch 4 new message\(s\)/);
    expect(plan.out).toMatch(/leave 2 upstream: the inbox quota pauses this source/);
    expect(plan.out).toMatch(/delete 4 upstream/);
    expect(plan.out).toMatch(/imap#INBOX#\d+#0000000001 .* delete-on-retrieve: committed to the store/);
    expect((await lab.status(user)).messages).toBe(6); // a dry run

    const planJson = JSON.parse((await cli(['plan', '--config', config, '--json'])).out) as {
      plans: Array<{ deletes: Array<{ identity: string }> }>;
    };
    const sync = await cli(['sync', '--config', config]);
    expect(sync.code).toBe(0);
    expect(sync.out).toMatch(
      new RegExp(
        `${id}: paused, 4 new messages .*; 4 deleted upstream.* \\(the inbox quota stopped fetching`,
      ),
    );
    expect((await lab.status(user)).messages).toBe(2);

    const audit = await cli(['audit', '--config', config, '--json']);
    const records = (JSON.parse(audit.out) as { audit: Array<{ identity: string; state: string }> }).audit;
    expect(records.map((r) => [r.identity, r.state])).toEqual(
      planJson.plans[0]!.deletes.map((d) => [d.identity, 'done']),
    );
    const text = await cli(['audit', '--config', config, '--source', id]);
    expect(text.out).toMatch(/delete-upstream done .* delete-on-retrieve: committed to the store usage/);
    // Each line names the message by its subject and its object by its sha256 (short).
    const lines = text.out.trim().split('\n');
    expect(lines).toHaveLength(4);
    // This source's messages only: the table is shared with other suites, whose mail can fill the first page.
    const inbox = JSON.parse((await cli(['inbox', '--config', config, '--source', id, '--json'])).out) as {
      messages: Array<{ identity: string; subject?: string; sha256: string }>;
    };
    const byIdentity = new Map(inbox.messages.map((m) => [m.identity, m]));
    const auditRecords = (
      JSON.parse(audit.out) as {
        audit: Array<{ target: string; subject: string; object: { sha256: string } }>;
      }
    ).audit;
    for (const [i, line] of lines.entries()) {
      const record = auditRecords[i]!;
      const stored = byIdentity.get(record.target)!;
      expect(record.subject).toBe(stored.subject);
      expect(line).toContain(`sha256 ${stored.sha256.slice(0, 12)}`);
      expect(line).toContain(`"${[...stored.subject!].slice(0, 10).join('')}`);
    }
    const future = await cli(['audit', '--config', config, '--since', '2999-01-01']);
    expect(future.out).toMatch(/no destructive action recorded since 2999-01-01/);
    const bad = await cli(['audit', '--config', config, '--since', 'yesterday-ish']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--since must be a date/);

    const list = await cli(['sources', 'list', '--config', config]);
    expect(list.out).toMatch(
      /policy: retention delete-on-retrieve; upstream quota 90% -> 75%; inbox quota 4 messages then pause/,
    );
    expect(list.out).toMatch(/inbox: 4 messages, .* \(limit: 4 messages\)/);
    expect(list.out).toMatch(/upstream usage: .* of 200\.0 KB \(\d+\.\d%\) after the last run/);
    expect(list.out).toMatch(/last run: .* paused \(4 deleted upstream\)/);
    expect(list.out).toMatch(
      /note: paused by the inbox quota \(4 of 4 messages\): 2 message\(s\) stay upstream/,
    );
  });

  it('refuses a bad config with exit status 2, naming the field', async () => {
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        sources: [
          {
            id: 'x',
            protocol: 'imap',
            host: 'mail.example.com',
            user: 'a',
            secret: { env: 'X' },
            tls: 'none',
          },
        ],
      }),
    );
    const res = await cli(['sync', '--config', file]);
    expect(res.code).toBe(2);
    expect(res.err).toMatch(/sources\[0\] \(id "x"\)\.tls: "none" sends the password in clear/);
  });
});

describe('tributary sources list and retry: messages set aside', () => {
  it('lists a set-aside message with its reason and retries it on demand', async () => {
    const mail = (tag: string) =>
      Buffer.from(
        `From: a@example.test\r\nSubject: ${tag}\r\nMessage-ID: <${tag}-${uniq()}@x>\r\n\r\nbody\r\n`,
      );
    // LIST announces message 2 at a third of what RETR serves: never the message announced.
    const fake = await startFakePop3({
      messages: [mail('one'), mail('two'), mail('three')],
      mode: 'bulk',
      announcedSize: (n, actual) => (n === 2 ? Math.floor(actual / 3) : actual),
    });
    try {
      const id = `aside-${uniq()}`;
      process.env.PW_ASIDE = 'secret';
      const config = writeConfig([
        {
          id,
          protocol: 'pop3',
          host: '127.0.0.1',
          port: fake.port,
          tls: 'none',
          user: 'u',
          secret: { env: 'PW_ASIDE' },
        },
      ]);
      for (let i = 0; i < 3; i++) await cli(['sync', '--config', config]);
      const after = await cli(['sync', '--config', config]);
      expect(after.out).toMatch(/1 set aside/);

      const list = await cli(['sources', 'list', '--config', config]);
      expect(list.out).toMatch(/set aside \(kept upstream, not fetched/);
      expect(list.out).toMatch(/pop3#uid-2: 3 failed attempts, the last .* \[PROTOCOL_ERROR\]/);
      const json = JSON.parse((await cli(['sources', 'list', '--json', '--config', config])).out) as {
        sources: Array<{ setAside: Array<{ identity: string; attempts: number }> }>;
      };
      expect(json.sources[0]!.setAside).toEqual([
        expect.objectContaining({ identity: 'pop3#uid-2', attempts: 3 }),
      ]);

      expect((await cli(['sources', 'retry', id, '--message', 'pop3#uid-9', '--config', config])).code).toBe(
        1,
      );
      const retry = await cli(['sources', 'retry', id, '--config', config]);
      expect(retry).toMatchObject({
        code: 0,
        out: `${id}: 1 set-aside message will be tried again at the next sync\n`,
      });
      expect((await cli(['sources', 'list', '--config', config])).out).toMatch(
        /to be retried at the next sync/,
      );
      const retrsBefore = fake.received.filter((c) => c === 'RETR 2').length;
      await cli(['sync', '--config', config]);
      expect(fake.received.filter((c) => c === 'RETR 2').length).toBe(retrsBefore + 1);
    } finally {
      await fake.close();
    }
  });
});

describe('the CLI as fetchmail and mbsync users expect it', () => {
  it('--verbose logs the IMAP conversation and the store steps on stderr, the password masked', async () => {
    const user = lab.createUser();
    lab.deliver(user, bulkCorpus(1, 8, { maxBytes: 5_000 })[0]!.raw);
    const id = `verbose-${uniq()}`;
    const config = writeConfig([imapSource(user, id)]);
    const res = await cli(['sync', '--verbose', '--config', config]);
    expect(res.code).toBe(0);
    expect(res.out).toContain(`${id}: ok, 1 new message`);
    const where = `imap 127.0.0.1:${lab.info.ports.imaps}`;
    expect(res.err).toContain(`credentials: the password of ${id} read`);
    expect(res.err).toContain(`${where} > LOGIN "${user.name}" ****`);
    expect(res.err).toMatch(
      new RegExp(`${where} < logged in \\(\\d+ ms\\): TLSv1\\.[23] .*CAPABILITY .*UIDPLUS`),
    );
    expect(res.err).toContain(`${where} > EXAMINE "INBOX"`);
    expect(res.err).toMatch(new RegExp(`${where} > UID FETCH BODY\\.PEEK\\[\\] \\(1 messages\\)`));
    expect(res.err).toMatch(/index: commitMessage\(/);
    expect(res.err).toMatch(/store: put\("/);
    expect(res.err).toContain(`${where} > LOGOUT`);
    expect(res.err).not.toContain(user.password);
    expect(res.out).not.toContain(user.password);
    // Without --verbose, nothing of it.
    expect((await cli(['sync', '--config', config])).err).toBe('');
  });

  it('--verbose over POP3: USER, then PASS ****; a refused password is not printed either', async () => {
    const user = lab.createUser();
    const id = `vpop-${uniq()}`;
    const pop = { ...imapSource(user, id), protocol: 'pop3', port: lab.info.ports.pop3, tls: 'starttls' };
    const ok = await cli(['sources', 'test', id, '-v', '--config', writeConfig([pop])]);
    expect(ok.code).toBe(0);
    const where = `pop3 127.0.0.1:${lab.info.ports.pop3}`;
    expect(ok.err).toContain(`${where} > USER ${user.name}`);
    expect(ok.err).toContain(`${where} > PASS ****`);
    expect(ok.err).toContain(`${where} > STAT`);
    expect(ok.err).toContain(`${where} > QUIT`);
    expect(ok.err).not.toContain(user.password);
    process.env.PW_VERBOSE_WRONG = `wrong-${uniq()}${uniq()}`;
    const wrong = await cli([
      'sync',
      '--verbose',
      '--config',
      writeConfig([{ ...pop, secret: { env: 'PW_VERBOSE_WRONG' } }]),
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(new RegExp(`${where} ! login: \\[AUTH_FAILED\\]`));
    expect(wrong.out + wrong.err).not.toContain(process.env.PW_VERBOSE_WRONG);
  });

  it('inbox: columns stay aligned with CJK and emoji, cut with "…"; the more: hint keeps --limit and --source', async () => {
    const user = lab.createUser();
    const names = ['山田太郎 経理部 山田太郎 経理部 山田太郎', '👩‍💻 Dev Team 🚀', 'Zoë Ça\u0301va', 'Ann'];
    for (const [i, name] of names.entries()) {
      const encoded = `=?UTF-8?B?${Buffer.from(name).toString('base64')}?=`;
      lab.deliver(
        user,
        `From: ${encoded} <a${i}@example.com>\r\nTo: b@example.com\r\nSubject: =?UTF-8?B?${Buffer.from(`会議 ${i}`).toString('base64')}?=\r\nDate: Mon, 0${i + 1} Jun 2026 10:00:00 +0000\r\nMessage-ID: <cjk-${i}-${uniq()}@x>\r\n\r\nbody\r\n`,
      );
    }
    const id = `cjk-${uniq()}`;
    const config = writeConfig([imapSource(user, id)]);
    expect((await cli(['sync', '--config', config])).code).toBe(0);
    const seen: string[] = [];
    let args = ['inbox', '--config', config, '--source', id, '--limit', '3'];
    for (let page = 0; page < 3; page++) {
      const res = await cli(args);
      expect(res.code).toBe(0);
      const lines = res.out.trim().split('\n');
      const more = lines[lines.length - 1]!.startsWith('more: ')
        ? lines.pop()!.slice('more: '.length)
        : undefined;
      for (const line of lines) {
        // The subject ("会議 N") starts at column 60 whatever the sender's name is made of.
        const at = line.indexOf('会議');
        expect(displayWidth(line.slice(0, at))).toBe(60);
        seen.push(line);
      }
      if (!more) break;
      expect(more).toMatch(
        new RegExp(`^tributary inbox --config \\S+ --source ${id} --limit 3 --cursor \\S+$`),
      );
      args = more
        .split(' ')
        .slice(1)
        .map((w) => w.replace(/^'(.*)'$/, '$1'));
    }
    expect(seen).toHaveLength(4);
    expect(seen.join('\n')).toContain('山田太郎 経理部 山田太郎 経… ');
  });

  it('reads the per-user config ($XDG_CONFIG_HOME/tributary/config.json) from any folder', async () => {
    const user = lab.createUser();
    const id = `xdg-${uniq()}`;
    const xdg = path.join(dir, `xdg-${id}`);
    fs.mkdirSync(path.join(xdg, 'tributary'), { recursive: true });
    fs.copyFileSync(path.join(dir, 'ca.pem'), path.join(xdg, 'tributary', 'ca.pem'));
    fs.copyFileSync(writeConfig([imapSource(user, id)]), path.join(xdg, 'tributary', 'config.json'));
    const elsewhere = fs.mkdtempSync(path.join(dir, 'cwd-'));
    const res = await cli(['sources', 'list', '--json'], {
      cwd: elsewhere,
      env: { ...process.env, TRIBUTARY_CONFIG: '', XDG_CONFIG_HOME: xdg },
    });
    expect(res.err).toBe('');
    expect((JSON.parse(res.out) as { sources: Array<{ id: string }> }).sources.map((s) => s.id)).toEqual([
      id,
    ]);
  });

  it('the installed command: --version and a short usage error, from another folder through a link', () => {
    const bin = path.join(dir, `bin-${uniq()}`);
    fs.mkdirSync(bin);
    // What npm link and a global install make: a symlink to bin/tributary.cjs in a folder on PATH.
    fs.symlinkSync(path.resolve(__dirname, '../../../bin/tributary.cjs'), path.join(bin, 'tributary'));
    const run = (args: string[]) =>
      spawnSync(path.join(bin, 'tributary'), args, {
        cwd: os.tmpdir(),
        encoding: 'utf8',
        env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}` },
      });
    const { version } = JSON.parse(
      fs.readFileSync(path.resolve(__dirname, '../../../package.json'), 'utf8'),
    ) as { version: string };
    expect(run(['--version'])).toMatchObject({ status: 0, stdout: `tributary ${version}\n`, stderr: '' });
    expect(run(['sync', '--frobnicate'])).toMatchObject({
      status: 2,
      stdout: '',
      stderr: 'tributary sync: unknown option --frobnicate (see "tributary help sync")\n',
    });
  });
});
