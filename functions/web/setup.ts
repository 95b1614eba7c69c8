import { z } from 'zod';
import { isLoopback } from '../shared/config';
import type { NewSourceInput, SetupResult } from './contract';

/**
 * Adding a source from the page (one machine): the body of `POST /api/setup/test` and `POST /api/sources` checked
 * once, with a message per field in the words of the config file's own checks (functions/shared/config.ts), and the
 * password kept out of everything that goes back.
 */

/** A body larger than this is refused before it is parsed: a source is a few hundred bytes. */
export const MAX_SETUP_BODY = 16 * 1024;

const required =
  (what: string, example: string) =>
  (issue: { input?: unknown }): string =>
    issue.input === undefined ? `is required: ${what}` : `must be text: ${example}`;

// eslint-disable-next-line no-control-regex -- control characters are what it refuses
const noControl = /^[^\u0000-\u001f\u007f]*$/;

const host = z
  .string({ error: required('the server name, e.g. "imap.example.com"', 'e.g. "imap.example.com"') })
  .trim()
  .min(1, 'is required: the server name, e.g. "imap.example.com"')
  .max(253, 'is too long for a host name')
  .refine(
    (h) => /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/.test(h) || /^[0-9a-fA-F:.]+$/.test(h),
    'must be a host name or an IP address alone (no "imap://", no ":port", no spaces)',
  );

const whole = (min: number, max: number) =>
  z
    .number({ error: `must be a whole number from ${min} to ${max}` })
    .int(`must be a whole number from ${min} to ${max}`);

const retention = z.discriminatedUnion(
  'mode',
  [
    z.strictObject({ mode: z.literal('keep') }),
    z.strictObject({ mode: z.literal('delete-on-retrieve') }),
    z.strictObject({
      mode: z.literal('delete-after-days'),
      days: whole(1, 3650).min(1, 'must be at least 1 day').max(3650, 'must be at most 3650 days (10 years)'),
    }),
  ],
  {
    error:
      'must be {"mode": "keep"}, {"mode": "delete-on-retrieve"} or {"mode": "delete-after-days", "days": N}',
  },
);

const schema = z
  .strictObject(
    {
      id: z
        .string({ error: 'must be text' })
        .regex(
          /^[a-z0-9][a-z0-9-]{0,62}$/,
          'must be a slug: lower-case letters, digits and dashes, e.g. "work-mail"',
        )
        .optional(),
      protocol: z.enum(['imap', 'pop3'], { error: 'must be "imap" or "pop3"' }),
      host,
      port: whole(1, 65535)
        .min(1, 'must be from 1 to 65535')
        .max(65535, 'must be from 1 to 65535')
        .optional(),
      tls: z.enum(['implicit', 'starttls', 'none'], { error: 'must be "implicit", "starttls" or "none"' }),
      user: z
        .string({ error: required('the login name', 'the login name') })
        .min(1, 'is required: the login name')
        .max(320, 'is too long (at most 320 characters)')
        .regex(noControl, 'must be on one line, without control characters'),
      // The messages about the password never quote it.
      password: z
        .string({ error: required('the password of the account', 'the password of the account') })
        .min(1, 'is required: the password of the account')
        .max(1024, 'is too long (at most 1024 characters)')
        .regex(noControl, 'must be on one line, without control characters'),
      folders: z
        .array(
          z
            .string({ error: 'must be folder names' })
            .trim()
            .min(1, 'must not hold an empty name')
            .max(200, 'must hold names of at most 200 characters')
            .regex(noControl, 'must hold names without control characters'),
          { error: 'must be a list of folder names, e.g. ["INBOX"]' },
        )
        .min(1, 'must name at least one folder, e.g. INBOX')
        .max(50, 'may name at most 50 folders')
        .optional(),
      retention: retention.optional(),
      pollMinutes: whole(1, 1440)
        .min(1, 'must be from 1 to 1440 minutes')
        .max(1440, 'must be from 1 to 1440 minutes')
        .optional(),
    },
    { error: 'must be a JSON object: a source (protocol, host, port, tls, user, password, ...)' },
  )
  .superRefine((s, ctx) => {
    if (s.tls === 'none' && !isLoopback(s.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: `"none" sends the password in clear and is only allowed for 127.0.0.1 or localhost; ${s.host} is not one: use "implicit" or "starttls"`,
      });
    }
    if (s.protocol === 'pop3' && s.folders) {
      ctx.addIssue({ code: 'custom', path: ['folders'], message: 'POP3 has no folders: leave it out' });
    }
  });

export interface FieldIssue {
  field: string;
  message: string;
}

/** Checks a body against NewSourceInput: the input, or one message per problem, naming its field. */
export function parseNewSource(
  raw: unknown,
): { ok: true; input: NewSourceInput } | { ok: false; issues: FieldIssue[] } {
  const result = schema.safeParse(raw);
  if (result.success) return { ok: true, input: result.data };
  const issues: FieldIssue[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      // Only the names of the keys, never their values.
      for (const key of issue.keys)
        issues.push({ field: [...issue.path, key].join('.'), message: 'is not a field of a source' });
      continue;
    }
    const field = issue.path.map(String).join('.') || 'body';
    issues.push({ field: field === 'retention.mode' ? 'retention' : field, message: issue.message });
  }
  // One message per field: the first found (an empty host is "required", not also "not a host name").
  const seen = new Set<string>();
  return { ok: false, issues: issues.filter((i) => !seen.has(i.field) && !!seen.add(i.field)) };
}

/** `field: message; field: message`, the 400's message. */
export function describeIssues(issues: FieldIssue[]): string {
  return issues.map((i) => `${i.field} ${i.message}`).join('; ');
}

const MASK = '[password]';

/** Replaces every occurrence of the password in a text (and its JSON-escaped form). */
export function withoutSecret(text: string, password: string | undefined): string {
  if (!password) return text;
  let out = text.split(password).join(MASK);
  const escaped = JSON.stringify(password).slice(1, -1);
  if (escaped !== password) out = out.split(escaped).join(MASK);
  return out;
}

/** A LocalSetup's answer with the password taken out of every text it carries, whatever the implementation put in. */
export function scrubResult(result: SetupResult, password: string): SetupResult {
  if (result.ok) {
    return {
      ok: true,
      sourceId: withoutSecret(String(result.sourceId), password),
      lines: (Array.isArray(result.lines) ? result.lines : []).map((l) => withoutSecret(String(l), password)),
    };
  }
  return {
    ok: false,
    code: withoutSecret(String(result.code), password),
    message: withoutSecret(String(result.message), password),
    ...(result.field !== undefined ? { field: withoutSecret(String(result.field), password) } : {}),
  };
}
