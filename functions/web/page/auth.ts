/**
 * Signing in, per `/config.json` (contract.ts, PageConfig).
 *
 * - `cookie` (`tributary serve`): the HttpOnly session cookie set by the start URL; the page only sends
 *   same-origin requests with credentials and cannot sign in by itself.
 * - `cognito` (AWS): authorization code + PKCE (S256) against the user pool's hosted domain. The verifier and
 *   state live in sessionStorage for the round trip; tokens live in memory and sessionStorage (gone with the tab,
 *   never in localStorage); API calls carry `Authorization: Bearer <access token>`.
 */
import type { PageConfig } from '../contract';

type Cognito = Extract<PageConfig, { auth: 'cognito' }>;

const PKCE_KEY = 'tributary.pkce';
const TOKENS_KEY = 'tributary.tokens';

interface Tokens {
  accessToken: string;
  refreshToken: string | null;
  /** Epoch ms. */
  expiresAt: number;
}

interface PkceState {
  verifier: string;
  state: string;
  returnTo: string;
}

export interface Auth {
  readonly kind: PageConfig['auth'];
  /** Headers for an API call; may refresh the access token first. */
  headers(): Promise<Record<string, string>>;
  /** The API said 401: try to recover. Returns true when the call should be retried. */
  unauthorized(): Promise<boolean>;
  /** Cognito only: ends the session. */
  signOut(): void;
}

export class NotSignedIn extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotSignedIn';
  }
}

function base64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

export async function pkceChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

class CookieAuth implements Auth {
  readonly kind = 'cookie' as const;
  async headers(): Promise<Record<string, string>> {
    return {};
  }
  async unauthorized(): Promise<boolean> {
    throw new NotSignedIn(
      'Not signed in. Open the start URL that `tributary serve` printed in its terminal (it carries the token), ' +
        'or restart it to get a new one.',
    );
  }
  signOut(): void {
    /* the session ends when `tributary serve` stops */
  }
}

class CognitoAuth implements Auth {
  readonly kind = 'cognito' as const;
  private tokens: Tokens | null;
  private readonly domain: string;
  private leaving: Promise<never> | undefined;

  constructor(private readonly config: Cognito) {
    const url = new URL(config.domain);
    if (url.protocol !== 'https:') throw new Error('the Cognito domain in /config.json must be https');
    this.domain = url.origin;
    this.tokens = readTokens();
  }

  /** Finishes a sign-in when the URL carries `?code=&state=`; call once at start-up. */
  async completeRedirect(): Promise<void> {
    const params = new URLSearchParams(location.search);
    const code = params.get('code');
    const state = params.get('state');
    const error = params.get('error');
    if (!code && !error) return;
    const saved = readJson<PkceState>(PKCE_KEY);
    sessionStorage.removeItem(PKCE_KEY);
    // Drop ?code= from the address bar and history whatever happens next.
    history.replaceState(null, '', location.pathname + (saved?.returnTo ?? ''));
    if (error) throw new NotSignedIn(`Sign-in failed: ${params.get('error_description') ?? error}`);
    if (!saved || !state || state !== saved.state)
      throw new NotSignedIn('Sign-in failed: the answer does not match this tab (state). Sign in again.');
    await this.token({
      grant_type: 'authorization_code',
      code: code ?? '',
      redirect_uri: this.config.redirectUri,
      code_verifier: saved.verifier,
    });
  }

  async headers(): Promise<Record<string, string>> {
    if (!this.tokens) await this.signIn();
    if (this.tokens && this.tokens.expiresAt - Date.now() < 60_000 && this.tokens.refreshToken) {
      await this.refresh().catch(() => undefined);
    }
    return this.tokens ? { Authorization: `Bearer ${this.tokens.accessToken}` } : {};
  }

  async unauthorized(): Promise<boolean> {
    if (
      this.tokens?.refreshToken &&
      (await this.refresh().then(
        () => true,
        () => false,
      ))
    )
      return true;
    this.tokens = null;
    sessionStorage.removeItem(TOKENS_KEY);
    await this.signIn();
    return false;
  }

  signOut(): void {
    this.tokens = null;
    sessionStorage.removeItem(TOKENS_KEY);
    const url = new URL('/logout', this.domain);
    url.searchParams.set('client_id', this.config.clientId);
    url.searchParams.set('logout_uri', this.config.redirectUri);
    location.assign(url.toString());
  }

  /** Leaves for the hosted sign-in page; never resolves (the page unloads). Concurrent callers share one trip. */
  private signIn(): Promise<never> {
    this.leaving ??= this.leave();
    return this.leaving;
  }

  private async leave(): Promise<never> {
    const verifier = randomString(48);
    const pkce: PkceState = { verifier, state: randomString(16), returnTo: location.hash };
    sessionStorage.setItem(PKCE_KEY, JSON.stringify(pkce));
    const url = new URL('/oauth2/authorize', this.domain);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', this.config.clientId);
    url.searchParams.set('redirect_uri', this.config.redirectUri);
    url.searchParams.set('scope', this.config.scopes.join(' '));
    url.searchParams.set('state', pkce.state);
    url.searchParams.set('code_challenge', await pkceChallenge(verifier));
    url.searchParams.set('code_challenge_method', 'S256');
    location.assign(url.toString());
    return new Promise<never>(() => undefined);
  }

  private async refresh(): Promise<void> {
    const refreshToken = this.tokens?.refreshToken;
    if (!refreshToken) throw new Error('no refresh token');
    await this.token({ grant_type: 'refresh_token', refresh_token: refreshToken });
  }

  private async token(form: Record<string, string>): Promise<void> {
    const body = new URLSearchParams({ client_id: this.config.clientId, ...form });
    const res = await fetch(new URL('/oauth2/token', this.domain), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body,
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    if (!res.ok)
      throw new NotSignedIn(`Sign-in failed: the token endpoint answered ${res.status}. Sign in again.`);
    const json = (await res.json()) as {
      access_token?: string;
      refresh_token?: string;
      expires_in?: number;
    };
    if (!json.access_token) throw new NotSignedIn('Sign-in failed: no access token in the answer.');
    this.tokens = {
      accessToken: json.access_token,
      // A refresh grant does not return a new refresh token: keep the one we have.
      refreshToken: json.refresh_token ?? this.tokens?.refreshToken ?? null,
      expiresAt: Date.now() + (json.expires_in ?? 3600) * 1000,
    };
    sessionStorage.setItem(TOKENS_KEY, JSON.stringify(this.tokens));
  }
}

function readJson<T>(key: string): T | null {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

function readTokens(): Tokens | null {
  const t = readJson<Tokens>(TOKENS_KEY);
  return t && typeof t.accessToken === 'string' && t.expiresAt > Date.now() ? t : null;
}

export async function loadConfig(): Promise<PageConfig> {
  const res = await fetch('/config.json', { credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw new Error(`/config.json answered ${res.status}`);
  return (await res.json()) as PageConfig;
}

/** The Auth for this config; for Cognito, finishes a pending sign-in redirect first. */
export async function createAuth(config: PageConfig): Promise<Auth> {
  if (config.auth === 'cognito') {
    const auth = new CognitoAuth(config);
    await auth.completeRedirect();
    return auth;
  }
  return new CookieAuth();
}
