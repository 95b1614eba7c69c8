/** The API client: the contract's routes (contract.ts), with the page's auth and errors in words. */
import type {
  ApiError,
  DownloadLink,
  MessagePage,
  MessageView,
  NewSourceInput,
  SetupResult,
  SourceStatus,
} from '../contract';
import type { Auth } from './auth';

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** A 400 on a JSON body: every field at fault. */
    readonly issues: Array<{ field: string; message: string }> = [],
  ) {
    super(message);
    this.name = 'ApiFailure';
  }
}

export interface ListQuery {
  source?: string;
  unread?: boolean;
  q?: string;
  cursor?: string | null;
  limit?: number;
}

const id = (s: string): string => encodeURIComponent(s);

export class Api {
  constructor(private readonly auth: Auth) {}

  async request<T>(method: string, path: string, payload?: unknown, retried = false): Promise<T> {
    const res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: {
        Accept: 'application/json',
        ...(payload !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...(await this.auth.headers()),
      },
      ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
      cache: 'no-store',
      redirect: 'error',
    });
    if (res.status === 401 && !retried) {
      if (await this.auth.unauthorized()) return this.request<T>(method, path, payload, true);
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!res.ok) {
      const err = (body as Partial<ApiError> | null)?.error;
      throw new ApiFailure(
        res.status,
        err?.code ?? `HTTP_${res.status}`,
        err?.message ?? `The server answered ${res.status} ${res.statusText}. Try again.`,
        err?.issues ?? (err?.field ? [{ field: err.field, message: err.message }] : []),
      );
    }
    return body as T;
  }

  messages(query: ListQuery): Promise<MessagePage> {
    const p = new URLSearchParams();
    if (query.source) p.set('source', query.source);
    if (query.unread) p.set('unread', '1');
    if (query.q) p.set('q', query.q);
    if (query.cursor) p.set('cursor', query.cursor);
    if (query.limit) p.set('limit', String(query.limit));
    const qs = p.toString();
    return this.request('GET', `/api/messages${qs ? `?${qs}` : ''}`);
  }

  message(messageId: string): Promise<MessageView> {
    return this.request('GET', `/api/messages/${id(messageId)}`);
  }

  setUnread(messageId: string, unread: boolean): Promise<{ unread: boolean }> {
    return this.request('POST', `/api/messages/${id(messageId)}/${unread ? 'unread' : 'read'}`);
  }

  remove(messageId: string): Promise<{ deleted: true }> {
    return this.request('DELETE', `/api/messages/${id(messageId)}`);
  }

  raw(messageId: string): Promise<DownloadLink> {
    return this.request('GET', `/api/messages/${id(messageId)}/raw`);
  }

  attachment(messageId: string, n: number): Promise<DownloadLink> {
    return this.request('GET', `/api/messages/${id(messageId)}/attachments/${n}`);
  }

  async sources(): Promise<SourceStatus[]> {
    return (await this.request<{ sources: SourceStatus[] }>('GET', '/api/sources')).sources;
  }

  syncNow(sourceId: string): Promise<{ queued: true }> {
    return this.request('POST', `/api/sources/${id(sourceId)}/sync`);
  }

  /** One machine: logs in to a source not yet added (`tributary sources test`'s check); saves nothing. */
  testSource(input: NewSourceInput): Promise<SetupResult> {
    return this.request('POST', '/api/setup/test', input);
  }

  /** One machine: checks and adds a source. */
  addSource(input: NewSourceInput): Promise<SetupResult> {
    return this.request('POST', '/api/sources', input);
  }

  /** An inline image as a data: URL (raster types only), or null. */
  async inlineImage(messageId: string, cid: string, maxBytes: number): Promise<string | null> {
    const res = await fetch(`/api/messages/${id(messageId)}/inline/${id(cid)}`, {
      credentials: 'same-origin',
      headers: await this.auth.headers(),
      cache: 'no-store',
      redirect: 'error',
    });
    if (!res.ok) return null;
    const type = (res.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    if (!/^image\/(png|gif|jpeg|webp)$/.test(type)) return null;
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length > maxBytes) return null;
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return `data:${type};base64,${btoa(s)}`;
  }
}

/** Follows a download link: the server answers `Content-Disposition: attachment`, so the page stays. */
export function followDownload(link: DownloadLink): void {
  const url = new URL(link.url, location.href);
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new Error('refusing a download link that is not http(s)');
  location.assign(url.toString());
}
