import { redact } from '../../../functions/shared/observability';
import { parseEnv } from '../../../functions/shared/env';
import {
  buildHandlers,
  handlerTable,
  HandlerContainer,
  type HandlerName,
} from '../../support/handler-lambda';

/**
 * The functions' start-up as Lambda runs it: a bundle whose environment lacks a variable fails its init with an error
 * that names the variable; the log redaction masks secrets wherever they are nested.
 */
let built: Awaited<ReturnType<typeof buildHandlers>>;
let env: Record<string, string>;

beforeAll(async () => {
  built = await buildHandlers();
  ({ env } = await handlerTable());
}, 60_000);

afterAll(() => built?.remove());

describe('handler environment', () => {
  it.each<[HandlerName, string]>([
    ['dispatch', 'QUEUE_URL'],
    ['dispatch', 'TABLE_NAME'],
    ['sync', 'SECRETS_PREFIX'],
    ['sync', 'BUCKET_NAME'],
    ['sync', 'QUEUE_URL'],
    ['api', 'BUCKET_NAME'],
    ['api', 'POWERTOOLS_METRICS_NAMESPACE'],
  ])('the %s function does not start without %s, and says so', async (name, variable) => {
    const without = { ...env, [variable]: '' };
    delete without[variable];
    // The child inherits the test's environment: make sure the variable is not there either.
    const saved = process.env[variable];
    delete process.env[variable];
    try {
      await expect(HandlerContainer.start(built, name, without)).rejects.toThrow(
        new RegExp(`${variable} is not set \\(the ${name} function needs it\\)`),
      );
    } finally {
      if (saved !== undefined) process.env[variable] = saved;
    }
  });

  it('starts each function with the contract environment', async () => {
    for (const name of ['dispatch', 'sync', 'api'] as const) {
      const c = await HandlerContainer.start(built, name, env);
      await c.stop();
    }
  });

  it('refuses a malformed value, naming it', () => {
    expect(() => parseEnv('sync', { ...env, SECRETS_PREFIX: 'tributary/' })).toThrow(
      /SECRETS_PREFIX must start with "\/"/,
    );
    expect(() => parseEnv('dispatch', { ...env, QUEUE_URL: 'tributary-sync' })).toThrow(
      /QUEUE_URL must be the queue URL/,
    );
    expect(parseEnv('api', env)).toEqual({
      TABLE_NAME: env.TABLE_NAME,
      BUCKET_NAME: env.BUCKET_NAME,
      POWERTOOLS_SERVICE_NAME: 'tributary',
      POWERTOOLS_METRICS_NAMESPACE: 'Tributary',
    });
  });
});

describe('redact', () => {
  it('masks secret-named fields at any depth and leaves the rest', () => {
    const input = {
      sourceId: 'work',
      password: 'hunter2',
      nested: { auth: { pass: 'x', user: 'ann' }, list: [{ clientSecret: 's' }, { token: 't' }] },
      Authorization: 'Bearer abc',
      count: 3,
    };
    expect(redact(input)).toEqual({
      sourceId: 'work',
      password: '[redacted]',
      nested: {
        auth: { pass: '[redacted]', user: 'ann' },
        list: [{ clientSecret: '[redacted]' }, { token: '[redacted]' }],
      },
      Authorization: '[redacted]',
      count: 3,
    });
    expect(JSON.stringify(redact(input))).not.toMatch(/hunter2|Bearer/);
  });
});
