import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { itemBytes } from './dynamo-size';

/**
 * Counting HTTP proxies in front of DynamoDB Local and s3rver (bench/cost.ts): the handlers' SDK clients are pointed
 * at them through AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_S3, and every request is recorded.
 *
 * DynamoDB: the operation (X-Amz-Target), what it touched (the key prefixes of the item, the index of a query), and
 * the capacity it consumed. The proxy adds `"ReturnConsumedCapacity": "INDEXES"` to every request that can take it
 * (DynamoDB Local checks no signature, so the changed body is accepted) and reads the ConsumedCapacity DynamoDB
 * Local computes from the item sizes: 1 KB per write unit, 4 KB per read unit, half for an eventually consistent
 * read, and a write per global secondary index the item is projected into (delete + put when its index key
 * changes). The handlers never asked for it, so the field is ignored by them. DynamoDB Local reports 0 for a read
 * that finds nothing and nothing for a failed conditional write; AWS charges both (a read's minimum is 0.5 or 1
 * RRU, a failed conditional write 1 WRU), so `billed` applies those minimums.
 *
 * S3: the request kind (PutObject, GetObject, HeadObject, ListObjectsV2, CreateMultipartUpload, UploadPart,
 * CompleteMultipartUpload, DeleteObject(s), CopyObject...) and the bytes uploaded.
 */

export interface DynamoCall {
  /** The X-Amz-Target operation: GetItem, PutItem, UpdateItem, Query, TransactWriteItems... */
  op: string;
  /** What it touched, ids removed: `SRC#·LEASE`, `SOURCES·SOURCE#`, `Query GSI3 DUE`... */
  what: string;
  consistent: boolean;
  /** Error type (ConditionalCheckFailedException, TransactionCanceledException...) or undefined. */
  error?: string;
  /** As DynamoDB Local reported it: read units (table + indexes) and write units (table + indexes). */
  rru: number;
  wru: number;
  /** With AWS's minimums applied (see above). */
  billedRru: number;
  billedWru: number;
  /** For a transaction: the units of the same writes made as plain writes (no doubling, no condition check). */
  plainWru: number;
}

export interface S3Call {
  kind: string;
  /** Bytes of the request body (what an upload stores). */
  bytesIn: number;
  status: number;
}

export interface CountingProxy<C> {
  endpoint: string;
  /** Everything since the last `take()`; resets. */
  take(): C[];
  close(): Promise<void>;
}

const READS = new Set(['GetItem', 'Query', 'Scan', 'BatchGetItem', 'TransactGetItems']);
const WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem', 'BatchWriteItem', 'TransactWriteItems']);
const TAKES_CAPACITY = new Set([...READS, ...WRITES]);

/** `SRC#imap-implicit-0a1b2c` -> `SRC#`, `LEASE` -> `LEASE`, `STATE#imap#INBOX` -> `STATE#`. */
function prefixOf(value: unknown): string {
  const s = typeof value === 'object' && value !== null ? (value as { S?: string }).S : undefined;
  if (typeof s !== 'string') return '?';
  const hash = s.indexOf('#');
  return hash < 0 ? s : s.slice(0, hash + 1);
}

type AttributeMap = Record<string, unknown>;

function keyWhat(key: AttributeMap | undefined): string {
  if (!key) return '?';
  return `${prefixOf(key.PK)}·${prefixOf(key.SK)}`;
}

/** A short, id-free description of what a request touched. */
export function describeDynamoRequest(op: string, body: Record<string, unknown>): string {
  switch (op) {
    case 'GetItem':
    case 'DeleteItem':
    case 'UpdateItem':
      return keyWhat(body.Key as AttributeMap);
    case 'PutItem':
      return keyWhat(body.Item as AttributeMap);
    case 'Query': {
      const values = (body.ExpressionAttributeValues ?? {}) as AttributeMap;
      const prefixes = Object.keys(values)
        .sort()
        .map((k) => prefixOf(values[k]))
        .filter((p) => p !== '?');
      return `${typeof body.IndexName === 'string' ? body.IndexName : 'table'} ${prefixes.join(' ')}`.trim();
    }
    case 'TransactWriteItems': {
      // Each kind of action once, with how many of it: `Put SRC#·MSG# x15 + Update SRC#·STATS + ConditionCheck ...`.
      const items = (body.TransactItems ?? []) as Array<
        Record<string, { Key?: AttributeMap; Item?: AttributeMap }>
      >;
      const counts = new Map<string, number>();
      for (const t of items) {
        const [kind, v] = Object.entries(t)[0] ?? ['?', {}];
        const label = `${kind} ${keyWhat(v.Key ?? v.Item)}`;
        counts.set(label, (counts.get(label) ?? 0) + 1);
      }
      return [...counts].map(([label, n]) => (n > 1 ? `${label} x${n}` : label)).join(' + ');
    }
    case 'BatchWriteItem': {
      const requests = Object.values((body.RequestItems ?? {}) as Record<string, unknown[]>).flat();
      return `${requests.length} items`;
    }
    case 'BatchGetItem': {
      const requests = Object.values((body.RequestItems ?? {}) as Record<string, { Keys?: AttributeMap[] }>);
      const keys = requests.flatMap((r) => r.Keys ?? []);
      const kinds = [...new Set(keys.map((k) => keyWhat(k)))].join(', ');
      return `${kinds} x${keys.length}`;
    }
    default:
      return '';
  }
}

interface ConsumedCapacity {
  CapacityUnits?: number;
}

function capacityOf(response: Record<string, unknown>): number {
  const raw = response.ConsumedCapacity as ConsumedCapacity | ConsumedCapacity[] | undefined;
  const list = Array.isArray(raw) ? raw : raw ? [raw] : [];
  return list.reduce((n, c) => n + (c.CapacityUnits ?? 0), 0);
}

type Item = Record<string, AttributeValue>;

/** Items a plain write request writes (each is charged at least one WRU, also when its condition failed). */
function itemsWritten(op: string, body: Record<string, unknown>): number {
  if (op === 'BatchWriteItem')
    return Object.values((body.RequestItems ?? {}) as Record<string, unknown[]>).flat().length;
  return 1;
}

/** Reads an item as it is now (outside the count): how big an updated item came out. */
export type ItemLookup = (table: string, key: Item) => Promise<Item | undefined>;

const kb = (bytes: number) => Math.max(1, Math.ceil(bytes / 1024));
const readUnits = (bytes: number, consistent: boolean) =>
  Math.max(1, Math.ceil(bytes / 4096)) * (consistent ? 1 : 0.5);

/**
 * Write units of a TransactWriteItems, as AWS bills them (DynamoDB Local reports far less: two puts and a
 * condition check come back as 2 units): every action twice the units of its item (rounded up to 1 KB per item
 * first), a ConditionCheck 2; an index that holds the item is written once more at the plain rate (twice, delete
 * and put, when the action sets one of its keys). An updated item's size is read back after the transaction.
 */
async function transactWriteUnits(
  request: Record<string, unknown>,
  indexKeys: Array<[string, string]>,
  lookup: ItemLookup | undefined,
): Promise<{ units: number; plain: number }> {
  const actions = (request.TransactItems ?? []) as Array<Record<string, Record<string, unknown>>>;
  let units = 0;
  let plain = 0;
  for (const action of actions) {
    const [kind, body] = Object.entries(action)[0] ?? ['', {}];
    if (kind === 'ConditionCheck') {
      units += 2;
      continue;
    }
    let item: Item | undefined;
    if (kind === 'Put') item = body.Item as Item;
    else if (kind === 'Update' && lookup) item = await lookup(String(body.TableName), body.Key as Item);
    const size = item ? itemBytes(item) : 1024;
    units += 2 * kb(size);
    plain += kb(size);
    if (!item || kind === 'Delete') continue;
    const names = Object.values((body.ExpressionAttributeNames ?? {}) as Record<string, string>);
    const expression = typeof body.UpdateExpression === 'string' ? body.UpdateExpression : '';
    for (const [pk, sk] of indexKeys) {
      if (item[pk] === undefined || item[sk] === undefined) continue;
      const setsKey = kind === 'Update' && [pk, sk].some((k) => names.includes(k) || expression.includes(k));
      units += (setsKey ? 2 : 1) * kb(size);
      plain += (setsKey ? 2 : 1) * kb(size);
    }
  }
  return { units, plain };
}

/** Read units of a BatchGetItem: each key on its own (4 KB rounding per item), a missing one at the minimum. */
function batchGetUnits(request: Record<string, unknown>, response: Record<string, unknown>): number {
  const asked = (request.RequestItems ?? {}) as Record<
    string,
    { Keys?: unknown[]; ConsistentRead?: boolean }
  >;
  const got = (response.Responses ?? {}) as Record<string, Item[]>;
  const unprocessed = (response.UnprocessedKeys ?? {}) as Record<string, { Keys?: unknown[] }>;
  let units = 0;
  for (const [table, spec] of Object.entries(asked)) {
    const consistent = spec.ConsistentRead === true;
    const found = got[table] ?? [];
    const missing = (spec.Keys?.length ?? 0) - found.length - (unprocessed[table]?.Keys?.length ?? 0);
    units += found.reduce((n, i) => n + readUnits(itemBytes(i), consistent), 0);
    units += Math.max(0, missing) * (consistent ? 1 : 0.5);
  }
  return units;
}

function batchConsistent(request: Record<string, unknown>): boolean {
  const asked = Object.values((request.RequestItems ?? {}) as Record<string, { ConsistentRead?: boolean }>);
  return asked.length > 0 && asked.every((a) => a.ConsistentRead === true);
}

/** Forwards every request to `target`, calling `onExchange` with both bodies once the answer is complete. */
async function startProxy(
  target: string,
  rewrite: (req: http.IncomingMessage, body: Buffer) => Buffer,
  onExchange: (req: http.IncomingMessage, body: Buffer, status: number, answer: Buffer) => void,
): Promise<{ endpoint: string; close(): Promise<void> }> {
  const url = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const original = Buffer.concat(chunks);
      const body = rewrite(req, original);
      const headers = { ...req.headers };
      // The body is forwarded whole: a length, not chunks; `expect` is never signed, so it may go.
      delete headers['transfer-encoding'];
      delete headers.expect;
      headers['content-length'] = String(body.length);
      const upstream = http.request(
        { host: url.hostname, port: url.port, method: req.method, path: req.url, headers, agent },
        (answer) => {
          const back: Buffer[] = [];
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.on('data', (c: Buffer) => {
            back.push(c);
            res.write(c);
          });
          answer.on('end', () => {
            res.end();
            onExchange(req, body, answer.statusCode ?? 0, Buffer.concat(back));
          });
        },
      );
      upstream.on('error', (err) => {
        res.writeHead(502);
        res.end(String(err));
      });
      upstream.end(body);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface DynamoCounter extends Omit<CountingProxy<DynamoCall>, 'take'> {
  /** Everything since the last call, once its accounting (which may read items back) is done; resets. */
  take(): Promise<DynamoCall[]>;
}

/**
 * `indexKeys`: the [partition, sort] key names of the table's global secondary indexes (all projecting every
 * attribute). `lookup` reads an item back (not through the proxy) for a transaction's updated items.
 */
export async function startDynamoCounter(
  target: string,
  options: { indexKeys: Array<[string, string]>; lookup?: ItemLookup },
): Promise<DynamoCounter> {
  let calls: Array<Promise<DynamoCall>> = [];
  const opOf = (req: http.IncomingMessage) =>
    String(req.headers['x-amz-target'] ?? '')
      .split('.')
      .pop() ?? '';
  const account = async (
    op: string,
    status: number,
    request: Record<string, unknown>,
    response: Record<string, unknown>,
  ) => {
    const error =
      status >= 400
        ? (typeof response.__type === 'string' ? response.__type : `HTTP ${status}`).split('#').pop()
        : undefined;
    const consistent = op === 'BatchGetItem' ? batchConsistent(request) : request.ConsistentRead === true;
    const reported = capacityOf(response);
    const read = READS.has(op);
    const write = WRITES.has(op);
    let billed = reported;
    let plain: number | undefined;
    if (op === 'TransactWriteItems') {
      const t = error
        ? { units: 0, plain: 0 }
        : await transactWriteUnits(request, options.indexKeys, options.lookup);
      billed = t.units;
      plain = t.plain;
    } else if (op === 'BatchGetItem') billed = batchGetUnits(request, response);
    else if (read) billed = Math.max(reported, consistent ? 1 : 0.5);
    // A failed write is charged too, a unit per item at least (a cancelled transaction is counted as 0 units).
    else if (write) billed = Math.max(reported, itemsWritten(op, request));
    const call: DynamoCall = {
      op,
      what: describeDynamoRequest(op, request),
      consistent,
      rru: read ? reported : 0,
      wru: write ? reported : 0,
      billedRru: read ? billed : 0,
      billedWru: write ? billed : 0,
      plainWru: write ? (plain ?? billed) : 0,
    };
    if (error) call.error = error;
    return call;
  };
  const proxy = await startProxy(
    target,
    (req, body) => {
      const op = opOf(req);
      if (!TAKES_CAPACITY.has(op)) return body;
      const parsed = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      parsed.ReturnConsumedCapacity = 'INDEXES';
      return Buffer.from(JSON.stringify(parsed));
    },
    (req, body, status, answer) => {
      let request: Record<string, unknown> = {};
      let response: Record<string, unknown> = {};
      try {
        request = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        response = JSON.parse(answer.toString('utf8') || '{}') as Record<string, unknown>;
      } catch {
        // not JSON: counted with what is known
      }
      calls.push(account(opOf(req), status, request, response));
    },
  );
  return {
    endpoint: proxy.endpoint,
    async take() {
      const out = calls;
      calls = [];
      return Promise.all(out);
    },
    close: proxy.close,
  };
}

/** The S3 operation of a path-style request (`/bucket/key?query`). */
export function s3Kind(method: string, url: string): string {
  const u = new URL(url, 'http://x');
  const parts = u.pathname.split('/').filter(Boolean);
  const hasKey = parts.length > 1;
  const q = u.searchParams;
  switch (method) {
    case 'PUT':
      if (q.has('partNumber')) return 'UploadPart';
      if (!hasKey) return 'CreateBucket';
      return 'PutObject';
    case 'POST':
      if (q.has('uploads')) return 'CreateMultipartUpload';
      if (q.has('uploadId')) return 'CompleteMultipartUpload';
      if (q.has('delete')) return 'DeleteObjects';
      return 'POST';
    case 'GET':
      if (!hasKey) return q.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects';
      return 'GetObject';
    case 'HEAD':
      return hasKey ? 'HeadObject' : 'HeadBucket';
    case 'DELETE':
      if (q.has('uploadId')) return 'AbortMultipartUpload';
      return hasKey ? 'DeleteObject' : 'DeleteBucket';
    default:
      return method;
  }
}

export async function startS3Counter(target: string): Promise<CountingProxy<S3Call>> {
  let calls: S3Call[] = [];
  const proxy = await startProxy(
    target,
    (_req, body) => body,
    (req, body, status) => {
      let kind = s3Kind(req.method ?? '', req.url ?? '/');
      if (kind === 'PutObject' && req.headers['x-amz-copy-source']) kind = 'CopyObject';
      calls.push({ kind, bytesIn: body.length, status });
    },
  );
  return {
    endpoint: proxy.endpoint,
    take() {
      const out = calls;
      calls = [];
      return out;
    },
    close: proxy.close,
  };
}
