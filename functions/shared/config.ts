import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/errors';
import type { Source } from '../core/model';

/**
 * The one config file (`tributary.config.json`), validated once with one schema. Every error names the field
 * and the fix. Passwords never live here: a source names where its secret is.
 */
const slug = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9-]{0,62}$/,
    'must be a slug: lower-case letters, digits and dashes, e.g. "work-mail"',
  );

const secretSchema = z.union(
  [
    z.strictObject({ env: z.string().min(1) }),
    z.strictObject({ file: z.string().min(1) }),
    z.strictObject({ ssmParameter: z.string().startsWith('/') }),
  ],
  { error: 'must be {"env": "VARIABLE"} or {"file": "path"} (or {"ssmParameter": "/name"} in AWS)' },
);

const retentionSchema = z.discriminatedUnion(
  'mode',
  [
    z.strictObject({ mode: z.literal('keep') }),
    z.strictObject({ mode: z.literal('delete-on-retrieve') }),
    z.strictObject({ mode: z.literal('delete-after-days'), days: z.number().int().min(1).max(3650) }),
  ],
  { error: 'mode must be "keep", "delete-on-retrieve" or "delete-after-days" (with "days")' },
);

const percent = z.number().gt(0).max(100);

const upstreamQuotaSchema = z
  .strictObject({
    maxUsagePercent: percent,
    targetPercent: percent,
    capacityBytes: z.number().int().positive().optional(),
  })
  .refine((q) => q.targetPercent < q.maxUsagePercent, {
    message: 'targetPercent must be below maxUsagePercent, e.g. {"maxUsagePercent": 90, "targetPercent": 75}',
  });

const inboxQuotaSchema = z
  .strictObject({
    maxBytes: z.number().int().positive().optional(),
    maxMessages: z.number().int().positive().optional(),
    onExceed: z.enum(['pause', 'evict-oldest'], { error: 'must be "pause" or "evict-oldest"' }),
  })
  .refine((q) => q.maxBytes !== undefined || q.maxMessages !== undefined, {
    message: 'needs "maxBytes", "maxMessages" or both',
  });

const sourceSchema = z
  .strictObject({
    id: slug,
    protocol: z.enum(['imap', 'pop3'], { error: 'must be "imap" or "pop3"' }),
    host: z.string().min(1, 'is required: the server name, e.g. "imap.example.com"'),
    port: z.number().int().min(1).max(65535).optional(),
    tls: z
      .enum(['implicit', 'starttls', 'none'], { error: 'must be "implicit", "starttls" or "none"' })
      .default('implicit'),
    caFile: z.string().min(1).optional(),
    servername: z.string().min(1).optional(),
    user: z.string().min(1, 'is required: the login name'),
    secret: secretSchema,
    folders: z.array(z.string().min(1)).min(1).optional(),
    pollMinutes: z.number().int().min(1).max(1440).default(5),
    enabled: z.boolean().default(true),
    retention: retentionSchema.default({ mode: 'keep' }),
    upstreamQuota: upstreamQuotaSchema.optional(),
    inboxQuota: inboxQuotaSchema.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.tls === 'none' && !isLoopback(s.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: `"none" sends the password in clear and is only allowed for a loopback host; ${s.host} is not one: use "implicit" or "starttls"`,
      });
    }
    // A policy that cannot work is refused here rather than ignored at run time.
    if (s.upstreamQuota && s.protocol === 'pop3' && s.upstreamQuota.capacityBytes === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreamQuota', 'capacityBytes'],
        message:
          'is required for POP3: POP3 cannot report the mailbox limit, so declare it in bytes (e.g. 1073741824 for 1 GB)',
      });
    }
    if (s.upstreamQuota && s.protocol === 'imap' && s.upstreamQuota.capacityBytes !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreamQuota', 'capacityBytes'],
        message: 'is for POP3 only: an IMAP server reports its own limit (GETQUOTAROOT); remove it',
      });
    }
    if (s.inboxQuota?.onExceed === 'evict-oldest' && s.retention.mode === 'delete-on-retrieve') {
      ctx.addIssue({
        code: 'custom',
        path: ['inboxQuota', 'onExceed'],
        message:
          '"evict-oldest" only removes copies that still exist upstream, and "delete-on-retrieve" leaves none: use "pause", or another retention',
      });
    }
    if (s.protocol === 'pop3' && s.folders) {
      ctx.addIssue({ code: 'custom', path: ['folders'], message: 'POP3 has no folders: remove "folders"' });
    }
  });

const awsStoreSchema = z
  .strictObject({
    mode: z.literal('aws'),
    region: z.string().min(1).optional(),
    /** A deployed Tributary: its CloudFormation stack, whose outputs name the table, bucket and secrets path. */
    stack: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,127}$/, 'must be a CloudFormation stack name')
      .optional(),
    table: z.string().min(1).optional(),
    bucket: z.string().min(1).optional(),
    secretsPrefix: z
      .string()
      .regex(/^\/[A-Za-z0-9_.\-/]*\/$/, 'must be an SSM path that starts and ends with "/"')
      .optional(),
  })
  .refine((s) => s.stack !== undefined || (s.table !== undefined && s.bucket !== undefined), {
    message:
      'needs "stack" (a deployed Tributary, e.g. "TributaryService") or both "table" and "bucket" (a bare store)',
    path: ['bucket'],
  });

const storeSchema = z.discriminatedUnion(
  'mode',
  [
    z.strictObject({ mode: z.literal('local'), dataDir: z.string().min(1).default('.tributary') }),
    awsStoreSchema,
  ],
  { error: 'mode must be "local" (with "dataDir") or "aws" (with "stack", or "table" and "bucket")' },
);

const configSchema = z
  .strictObject({
    $schema: z.string().optional(),
    store: storeSchema.default({ mode: 'local', dataDir: '.tributary' }),
    sources: z.array(sourceSchema).default([]),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.sources.forEach((s, i) => {
      if (seen.has(s.id))
        ctx.addIssue({
          code: 'custom',
          path: ['sources', i, 'id'],
          message: `"${s.id}" is used twice: ids must be unique`,
        });
      seen.add(s.id);
    });
  });

export type RawConfig = z.infer<typeof configSchema>;
export type SourceConfig = RawConfig['sources'][number];
export type StoreConfig = RawConfig['store'];

export interface Config {
  file: string;
  store: StoreConfig;
  sources: Array<Source & { secret: SourceConfig['secret'] }>;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

function defaultPort(protocol: 'imap' | 'pop3', tls: 'implicit' | 'starttls' | 'none'): number {
  if (protocol === 'imap') return tls === 'implicit' ? 993 : 143;
  return tls === 'implicit' ? 995 : 110;
}

function describePath(p: PropertyKey[], raw: unknown): string {
  let out = '';
  let node: unknown = raw;
  for (const part of p) {
    if (typeof part === 'number') {
      const id = (node as unknown[] | undefined)?.[part] as { id?: unknown } | undefined;
      out += typeof id?.id === 'string' ? `[${part}] (id "${id.id}")` : `[${part}]`;
      node = (node as unknown[] | undefined)?.[part];
    } else {
      out += out ? `.${String(part)}` : String(part);
      node = (node as Record<string, unknown> | undefined)?.[String(part)];
    }
  }
  return out || '(top level)';
}

/** A validated source as the engine takes it: defaults filled in, the CA file read, a secret file's path absolute. */
function normalizeSource(s: SourceConfig, base: string): Config['sources'][number] {
  let ca: string | undefined;
  if (s.caFile) {
    const caPath = path.resolve(base, s.caFile);
    try {
      ca = fs.readFileSync(caPath, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `sources (id "${s.id}").caFile: cannot read ${caPath}: ${(err as Error).message}`,
      );
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
      throw new ConfigError(`sources (id "${s.id}").caFile: ${caPath} is not a PEM certificate`);
    }
  }
  const secret = 'file' in s.secret ? { file: path.resolve(base, s.secret.file) } : s.secret;
  return {
    id: s.id,
    protocol: s.protocol,
    host: s.host,
    port: s.port ?? defaultPort(s.protocol, s.tls),
    tls: s.tls,
    ca,
    servername: s.servername,
    user: s.user,
    folders: s.folders ?? (s.protocol === 'imap' ? ['INBOX'] : []),
    pollMinutes: s.pollMinutes,
    enabled: s.enabled,
    retention: s.retention,
    upstreamQuota: s.upstreamQuota,
    inboxQuota: s.inboxQuota,
    secret,
  };
}

function describeIssues(issues: z.core.$ZodIssue[], raw: unknown): string[] {
  return issues.map((issue) => {
    const where = describePath(issue.path, raw);
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys;
      if (keys.includes('password') || keys.includes('pass')) {
        return `${where}: passwords never go in the config file; use "secret": {"env": "NAME"} or {"file": "path"}`;
      }
      return `${where}: unknown field${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}: check the spelling`;
    }
    return `${where}: ${issue.message}`;
  });
}

/**
 * Validates one source given in the config file's format (the CLI's `sources add|update` build one from their
 * options): the same rules and messages as the config file. `what` names it in the error; `base` is where a
 * relative caFile starts.
 */
export function parseSource(raw: unknown, base: string, what: string): Config['sources'][number] {
  const result = sourceSchema.safeParse(raw);
  if (!result.success)
    throw new ConfigError(
      `${what} is not valid:\n  - ${describeIssues(result.error.issues, raw).join('\n  - ')}`,
    );
  return normalizeSource(result.data, base);
}

/** Validates a parsed config object; `file` is where relative paths (caFile, secret files, dataDir) start. */
export function parseConfig(raw: unknown, file: string): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const lines = describeIssues(result.error.issues, raw);
    throw new ConfigError(`${file} is not valid:\n  - ${lines.join('\n  - ')}`);
  }
  const base = path.dirname(path.resolve(file));
  const store =
    result.data.store.mode === 'local'
      ? { ...result.data.store, dataDir: path.resolve(base, result.data.store.dataDir) }
      : result.data.store;
  const sources = result.data.sources.map((s) => normalizeSource(s, base));
  return { file, store, sources };
}

/** Finds and reads the config: `--config`, else TRIBUTARY_CONFIG, else ./tributary.config.json. */
export function loadConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env): Config {
  const file = path.resolve(explicit ?? env.TRIBUTARY_CONFIG ?? 'tributary.config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new ConfigError(
      `no config file at ${file}: create one (see "Configuration" in the README), or point to it with --config or TRIBUTARY_CONFIG`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, file);
}
