import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual, promisify } from 'node:util';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  UpdateCommand,
  type BatchWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { keys } from '../functions/adapters/dynamodb/keys';
import { DynamoInbox } from '../functions/adapters/dynamodb/inbox';
import { DynamoMessageIndex, fitMetadata } from '../functions/adapters/dynamodb/message-index';
import type { InboxQuery } from '../functions/core/ports';
import { TABLE } from '../functions/adapters/dynamodb/table';
import { sha256Hex } from '../functions/core/body-tap';
import { identityKey, type MessageRecord, type UpstreamId } from '../functions/core/model';
import { rawObjectKey } from '../functions/core/sync';
import { mulberry32 } from '../test/support/corpus';
import type { Lab } from './lib/lab';
import { measure } from './lib/measure';
import type { Measurement } from './lib/types';

const execFileAsync = promisify(execFile);

/**
 * Inbox reads (issue #6): `tributary inbox --json`, the first page, the page half-way down and the last page,
 * over a store holding `messages` messages of five sources, timed in process (`listInbox`, the target) and as
 * the whole command. Every page is also read once in order, which shows how the read time grows with the depth
 * of the cursor (on DynamoDB Local it does, linearly: ExclusiveStartKey is not a seek there). The store is filled directly (BatchWriteItem of the items the message
 * index writes), not by syncing; the first message goes through the adapter's own commitMessage and its item is
 * compared with the one built here, so the two cannot drift apart unnoticed.
 */

/** The target: an inbox page read from 100,000 messages in at most 100 ms p95 (in-process query timing). */
export const INBOX_TARGET_P95_MS = 100;
export const INBOX_PAGE_SIZE = 50;

export interface LatencyFigures {
  samples: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
}

export interface CommandFigures {
  runs: number;
  medianWallMs: number;
  minWallMs: number;
  maxWallMs: number;
  medianCpuMs: number;
  medianPeakRssMb: number;
}

export interface InboxPageFigures {
  /** 1-based page number; its first message is `offset` messages from the newest. */
  page: number;
  offset: number;
  /** `DynamoMessageIndex.listInbox` in this process (one Query on GSI1 plus unmarshalling), after a warm-up. */
  inProcess: LatencyFigures;
  /** The whole `tributary inbox --json --limit 50 [--cursor C]` command: node start-up, config, query, output. */
  command: CommandFigures;
}

export interface InboxFigures {
  messages: number;
  sources: number;
  pageSize: number;
  /** Wall time to fill the table (message items, content entries, counters), and its rate in messages/s. */
  fillMs: number;
  fillMessagesPerSecond: number;
  /**
   * Every page read once, newest first, following the cursors (how the deep and last pages' cursors are found):
   * the total, and the mean read time of each tenth of the pages, shallowest first (how it grows with depth).
   */
  walk: { pages: number; ms: number; meanMsByDepthTenth: number[] };
  /** Page 1, the page half-way down (page 1,000 of 2,000 for 100,000 messages), and the last page. */
  first: InboxPageFigures;
  deep: InboxPageFigures;
  last: InboxPageFigures;
  /** `tributary --help` with the same bundle: node start-up and loading the bundle, no AWS call. */
  startup: CommandFigures;
  /**
   * The web API's read path (`DynamoInbox.list`, what GET /api/messages runs) on the same store, per filter: a
   * first page of 50. The plain, unread and source pages are held to the target; searches are information (their
   * cost is the entries examined, up to the adapter's budget, not the matches).
   */
  api: Array<{ name: string; target: boolean; entries: number; latency: LatencyFigures }>;
  targetP95Ms: number;
  /** p95 of the in-process query at most the target, for all three pages. */
  meetsTarget: boolean;
}

interface SourceSpec {
  id: string;
  protocol: 'imap' | 'pop3';
  share: number;
}

/** Five accounts of one person, in the mix a consolidated inbox typically has. */
const SOURCES: SourceSpec[] = [
  { id: 'work', protocol: 'imap', share: 0.4 },
  { id: 'personal', protocol: 'imap', share: 0.3 },
  { id: 'old-isp', protocol: 'pop3', share: 0.15 },
  { id: 'lists', protocol: 'imap', share: 0.1 },
  { id: 'family', protocol: 'pop3', share: 0.05 },
];

/** The newest message of the corpus; dates spread over the five years before it. */
const NEWEST = Date.parse('2026-11-20T18:00:00Z');
const SPAN_MS = 5 * 365 * 24 * 3600 * 1000;

/** A small deterministic PRNG in [0, 1), so every run fills the same store (the corpus generator's mulberry32). */
function prng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

const WORDS = (
  'quarterly report meeting invoice travel plans photos weekend review draft contract update schedule ' +
  'budget proposal dinner project release notes question tickets order shipped receipt newsletter ' +
  'reminder password renewal account statement agenda minutes feedback welcome offer delivery'
).split(' ');
const NAMES = ['Ann Lee', 'Bob Stone', 'Chidi Okafor', 'Dana Ruiz', 'Eva Novak', 'Farid Haddad', 'Gu Mei'];

/**
 * Builds the `messages` records, source by source, in the order a sync would commit them (UID / UIDL order,
 * roughly oldest first, with some disorder as real mailboxes have). Deterministic from the seed.
 */
function* corpus(messages: number, seed = 6): Generator<MessageRecord> {
  const rand = prng(seed);
  const pick = <T>(list: T[]): T => list[Math.floor(rand() * list.length)]!;
  const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(' ');
  const person = () => {
    const name = pick(NAMES);
    return { name, address: `${name.toLowerCase().replace(' ', '.')}@example.com` };
  };
  let assigned = 0;
  for (const [s, source] of SOURCES.entries()) {
    const count = s === SOURCES.length - 1 ? messages - assigned : Math.round(messages * source.share);
    assigned += count;
    for (let i = 0; i < count; i++) {
      // Oldest first with jitter: a message's date is near its position in the mailbox, give or take a week.
      const jitter = (rand() - 0.5) * 14 * 24 * 3600 * 1000;
      const dateMs = Math.round(NEWEST - SPAN_MS + (SPAN_MS * (i + rand())) / count + jitter);
      const date = new Date(Math.min(dateMs, NEWEST)).toISOString();
      const fetchedAt = new Date(Math.min(dateMs + 60_000 + rand() * 3_600_000, NEWEST)).toISOString();
      const upstream: UpstreamId =
        source.protocol === 'imap'
          ? { kind: 'imap', folder: 'INBOX', uidValidity: '1700000000', uid: i + 1 }
          : { kind: 'pop3', uidl: `${(0x10000 + i).toString(16)}.${seed}${s}` };
      const identity = identityKey(upstream);
      const withAttachments = rand() < 0.25;
      const size = Math.round(withAttachments ? 50_000 + rand() * 450_000 : 2_000 + rand() * 18_000);
      const sha256 = sha256Hex(`${source.id}/${identity}`);
      const from = person();
      const hasDate = rand() > 0.02; // a few messages have no usable Date header: sorted by fetch time
      yield {
        sourceId: source.id,
        identity,
        upstream,
        object: {
          key: rawObjectKey(source.id, identity),
          size,
          sha256,
          contentSha256: sha256,
        },
        metadata: {
          messageId: `<${sha256.slice(0, 24)}@${from.address.split('@')[1]}>`,
          ...(hasDate ? { date } : {}),
          from,
          to: Array.from({ length: 1 + Math.floor(rand() * 3) }, person),
          cc: rand() < 0.3 ? Array.from({ length: 1 + Math.floor(rand() * 2) }, person) : [],
          subject: `${rand() < 0.3 ? 'Re: ' : ''}${words(3 + Math.floor(rand() * 8))}`,
          snippet: words(40).slice(0, 200),
          hasAttachments: withAttachments,
          attachments: withAttachments
            ? Array.from({ length: 1 + Math.floor(rand() * 2) }, (_, k) => ({
                filename: `${pick(WORDS)}-${k + 1}.pdf`,
                mimeType: 'application/pdf',
                size: Math.round(size / 2),
              }))
            : [],
          parse: 'full',
        },
        fetchedAt,
        sortDate: hasDate ? date : fetchedAt,
        seen: rand() < 0.8,
        flagged: rand() < 0.03,
      };
    }
  }
}

/**
 * The message item exactly as `DynamoMessageIndex.commitMessage` puts it. That method builds its item inline
 * (no exported builder), so its shape is repeated here and checked against a real commit in `fill` (shape drift
 * fails the benchmark instead of measuring a different table).
 */
function messageItem(record: MessageRecord): Record<string, unknown> {
  const pk = keys.sourcePk(record.sourceId);
  const inboxSk = keys.inboxSk(record.sortDate, record.sourceId, record.identity);
  return {
    PK: pk,
    SK: keys.messageSk(record.identity),
    type: 'message',
    ...record,
    metadata: fitMetadata(record.metadata),
    registered: true,
    [TABLE.indexes.sourceInbox.partitionKey]: pk,
    [TABLE.indexes.sourceInbox.sortKey]: inboxSk,
  };
}

/** The content registry item commitMessage puts for a message whose bytes are new (decision 0007): the merged entry. */
function registryItem(record: MessageRecord): Record<string, unknown> {
  return {
    ...record,
    metadata: fitMetadata(record.metadata),
    PK: keys.registryPk(record.object.sha256),
    SK: keys.registrySk,
    type: 'content',
    sha256: record.object.sha256,
    objectKey: record.object.key,
    refs: 1,
    via: new Set([keys.via(record.sourceId, record.identity)]),
    [TABLE.indexes.inbox.partitionKey]: keys.inboxPk,
    [TABLE.indexes.inbox.sortKey]: keys.inboxSk(record.sortDate, record.sourceId, record.identity),
    // New entries are unread: the sparse unread partition of GSI2 (functions/adapters/dynamodb/inbox.ts).
    [TABLE.indexes.sourceInbox.partitionKey]: keys.unreadPk,
    [TABLE.indexes.sourceInbox.sortKey]: keys.inboxSk(record.sortDate, record.sourceId, record.identity),
  };
}

/** The content entry commitMessage writes beside the message (rematch by content). */
function contentItem(record: MessageRecord): Record<string, unknown> {
  return {
    PK: keys.sourcePk(record.sourceId),
    SK: keys.contentSk(record.object.contentSha256, record.identity),
    target: record.identity,
  };
}

export function documentClient(lab: Lab): DynamoDBDocumentClient {
  const client = new DynamoDBClient({
    endpoint: lab.aws.dynamodbEndpoint,
    region: lab.aws.env.AWS_REGION,
    credentials: {
      accessKeyId: lab.aws.env.AWS_ACCESS_KEY_ID!,
      secretAccessKey: lab.aws.env.AWS_SECRET_ACCESS_KEY!,
    },
  });
  // As the product's client (functions/shared/aws-clients.ts): absent optional fields are not written.
  return DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
}

async function batchWrite(db: DynamoDBDocumentClient, table: string, items: Record<string, unknown>[]) {
  let pending: NonNullable<BatchWriteCommandInput['RequestItems']>[string] = items.map((Item) => ({
    PutRequest: { Item },
  }));
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt > 10) throw new Error(`BatchWriteItem left ${pending.length} items unprocessed`);
    if (attempt > 0) await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
    const out = await db.send(new BatchWriteCommand({ RequestItems: { [table]: pending } }));
    pending = out.UnprocessedItems?.[table] ?? [];
  }
}

/**
 * Fills the table with `messages` messages: each source's first message through the adapter's commitMessage
 * (lease, transaction, counters: the real write path), whose stored item must equal `messageItem` of the same
 * record; the rest by BatchWriteItem (8 messages, 24 items a request, `parallel` at once), then the counters.
 */
export async function fillInbox(
  db: DynamoDBDocumentClient,
  index: DynamoMessageIndex,
  table: string,
  messages: number,
  parallel = 6,
): Promise<void> {
  const totals = new Map<string, { messages: number; bytes: number }>();
  const committed = new Set<string>();
  let batch: Record<string, unknown>[] = [];
  const inFlight = new Set<Promise<void>>();
  let failed: Error | undefined;
  const flush = async (items: Record<string, unknown>[]) => {
    if (failed) throw failed;
    const p: Promise<void> = batchWrite(db, table, items)
      .catch((err: unknown) => {
        failed ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= parallel) await Promise.race(inFlight);
  };
  for (const record of corpus(messages)) {
    if (!committed.has(record.sourceId)) {
      committed.add(record.sourceId);
      await commitAndCheck(db, index, table, record);
      continue;
    }
    const t = totals.get(record.sourceId) ?? { messages: 0, bytes: 0 };
    totals.set(record.sourceId, { messages: t.messages + 1, bytes: t.bytes + record.object.size });
    batch.push(messageItem(record), contentItem(record), registryItem(record));
    if (batch.length >= 24) {
      await flush(batch);
      batch = [];
    }
  }
  if (batch.length) await flush(batch);
  await Promise.all(inFlight);
  if (failed) throw failed;
  // The counters commitMessage keeps in the same transaction (STATS: messages, bytes), for the batch-written rest.
  for (const [sourceId, t] of totals) {
    await db.send(
      new UpdateCommand({
        TableName: table,
        Key: { PK: keys.sourcePk(sourceId), SK: keys.statsSk },
        UpdateExpression: 'ADD messages :n, bytes :b',
        ExpressionAttributeValues: { ':n': t.messages, ':b': t.bytes },
      }),
    );
  }
}

/** Commits one record through the adapter and checks that the item it wrote is the one `messageItem` builds. */
async function commitAndCheck(
  db: DynamoDBDocumentClient,
  index: DynamoMessageIndex,
  table: string,
  record: MessageRecord,
): Promise<void> {
  const lease = await index.acquireLease(record.sourceId, 'bench-inbox-fill', 60_000, Date.now());
  if (!lease) throw new Error(`could not take the lease of ${record.sourceId} in a fresh table`);
  if ((await index.commitMessage(lease, record)) !== 'committed')
    throw new Error(`commitMessage did not commit ${record.identity}`);
  await index.releaseLease(lease);
  const expected = [messageItem(record), contentItem(record), registryItem(record)];
  // Sets (the registry's via) compared as sorted lists: JSON has no sets.
  const plain = (item: Record<string, unknown> | undefined) =>
    item &&
    Object.fromEntries(
      Object.entries(item).map(([k, v]) => [k, v instanceof Set ? [...(v as Set<string>)].sort() : v]),
    );
  for (const item of expected) {
    const { Item } = await db.send(
      new GetCommand({ TableName: table, Key: { PK: item.PK, SK: item.SK }, ConsistentRead: true }),
    );
    const normalized = JSON.parse(JSON.stringify(plain(item))) as unknown; // drops undefined, as the client does
    if (!isDeepStrictEqual(plain(Item), normalized)) {
      throw new Error(
        `bench/inbox.ts builds a different item than commitMessage writes: update messageItem/contentItem/registryItem\n` +
          `commitMessage: ${JSON.stringify(Item)}\nbench:         ${JSON.stringify(normalized)}`,
      );
    }
  }
}

function latency(samples: number[]): LatencyFigures {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
  return {
    samples: sorted.length,
    p50Ms: round(at(0.5)),
    p95Ms: round(at(0.95)),
    maxMs: round(sorted[sorted.length - 1]!),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function commandFigures(runs: Measurement[]): CommandFigures {
  const walls = runs.map((r) => r.wallMs);
  return {
    runs: runs.length,
    medianWallMs: round(median(walls)),
    minWallMs: round(Math.min(...walls)),
    maxWallMs: round(Math.max(...walls)),
    medianCpuMs: round(median(runs.map((r) => r.userMs + r.sysMs))),
    medianPeakRssMb: round(median(runs.map((r) => r.peakRssKb / 1024))),
  };
}

export async function benchInbox(
  lab: Lab,
  options: { messages: number; reps: number; commandRuns?: number; log?: (line: string) => void },
): Promise<InboxFigures> {
  const { messages, reps } = options;
  const commandRuns = options.commandRuns ?? 5;
  const log = options.log ?? (() => undefined);
  const limit = INBOX_PAGE_SIZE;
  // Half-way down: page 1,000 (messages 49,951-50,000 from the newest) of 100,000.
  const deepPage = Math.max(2, Math.floor(messages / 2 / limit));
  if (messages < deepPage * limit) throw new Error(`benchInbox needs at least ${2 * limit} messages`);

  const store = await lab.freshStore('inbox');
  const db = documentClient(lab);
  try {
    const index = new DynamoMessageIndex(db, store.table);
    log(`inbox: filling ${store.table} with ${messages} messages`);
    const fillStart = performance.now();
    await fillInbox(db, index, store.table, messages);
    const fillMs = performance.now() - fillStart;
    log(`inbox: filled in ${(fillMs / 1000).toFixed(1)} s`);

    // Every page once, newest first, the way a reader pages down: the cursors of the deep and the last page, and
    // how the read time grows with the depth (mean of each tenth of the pages).
    const cursors: Array<string | undefined> = [];
    const walkMs: number[] = [];
    const walkStart = performance.now();
    for (let cursor: string | undefined; ;) {
      const t = performance.now();
      const out = await index.listInbox({ limit, cursor });
      walkMs.push(performance.now() - t);
      if (out.items.length) cursors.push(cursor);
      if (!out.cursor) break;
      cursor = out.cursor;
    }
    const walkAllMs = performance.now() - walkStart;
    if (cursors.length !== Math.ceil(messages / limit))
      throw new Error(
        `the inbox has ${cursors.length} pages of ${limit}, not ${Math.ceil(messages / limit)}`,
      );
    log(`inbox: read all ${cursors.length} pages in ${(walkAllMs / 1000).toFixed(1)} s`);
    const tenth = Math.max(1, Math.floor(walkMs.length / 10));
    const byDepth = Array.from({ length: Math.min(10, walkMs.length) }, (_, i) => {
      const part = walkMs.slice(i * tenth, i === 9 ? walkMs.length : (i + 1) * tenth);
      return round(part.reduce((x, y) => x + y, 0) / part.length);
    });

    const pages = [1, deepPage, cursors.length].map((page) => ({
      page,
      cursor: cursors[page - 1],
      expected: Math.min(limit, messages - (page - 1) * limit),
      items: [] as MessageRecord[],
      ms: [] as number[],
      runs: [] as Measurement[],
    }));
    for (const page of pages) {
      page.items = (await index.listInbox({ limit, cursor: page.cursor })).items;
      if (page.items.length !== page.expected)
        throw new Error(`page ${page.page} held ${page.items.length} messages, not ${page.expected}`);
    }
    if (pages[0]!.items[0]!.sortDate < pages[2]!.items[0]!.sortDate)
      throw new Error('the inbox is not newest first');

    // In process: a warm-up, then the pages in turn so that drift hits all alike.
    for (let i = 0; i < 5; i++)
      for (const page of pages) await index.listInbox({ limit, cursor: page.cursor });
    for (let i = 0; i < reps; i++) {
      for (const page of pages) {
        const t = performance.now();
        const out = await index.listInbox({ limit, cursor: page.cursor });
        page.ms.push(performance.now() - t);
        if (out.items.length !== page.expected) throw new Error(`page ${page.page} came back short`);
      }
    }

    // The web API's path, per filter (GET /api/messages?...).
    const reader = new DynamoInbox(db, store.table);
    const firstFrom = pages[0]!.items[0]!.metadata.from?.name?.split(' ')[0] ?? 'a';
    const apiCases: Array<{ name: string; target: boolean; query: Omit<InboxQuery, 'limit'> }> = [
      { name: 'all sources', target: true, query: {} },
      { name: 'unread', target: true, query: { unread: true } },
      {
        name: `one source (${SOURCES[2]!.id}, ${SOURCES[2]!.share * 100}%)`,
        target: true,
        query: { sourceId: SOURCES[2]!.id },
      },
      { name: `search "${firstFrom}" (a sender's name)`, target: false, query: { q: firstFrom } },
      { name: 'search that matches nothing', target: false, query: { q: 'zq-no-such-text' } },
    ];
    const api: InboxFigures['api'] = [];
    for (const c of apiCases) {
      let entries = 0;
      for (let i = 0; i < 3; i++) entries = (await reader.list({ ...c.query, limit })).entries.length;
      const ms: number[] = [];
      for (let i = 0; i < reps; i++) {
        const t = performance.now();
        await reader.list({ ...c.query, limit });
        ms.push(performance.now() - t);
      }
      if (c.target && entries !== limit) throw new Error(`the API's ${c.name} page held ${entries} entries`);
      api.push({ name: c.name, target: c.target, entries, latency: latency(ms) });
      log(`api ${c.name}: p95 ${latency(ms).p95Ms} ms, ${entries} entries`);
    }

    // The whole command, as a user runs it.
    const configFile = path.join(lab.dir, 'inbox.config.json');
    fs.writeFileSync(
      configFile,
      JSON.stringify({
        store: { mode: 'aws', table: store.table, bucket: store.bucket, region: 'us-east-1' },
        sources: SOURCES.map((s) => ({
          id: s.id,
          protocol: s.protocol,
          host: '127.0.0.1',
          user: s.id,
          secret: { env: `BENCH_INBOX_${s.id.toUpperCase().replace(/-/g, '_')}` },
          enabled: false,
        })),
      }),
    );
    const inbox = (cursor: string | undefined) =>
      lab.tributary(
        [
          'inbox',
          '--json',
          '--limit',
          String(limit),
          '--config',
          configFile,
          ...(cursor ? ['--cursor', cursor] : []),
        ],
        store.env,
      );
    // Once unmeasured, reading the whole output (measure() keeps only its tail): the same pages as in process.
    for (const page of pages) {
      const c = inbox(page.cursor);
      const { stdout } = await execFileAsync(c.cmd, c.args, {
        env: { ...process.env, ...c.env },
        maxBuffer: 64 * 1024 * 1024,
      });
      const out = JSON.parse(stdout) as { messages: Array<{ identity: string }> };
      if (out.messages.map((m) => m.identity).join(' ') !== page.items.map((m) => m.identity).join(' '))
        throw new Error(`tributary inbox did not print page ${page.page} as read in process`);
    }
    const startupRuns: Measurement[] = [];
    for (let i = 0; i < commandRuns; i++) {
      for (const page of pages) {
        const m = await measure(inbox(page.cursor));
        if (m.exitCode !== 0)
          throw new Error(`tributary inbox exited ${m.exitCode}: ${m.stderr.slice(-2000)}`);
        const last = page.items[page.items.length - 1]!.identity;
        if (!m.stdout.includes(`"identity": ${JSON.stringify(last)}`))
          throw new Error(`tributary inbox did not print page ${page.page} as read in process`);
        page.runs.push(m);
      }
      startupRuns.push(await measure(lab.tributary(['--help'], store.env)));
    }

    const [first, deep, last] = pages.map((page): InboxPageFigures => ({
      page: page.page,
      offset: (page.page - 1) * limit,
      inProcess: latency(page.ms),
      command: commandFigures(page.runs),
    })) as [InboxPageFigures, InboxPageFigures, InboxPageFigures];
    return {
      messages,
      sources: SOURCES.length,
      pageSize: limit,
      fillMs: Math.round(fillMs),
      fillMessagesPerSecond: Math.round(messages / (fillMs / 1000)),
      walk: { pages: cursors.length, ms: Math.round(walkAllMs), meanMsByDepthTenth: byDepth },
      first,
      deep,
      last,
      startup: commandFigures(startupRuns),
      api,
      targetP95Ms: INBOX_TARGET_P95_MS,
      meetsTarget:
        [first, deep, last].every((p) => p.inProcess.p95Ms <= INBOX_TARGET_P95_MS) &&
        api.every((a) => !a.target || a.latency.p95Ms <= INBOX_TARGET_P95_MS),
    };
  } finally {
    db.destroy();
    await store.drop();
  }
}
