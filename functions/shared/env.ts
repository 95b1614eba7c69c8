import { z } from 'zod';
import { ConfigError } from '../core/errors';

/**
 * The Lambda functions' environment, one zod schema (the contract with the service stack, issue #14). Each function
 * requires its part; an error names every missing or bad variable and the function that needs it.
 */
const name = z.string().trim().min(1, 'is empty');

const envSchema = z.object({
  TABLE_NAME: name,
  BUCKET_NAME: name,
  QUEUE_URL: z.url({ error: 'must be the queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)' }),
  /** Prepended to the source id: `/tributary/sources/` gives `/tributary/sources/work-mail`. */
  SECRETS_PREFIX: z.string().startsWith('/', 'must start with "/" (an SSM parameter path)'),
  POWERTOOLS_SERVICE_NAME: name,
  POWERTOOLS_METRICS_NAMESPACE: name,
});

export type FunctionName = 'dispatch' | 'sync' | 'api';
type Variable = keyof z.infer<typeof envSchema>;

const common = ['TABLE_NAME', 'POWERTOOLS_SERVICE_NAME', 'POWERTOOLS_METRICS_NAMESPACE'] as const;
const needs = {
  dispatch: [...common, 'QUEUE_URL'],
  sync: [...common, 'BUCKET_NAME', 'SECRETS_PREFIX', 'QUEUE_URL'],
  api: [...common, 'BUCKET_NAME'],
} as const satisfies Record<FunctionName, readonly Variable[]>;

export type FunctionEnv<F extends FunctionName> = Pick<z.infer<typeof envSchema>, (typeof needs)[F][number]>;

/** Parses the environment of function `fn`; throws ConfigError naming each missing or bad variable. */
export function parseEnv<F extends FunctionName>(
  fn: F,
  env: NodeJS.ProcessEnv = process.env,
): FunctionEnv<F> {
  const mask = Object.fromEntries(needs[fn].map((v) => [v, true])) as Partial<Record<Variable, true>>;
  const result = envSchema.pick(mask).safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const variable = String(issue.path[0]);
    return env[variable] === undefined
      ? `${variable} is not set (the ${fn} function needs it)`
      : `${variable} ${issue.message}`;
  });
  throw new ConfigError(`the ${fn} function's environment is not valid:\n  - ${lines.join('\n  - ')}`);
}
