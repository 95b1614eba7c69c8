import { randomBytes } from 'node:crypto';
import { DynamoMessageIndex } from '../../functions/adapters/dynamodb/message-index';
import { PostalMimeParser } from '../../functions/adapters/mime';
import { S3RawMailStore } from '../../functions/adapters/s3/raw-mail-store';
import type { Source } from '../../functions/core/model';
import type { Bytes, Credentials } from '../../functions/core/ports';
import { syncSource, type SyncDeps, type SyncOptions } from '../../functions/core/sync';
import type { SourceRunReport } from '../../functions/core/model';
import { makeAwsClients, type AwsClients } from '../../functions/shared/aws-clients';
import { makeConnector } from '../../functions/shared/connector';
import { silentLogger } from '../../functions/shared/runtime';
import type { MailLab, TestUser } from './mail-lab';

/** Tributary wired to the harness's DynamoDB Local and S3 server, as the CLI would be, with passwords in memory. */
export class TestTributary {
  readonly clients: AwsClients = makeAwsClients();
  readonly table = process.env.TRIBUTARY_TEST_TABLE!;
  readonly bucket = process.env.TRIBUTARY_TEST_BUCKET!;
  readonly index = new DynamoMessageIndex(this.clients.documents, this.table);
  readonly store = new S3RawMailStore(this.clients.s3, this.bucket);
  readonly passwords = new Map<string, string>();
  readonly credentials: Credentials = {
    password: (source) => {
      const p = this.passwords.get(source.id);
      return p === undefined
        ? Promise.reject(new Error(`no test password for ${source.id}`))
        : Promise.resolve(p);
    },
  };
  readonly deps: SyncDeps = {
    connector: makeConnector(),
    store: this.store,
    index: this.index,
    parser: new PostalMimeParser(),
    credentials: this.credentials,
    clock: { now: () => Date.now() },
    logger: silentLogger,
  };

  constructor(readonly lab: MailLab) {}

  source(
    user: TestUser,
    protocol: 'imap' | 'pop3',
    tls: Source['tls'] = 'implicit',
    overrides: Partial<Source> = {},
  ): Source {
    const id = `${protocol}-${tls}-${randomBytes(5).toString('hex')}`;
    this.passwords.set(id, user.password);
    const ports = this.lab.info.ports;
    const port =
      protocol === 'imap'
        ? tls === 'implicit'
          ? ports.imaps
          : ports.imap
        : tls === 'implicit'
          ? ports.pop3s
          : ports.pop3;
    return {
      id,
      protocol,
      host: this.lab.info.host,
      port,
      tls,
      ca: this.lab.ca.toString(),
      servername: this.lab.info.servername,
      user: user.name,
      folders: protocol === 'imap' ? ['INBOX'] : [],
      pollMinutes: 5,
      enabled: true,
      retention: { mode: 'keep' },
      ...overrides,
    };
  }

  /** A source for a scripted server (a fake) on loopback: no TLS, no CA, user `user`, password `secret`. */
  fakeSource(protocol: 'imap' | 'pop3', port: number, overrides: Partial<Source> = {}): Source {
    return {
      ...this.source({ name: 'user', password: 'secret', home: '', maildir: '' }, protocol, 'none'),
      port,
      ca: undefined,
      ...overrides,
    };
  }

  sync(source: Source, options: Partial<SyncOptions> = {}): Promise<SourceRunReport> {
    return syncSource(this.deps, source, { deadline: Date.now() + 120_000, leaseTtlMs: 30_000, ...options });
  }

  async stored(sourceId: string) {
    const out = [];
    for await (const m of this.index.sourceMessages(sourceId)) out.push(m);
    return out;
  }

  async bytes(key: string): Promise<Buffer> {
    return readAll(await this.store.get(key));
  }

  close(): void {
    this.clients.dynamodb.destroy();
    this.clients.s3.destroy();
  }
}

export async function readAll(body: Bytes): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}
