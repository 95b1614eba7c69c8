import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';

/**
 * Who may use the API (issue #15). The app takes one `Authenticator`: in AWS the HTTP API's JWT authorizer has
 * verified the token and the middleware re-checks the claims it passes; on one machine a random token printed in
 * the start URL becomes an HttpOnly, SameSite=Strict cookie. Both set the `user` variable (for the audit of a
 * removal). State-changing requests also pass `refuseCrossSite`.
 */

export interface WebVariables {
  /** Who made the request: the token's subject (AWS), or `local` (one machine). */
  user: string;
}

export interface Authenticator {
  /** Runs before every `/api/*` route: answers 401 itself or sets `user`. */
  api: MiddlewareHandler<{ Variables: WebVariables }>;
  /**
   * Runs on `GET /` before the page is served: the local start URL (`/?token=...`) sets the session cookie here and
   * redirects. Absent in AWS.
   */
  start?: MiddlewareHandler;
}

export function unauthenticated(c: Context, message: string): Response {
  return c.json({ error: { code: 'UNAUTHENTICATED', message } }, 401);
}

function sameSecret(a: string, b: string): boolean {
  // Hash both to a fixed length first: timingSafeEqual needs equal lengths, and the length must not leak either.
  const ha = createHmac('sha256', 'compare').update(a).digest();
  const hb = createHmac('sha256', 'compare').update(b).digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

export const SESSION_COOKIE = 'tributary_session';

/**
 * One machine: the start URL's token, once presented, becomes the session cookie (HttpOnly, so the page's script
 * cannot read it; SameSite=Strict, so no other site's request carries it; Path=/). The cookie holds an HMAC of the
 * token, not the token. Every `/api` request needs it, compared in constant time.
 */
export function tokenAuthenticator(token: string = randomBytes(24).toString('base64url')): Authenticator & {
  token: string;
} {
  const session = createHmac('sha256', token).update('tributary session').digest('base64url');
  return {
    token,
    api: async (c, next) => {
      const cookie = getCookie(c, SESSION_COOKIE);
      if (cookie === undefined || !sameSecret(cookie, session)) {
        return unauthenticated(c, 'not signed in: open the start URL that "tributary serve" printed');
      }
      c.set('user', 'local');
      await next();
    },
    start: async (c, next) => {
      const given = c.req.query('token');
      if (given === undefined) return next();
      if (!sameSecret(given, token)) {
        return unauthenticated(
          c,
          'this start URL is not the current one: use the URL "tributary serve" printed',
        );
      }
      setCookie(c, SESSION_COOKIE, session, { httpOnly: true, sameSite: 'Strict', path: '/' });
      c.header('Cache-Control', 'no-store');
      c.header('Referrer-Policy', 'no-referrer');
      return c.redirect('/', 303);
    },
  };
}

/** What `hono/aws-lambda` passes as the app's bindings; absent under Node. */
export interface LambdaBindings {
  requestContext?: { authorizer?: { jwt?: { claims?: Record<string, unknown> } } };
}

export interface ClaimsCheck {
  /** The user pool's issuer: `https://cognito-idp.<region>.amazonaws.com/<pool id>`. */
  issuer: string;
  /** The page's app client id: an access token's `client_id`, an id token's `aud`. */
  clientId: string;
  now?: () => number;
}

/** A claim as API Gateway passes it: a string, a number, or for a list `[a b]`. */
function claimText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

/**
 * AWS: the HTTP API's JWT authorizer verified the signature; this checks again that the claims are for this stack
 * (issuer = our pool, client = our page's app client) and unexpired, so a token for another stack or an expired one
 * is refused even if a route were ever left without the authorizer. No claims at all: 401 as well.
 */
export function claimsAuthenticator(check: ClaimsCheck): Authenticator {
  const now = check.now ?? Date.now;
  return {
    api: async (c, next) => {
      const env = c.env as LambdaBindings | undefined;
      const claims = env?.requestContext?.authorizer?.jwt?.claims;
      if (!claims || typeof claims !== 'object' || Object.keys(claims).length === 0) {
        return unauthenticated(c, 'this API needs a signed-in user (a bearer token)');
      }
      const iss = claimText(claims.iss);
      const client = claimText(claims.client_id) ?? claimText(claims.aud);
      const exp = Number(claimText(claims.exp));
      const sub = claimText(claims.sub);
      if (iss !== check.issuer || client !== check.clientId) {
        return unauthenticated(c, 'the token was not issued for this Tributary: sign in again');
      }
      if (!Number.isFinite(exp) || exp * 1000 <= now()) {
        return unauthenticated(c, 'the token has expired: sign in again');
      }
      if (!sub) return unauthenticated(c, 'the token names no user');
      c.set('user', claimText(claims.username) ?? claimText(claims['cognito:username']) ?? sub);
      await next();
    },
  };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * State-changing requests must come from the app's own page: a browser marks a request from another site with
 * `Sec-Fetch-Site: cross-site` (or `same-site` for a sibling subdomain) and names the page's origin in `Origin`.
 * Either one pointing elsewhere is 403. A request with neither header is not from a browser page (curl, the CLI),
 * which carries no ambient credentials anyway.
 */
export const refuseCrossSite: MiddlewareHandler = async (c, next) => {
  if (SAFE_METHODS.has(c.req.method)) return next();
  const site = c.req.header('sec-fetch-site');
  const origin = c.req.header('origin');
  const own = new URL(c.req.url).origin;
  if (site === 'cross-site' || site === 'same-site' || (origin !== undefined && origin !== own)) {
    return c.json(
      {
        error: { code: 'CROSS_SITE', message: 'refused: this request did not come from the Tributary page' },
      },
      403,
    );
  }
  await next();
};

/**
 * One machine: only requests addressed to the loopback names this server listens on (a page on another name that
 * resolves to 127.0.0.1 — DNS rebinding — is refused, whatever it sends).
 */
export function onlyHosts(hosts: string[]): MiddlewareHandler {
  const allowed = new Set(hosts.map((h) => h.toLowerCase()));
  return async (c, next) => {
    const host = (c.req.header('host') ?? '').toLowerCase();
    if (!allowed.has(host)) {
      return c.json({ error: { code: 'WRONG_HOST', message: `refused: not served as ${host}` } }, 403);
    }
    await next();
  };
}
