import fs from 'node:fs';
import path from 'node:path';
import type { Context } from 'aws-lambda';
import type { Hono } from 'hono';
import { handle } from 'hono/aws-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import { DynamoInbox } from '../adapters/dynamodb/inbox';
import { DynamoMessageIndex } from '../adapters/dynamodb/message-index';
import { DynamoSourceRegistry } from '../adapters/dynamodb/source-registry';
import { S3RawMailStore } from '../adapters/s3/raw-mail-store';
import { ConfigError } from '../core/errors';
import { makeAwsClients } from '../shared/aws-clients';
import { parseEnv } from '../shared/env';
import { makeObservability, type Observability } from '../shared/observability';
import { makeWebApp, type WebAppDeps } from '../web/app';
import { claimsAuthenticator } from '../web/auth';
import { S3DownloadLinks } from '../web/downloads';
import { loadPageAssets, pageHeaders, PAGE_ASSETS_DIR } from '../web/page-assets';
import { SqsSyncQueue } from './queue';

/**
 * The API function (issues #14, #15): the web app of functions/web/app.ts, the same that `tributary serve` runs, in
 * Lambda (API Gateway HTTP API, payload 2.0, through `hono/aws-lambda`). API Gateway's JWT authorizer verifies the
 * token on every `/api` route; the app checks the claims again (issuer, client, expiry) and refuses a request that
 * reaches it without them, 401. Downloads are presigned S3 URLs; "sync now" is a message on the sync queue.
 */

export type ApiDeps = Omit<WebAppDeps, 'logger'> & { obs: Observability };

export function makeApp(deps: ApiDeps): Hono {
  const { obs, ...rest } = deps;
  return makeWebApp({ ...rest, logger: obs.logger }) as unknown as Hono;
}

type LambdaHandler = ReturnType<typeof handle>;

export function makeHandler(deps: ApiDeps): LambdaHandler {
  const app = makeApp(deps);
  const inner = handle(app);
  return async (event, context) => {
    // hono's LambdaContext is the same object Lambda passes (aws-lambda's Context).
    if (context) deps.obs.invocation(context as unknown as Context);
    try {
      return await inner(event, context);
    } finally {
      deps.obs.flush();
    }
  };
}

/** The API's own variables besides the common ones of functions/shared/env.ts, set by infra/service-stack.ts. */
const webEnvSchema = z.object({
  /** The user pool's issuer, `https://cognito-idp.<region>.amazonaws.com/<pool id>`: a token's `iss`. */
  USER_POOL_ISSUER: z.url(),
  /** The page's app client: an access token's `client_id`. */
  USER_POOL_CLIENT_ID: z.string().min(1),
  /** Cognito managed login, `https://<prefix>.auth.<region>.amazoncognito.com`. */
  COGNITO_DOMAIN: z.url(),
  /** The page's own URL (the HTTP API's), where Cognito sends the browser back. */
  REDIRECT_URI: z.url(),
  QUEUE_URL: z.url(),
});

export function parseWebEnv(env: NodeJS.ProcessEnv = process.env): z.infer<typeof webEnvSchema> {
  const result = webEnvSchema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const variable = String(issue.path[0]);
    return env[variable] === undefined
      ? `${variable} is not set (the api function needs it)`
      : `${variable} ${issue.message}`;
  });
  throw new ConfigError(`the api function's environment is not valid:\n  - ${lines.join('\n  - ')}`);
}

/** The page's assets, built into the bundle's folder at deploy time; none (the API alone) when absent. */
async function pageOf(domain: string): Promise<WebAppDeps['page']> {
  const dir = path.join(__dirname, PAGE_ASSETS_DIR);
  if (!fs.existsSync(dir)) return undefined;
  const origin = new URL(domain).origin;
  return { assets: await loadPageAssets(dir), headers: pageHeaders({ connectOrigins: [origin] }) };
}

/** The composition root: adapters built once per container from the environment (a bad one fails the init). */
function fromEnv(): ApiDeps & { cognitoDomain: string } {
  const env = parseEnv('api');
  const web = parseWebEnv();
  const clients = makeAwsClients();
  const index = new DynamoMessageIndex(clients.documents, env.TABLE_NAME);
  const registry = new DynamoSourceRegistry(clients.documents, env.TABLE_NAME);
  const store = new S3RawMailStore(clients.s3, env.BUCKET_NAME);
  const queue = new SqsSyncQueue(new SQSClient({}), web.QUEUE_URL);
  return {
    auth: claimsAuthenticator({ issuer: web.USER_POOL_ISSUER, clientId: web.USER_POOL_CLIENT_ID }),
    inbox: new DynamoInbox(clients.documents, env.TABLE_NAME),
    store,
    downloads: new S3DownloadLinks(clients.s3, env.BUCKET_NAME, store),
    sources: registry,
    status: index,
    syncNow: async (sourceId) => {
      if (!(await registry.get(sourceId))) return false;
      await queue.send({ sourceId, reason: 'now', at: Date.now() });
      return true;
    },
    pageConfig: {
      auth: 'cognito',
      domain: web.COGNITO_DOMAIN,
      clientId: web.USER_POOL_CLIENT_ID,
      redirectUri: web.REDIRECT_URI,
      scopes: ['openid', 'email'],
    },
    obs: makeObservability(),
    cognitoDomain: web.COGNITO_DOMAIN,
  };
}

const { cognitoDomain, ...deps } = fromEnv();
const built = pageOf(cognitoDomain).then((page) => makeHandler({ ...deps, ...(page ? { page } : {}) }));

export const handler: LambdaHandler = async (event, context) => (await built)(event, context);
