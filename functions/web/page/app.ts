/**
 * The Tributary page (issue #15): the merged inbox, a message, the sources. Plain DOM, no framework; every text
 * is set as text (dom.ts), mail HTML only ever reaches a sandboxed frame (render-mail.ts). Views are routed by
 * the URL hash: `#/?source=&unread=1&q=` (the list), `#/m/<id>` (a message), `#/sources`, `#/setup` (add a
 * source, one machine only; the first run lands there).
 */
import type { MessageSummary, MessageView, SourceStatus, SyncProgressView } from '../contract';
import { Api, ApiFailure, followDownload } from './api';
import { type Auth, NotSignedIn, createAuth, loadConfig } from './auth';
import { append, byId, clear, formatBytes, h, hueOf, longDate, shortDate } from './dom';
import { cidReferences, normalizeCid, renderHtml, renderText } from './render-mail';
import { renderNoSetup, renderSetup } from './setup';

const PAGE_SIZE = 50;
/** Pages asked for in a row when a search comes back short (each examines a bounded number of messages). */
const MAX_CONTINUATIONS = 40;
const MAX_INLINE_IMAGES = 30;
const MAX_INLINE_BYTES = 10 * 1024 * 1024;
/** How often the sources view asks again while a sync runs. */
const PROGRESS_POLL_MS = 2000;

interface ListFilters {
  source: string;
  unread: boolean;
  q: string;
}

type Route =
  | { view: 'list'; filters: ListFilters }
  | { view: 'message'; id: string }
  | { view: 'sources' }
  | { view: 'setup' };
type View = Route['view'] | 'error';

interface ListState {
  key: string;
  filters: ListFilters;
  messages: MessageSummary[];
  cursor: string | null;
  done: boolean;
  loading: Promise<void> | null;
  selected: number;
  generation: number;
  continuations: number;
}

let api: Api;
let auth: Auth;
const list: ListState = {
  key: '\u0000',
  filters: { source: '', unread: false, q: '' },
  messages: [],
  cursor: null,
  done: false,
  loading: null,
  selected: 0,
  generation: 0,
  continuations: 0,
};
let current: MessageView | null = null;
let route: Route = { view: 'list', filters: list.filters };
/** Messages whose reader asked for remote content (this tab only). */
const remoteAllowed = new Set<string>();
const knownSources: string[] = [];
/** One machine with a LocalSetup (`/config.json` says `setup: true`): sources can be added from the page. */
let canSetup = false;
/** How many sources the server listed last (null: not asked yet). */
let sourceCount: number | null = null;

// ---------------------------------------------------------------------------------------------------- routing

function parseRoute(hash: string): Route {
  const h = hash.replace(/^#/, '');
  if (h.startsWith('/m/')) return { view: 'message', id: decodeURIComponent(h.slice(3)) };
  if (h === '/sources') return { view: 'sources' };
  if (h === '/setup') return { view: 'setup' };
  const qs = new URLSearchParams(h.includes('?') ? h.slice(h.indexOf('?') + 1) : '');
  return {
    view: 'list',
    filters: { source: qs.get('source') ?? '', unread: qs.get('unread') === '1', q: qs.get('q') ?? '' },
  };
}

function listHash(f: ListFilters): string {
  const qs = new URLSearchParams();
  if (f.source) qs.set('source', f.source);
  if (f.unread) qs.set('unread', '1');
  if (f.q) qs.set('q', f.q);
  const s = qs.toString();
  return `#/${s ? `?${s}` : ''}`;
}

function messageHash(id: string): string {
  return `#/m/${encodeURIComponent(id)}`;
}

function go(hash: string): void {
  if (location.hash === hash) void onRoute();
  else location.hash = hash;
}

function show(view: View): void {
  for (const v of ['list', 'message', 'sources', 'setup', 'error']) byId(`view-${v}`).hidden = v !== view;
  document.body.dataset.view = view;
  byId('tab-inbox').classList.toggle('active', view === 'list' || view === 'message');
  byId('tab-sources').classList.toggle('active', view === 'sources' || view === 'setup');
  if (view !== 'sources') stopSourcesPolling();
}

async function onRoute(): Promise<void> {
  route = parseRoute(location.hash);
  try {
    if (route.view === 'list') {
      show('list');
      syncFilterControls(route.filters);
      await ensureList(route.filters);
      document.title = 'Tributary';
    } else if (route.view === 'message') {
      show('message');
      await openMessage(route.id);
    } else if (route.view === 'sources') {
      show('sources');
      document.title = 'Sources · Tributary';
      await renderSources();
    } else {
      show('setup');
      document.title = 'Add a source · Tributary';
      showSetup();
    }
  } catch (err) {
    fail(err);
  }
}

// ---------------------------------------------------------------------------------------------------- status

let statusTimer: ReturnType<typeof setTimeout> | undefined;

function status(text: string, kind: 'info' | 'error' = 'info'): void {
  const el = byId('status');
  el.textContent = text;
  el.dataset.kind = kind;
  clearTimeout(statusTimer);
  if (text) statusTimer = setTimeout(() => (el.textContent = ''), kind === 'error' ? 10000 : 4000);
}

function fail(err: unknown): void {
  if (err instanceof NotSignedIn) {
    const view = byId('view-error');
    clear(view);
    append(view, h('h1', { text: 'Not signed in' }), h('p', { text: err.message }));
    show('error');
    return;
  }
  const message =
    err instanceof ApiFailure
      ? `${err.message} (${err.code})`
      : err instanceof Error
        ? err.message
        : String(err);
  status(message, 'error');
}

// ---------------------------------------------------------------------------------------------------- list

function filtersKey(f: ListFilters): string {
  return JSON.stringify([f.source, f.unread, f.q]);
}

function syncFilterControls(f: ListFilters): void {
  const search = byId<HTMLInputElement>('search');
  if (document.activeElement !== search) search.value = f.q;
  const select = byId<HTMLSelectElement>('filter-source');
  if (f.source && !knownSources.includes(f.source)) addSourceOption(f.source);
  select.value = f.source;
  byId<HTMLInputElement>('filter-unread').checked = f.unread;
}

function currentFilters(): ListFilters {
  return {
    source: byId<HTMLSelectElement>('filter-source').value,
    unread: byId<HTMLInputElement>('filter-unread').checked,
    q: byId<HTMLInputElement>('search').value.trim(),
  };
}

async function ensureList(filters: ListFilters): Promise<void> {
  const key = filtersKey(filters);
  if (key === list.key) {
    renderSelection();
    return;
  }
  list.key = key;
  list.filters = filters;
  list.messages = [];
  list.cursor = null;
  list.done = false;
  list.selected = 0;
  list.loading = null;
  list.continuations = 0;
  list.generation++;
  clear(byId('list'));
  byId('list-empty').hidden = true;
  await loadMore();
}

/**
 * Loads the next page. A filtered page (a search) may come back short or empty with a cursor: the server stopped
 * after a bounded number of messages examined. Then the next page is asked for at once, until a screenful is
 * there or the end is reached (at most MAX_CONTINUATIONS requests per filter change; "Load more" goes on).
 */
function loadMore(): Promise<void> {
  if (list.loading) return list.loading;
  if (list.done) return Promise.resolve();
  const generation = list.generation;
  const el = byId('list');
  el.setAttribute('aria-busy', 'true');
  let again = false;
  list.loading = api
    .messages({ ...list.filters, cursor: list.cursor, limit: PAGE_SIZE })
    .then((page) => {
      if (generation !== list.generation) return;
      const start = list.messages.length;
      list.messages.push(...page.messages);
      list.cursor = page.cursor;
      list.done = page.cursor === null;
      const frag = document.createDocumentFragment();
      page.messages.forEach((m, i) => frag.appendChild(row(m, start + i)));
      el.appendChild(frag);
      again = !list.done && list.messages.length < PAGE_SIZE && ++list.continuations <= MAX_CONTINUATIONS;
      const empty = byId('list-empty');
      empty.hidden = list.messages.length > 0;
      empty.textContent = again ? 'Searching older mail…' : 'No messages.';
      byId('load-more').hidden = list.done;
      renderSelection(false);
    })
    .finally(() => {
      if (generation === list.generation) {
        list.loading = null;
        el.removeAttribute('aria-busy');
      }
    });
  return list.loading.then(() => (again && generation === list.generation ? loadMore() : undefined));
}

function senderOf(m: { from: MessageSummary['from'] }): string {
  return m.from?.name || m.from?.address || '(no sender)';
}

function badge(source: string): HTMLElement {
  const b = h('span', { class: 'badge', text: source, title: `Source: ${source}` });
  b.style.setProperty('--hue', String(hueOf(source)));
  return b;
}

const SVG = 'http://www.w3.org/2000/svg';

function paperclip(): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-label', 'attachment');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', 'M21 11l-8.5 8.5a5 5 0 0 1-7-7L14 4a3.5 3.5 0 0 1 5 5l-8.5 8.5a2 2 0 0 1-3-3L15 7');
  svg.appendChild(path);
  return svg;
}

function row(m: MessageSummary, index: number): HTMLLIElement {
  const li = h(
    'li',
    {
      class: `row${m.unread ? ' unread' : ''}`,
      attrs: { role: 'option', 'aria-selected': 'false', id: `row-${index}` },
      dataset: { id: m.id, index: String(index) },
      onClick: () => {
        list.selected = index;
        go(messageHash(m.id));
      },
    },
    h('span', {
      class: 'dot',
      title: m.unread ? 'Unread' : '',
      attrs: { 'aria-label': m.unread ? 'unread' : 'read' },
    }),
    h('span', { class: 'from', text: senderOf(m), title: m.from?.address ?? '' }),
    h(
      'span',
      { class: 'line' },
      h('span', { class: 'subject', text: m.subject || '(no subject)' }),
      h('span', { class: 'snippet', text: m.snippet ? ` — ${m.snippet}` : '' }),
    ),
    h('span', { class: 'badges' }, ...m.sources.map(badge)),
    m.hasAttachments ? h('span', { class: 'clip', title: 'Has attachments' }, paperclip()) : null,
    h('time', {
      class: 'date',
      text: shortDate(m.date),
      attrs: { datetime: m.date },
      title: longDate(m.date),
    }),
  );
  return li;
}

function renderSelection(scroll = true): void {
  const el = byId('list');
  if (list.selected >= list.messages.length) list.selected = Math.max(0, list.messages.length - 1);
  for (const node of el.querySelectorAll('li.selected')) {
    node.classList.remove('selected');
    node.setAttribute('aria-selected', 'false');
  }
  const li = el.children[list.selected];
  if (li) {
    li.classList.add('selected');
    li.setAttribute('aria-selected', 'true');
    el.setAttribute('aria-activedescendant', li.id);
    if (scroll) li.scrollIntoView({ block: 'nearest' });
  }
}

function updateRow(id: string, change: Partial<MessageSummary>): void {
  const i = list.messages.findIndex((m) => m.id === id);
  const m = list.messages[i];
  if (!m) return;
  Object.assign(m, change);
  const old = byId('list').children[i];
  if (old) old.replaceWith(row(m, i));
  renderSelection(false);
}

function removeRow(id: string): void {
  const i = list.messages.findIndex((m) => m.id === id);
  if (i < 0) return;
  list.messages.splice(i, 1);
  const el = byId('list');
  clear(el);
  const frag = document.createDocumentFragment();
  list.messages.forEach((m, j) => frag.appendChild(row(m, j)));
  el.appendChild(frag);
  byId('list-empty').hidden = list.messages.length > 0;
  renderSelection(false);
}

async function moveSelection(delta: number): Promise<void> {
  const next = list.selected + delta;
  if (next >= list.messages.length && !list.done) await loadMore();
  list.selected = Math.min(Math.max(0, next), Math.max(0, list.messages.length - 1));
  renderSelection();
}

// ---------------------------------------------------------------------------------------------------- message

let openGeneration = 0;

async function openMessage(id: string): Promise<void> {
  const generation = ++openGeneration;
  const view = byId('view-message');
  if (current?.id !== id) {
    clear(view);
    append(view, h('p', { class: 'loading', text: 'Loading…' }));
  }
  const m = await api.message(id);
  if (generation !== openGeneration) return;
  current = m;
  const i = list.messages.findIndex((x) => x.id === id);
  if (i >= 0) list.selected = i;
  document.title = `${m.subject || '(no subject)'} · Tributary`;
  await renderMessage(m, generation);
  if (m.unread) {
    await api.setUnread(m.id, false);
    m.unread = false;
    updateRow(m.id, { unread: false });
  }
}

function addresses(label: string, list: Array<{ name?: string; address?: string }>): HTMLElement | null {
  if (list.length === 0) return null;
  const text = list
    .map((a) => (a.name && a.address ? `${a.name} <${a.address}>` : a.name || a.address || ''))
    .join(', ');
  return h('div', { class: 'addr' }, h('span', { class: 'label', text: `${label}: ` }), h('span', { text }));
}

async function inlineImages(m: MessageView): Promise<Map<string, string>> {
  const images = new Map<string, string>();
  if (!m.html) return images;
  const wanted = new Set(cidReferences(m.html));
  const matches = m.attachments.filter((a) => a.contentId && wanted.has(normalizeCid(a.contentId)));
  await Promise.all(
    matches.slice(0, MAX_INLINE_IMAGES).map(async (a) => {
      const cid = a.contentId ?? '';
      const data = await api.inlineImage(m.id, cid, MAX_INLINE_BYTES).catch(() => null);
      if (data) images.set(normalizeCid(cid), data);
    }),
  );
  return images;
}

async function renderMessage(m: MessageView, generation: number, mode?: 'html' | 'text'): Promise<void> {
  const view = byId('view-message');
  const showHtml = mode ? mode === 'html' : m.html !== null && m.html.trim() !== '';
  const inline = showHtml ? await inlineImages(m) : new Map<string, string>();
  if (generation !== openGeneration) return;
  clear(view);
  // For tests and scripts: which message is shown, and (HTML) when its frame has loaded.
  delete view.dataset.shown;
  delete view.dataset.loaded;

  const actions = h(
    'div',
    { class: 'actions' },
    h('button', {
      text: '← Inbox',
      title: 'Back to the list (u)',
      class: 'back',
      onClick: () => backToList(),
    }),
    h('button', {
      text: 'Mark unread',
      title: 'Mark unread (Shift+U)',
      class: 'mark-unread',
      onClick: () => void toggleUnread(m.id).catch(fail),
    }),
    h('button', {
      text: 'Delete',
      title: 'Delete from the inbox (#); the upstream account is not touched',
      class: 'delete',
      onClick: () => void deleteMessage(m.id).catch(fail),
    }),
    h('button', {
      text: 'Download .eml',
      class: 'quiet raw',
      onClick: () => void api.raw(m.id).then(followDownload).catch(fail),
    }),
  );
  const header = h(
    'header',
    { class: 'head' },
    h('h1', { class: 'subject', text: m.subject || '(no subject)' }),
    h(
      'div',
      { class: 'addr from' },
      h('span', { class: 'label', text: 'From: ' }),
      h('strong', { text: m.from?.name || m.from?.address || '(no sender)' }),
      m.from?.name && m.from.address ? h('span', { class: 'muted', text: ` <${m.from.address}>` }) : null,
    ),
    addresses('To', m.to),
    addresses('Cc', m.cc),
    addresses('Reply-To', m.replyTo),
    h(
      'div',
      { class: 'addr' },
      h('time', { text: longDate(m.date), attrs: { datetime: m.date } }),
      h('span', { class: 'badges' }, ...m.sources.map(badge)),
    ),
  );
  append(view, actions, header);

  if (m.parse !== 'full') {
    append(
      view,
      h('p', {
        class: 'notice',
        text:
          m.parse === 'headers-only'
            ? 'This message is too large to show whole here; download the .eml to read all of it.'
            : 'This message could not be read whole; download the .eml to see everything it holds.',
      }),
    );
  }

  const hasHtml = m.html !== null && m.html.trim() !== '';
  const hasText = m.text !== null && m.text.trim() !== '';
  if (hasHtml && hasText) {
    append(
      view,
      h(
        'div',
        { class: 'switch' },
        h('button', {
          class: 'quiet',
          text: showHtml ? 'Show plain text' : 'Show formatted',
          onClick: () => void renderMessage(m, openGeneration, showHtml ? 'text' : 'html').catch(fail),
        }),
      ),
    );
  }

  if (showHtml && m.html !== null) {
    const allow = remoteAllowed.has(m.id);
    const rendered = renderHtml(m.html, { allowRemote: allow, inline });
    if (rendered.blockedRemote > 0 && !allow) {
      append(
        view,
        h(
          'div',
          { class: 'remote-bar' },
          h('span', {
            text: `Remote content is blocked (${rendered.blockedRemote}): the sender cannot see that you opened this message.`,
          }),
          h('button', {
            class: 'show-remote',
            text: 'Show remote content',
            onClick: () => {
              remoteAllowed.add(m.id);
              void renderMessage(m, openGeneration, 'html').catch(fail);
            },
          }),
        ),
      );
    }
    const frame = document.createElement('iframe');
    // The sandbox goes on before the content: no scripts, an opaque origin; links may open a new tab only.
    frame.setAttribute('sandbox', 'allow-popups allow-popups-to-escape-sandbox');
    frame.setAttribute('referrerpolicy', 'no-referrer');
    frame.setAttribute('allow', '');
    frame.className = 'mail-frame';
    frame.title = 'Message';
    frame.addEventListener('load', () => {
      if (current?.id === m.id) view.dataset.loaded = m.id;
    });
    frame.srcdoc = rendered.srcdoc;
    append(view, h('div', { class: 'body html' }, frame));
  } else {
    const pre = h('pre', { class: 'body plain' });
    if (hasText && m.text !== null) renderText(m.text, pre);
    else pre.textContent = '(no text)';
    append(view, pre);
  }

  const referenced = new Set(m.html ? cidReferences(m.html) : []);
  const files = m.attachments.filter(
    (a) => !a.inline || !a.contentId || !referenced.has(normalizeCid(a.contentId)),
  );
  if (files.length > 0) {
    append(
      view,
      h(
        'section',
        { class: 'attachments', attrs: { 'aria-label': 'Attachments' } },
        h('h2', { text: `Attachments (${files.length})` }),
        h(
          'ul',
          {},
          ...files.map((a) =>
            h(
              'li',
              {},
              h('span', { class: 'file', text: a.filename || `attachment ${a.n + 1}` }),
              h('span', { class: 'muted', text: ` ${a.contentType}, ${formatBytes(a.size)} ` }),
              h('button', {
                class: 'download',
                text: 'Download',
                dataset: { n: String(a.n) },
                onClick: () => void api.attachment(m.id, a.n).then(followDownload).catch(fail),
              }),
            ),
          ),
        ),
      ),
    );
  }
  view.dataset.shown = m.id;
}

function backToList(): void {
  go(listHash(list.filters));
}

async function toggleUnread(id: string): Promise<void> {
  const m = list.messages.find((x) => x.id === id) ?? (current?.id === id ? current : undefined);
  const unread = !(m?.unread ?? false);
  const res = await api.setUnread(id, unread);
  updateRow(id, { unread: res.unread });
  if (current?.id === id) current.unread = res.unread;
  status(res.unread ? 'Marked unread.' : 'Marked read.');
  if (route.view === 'message' && res.unread) backToList();
}

async function deleteMessage(id: string): Promise<void> {
  const i = list.messages.findIndex((m) => m.id === id);
  await api.remove(id);
  removeRow(id);
  status('Deleted from the inbox (the upstream account is untouched).');
  if (route.view === 'message') {
    const next = list.messages[i] ?? list.messages[i - 1];
    if (next) go(messageHash(next.id));
    else backToList();
  }
}

// ---------------------------------------------------------------------------------------------------- sources

function addSourceOption(id: string): void {
  if (knownSources.includes(id)) return;
  knownSources.push(id);
  byId('filter-source').appendChild(h('option', { text: id, attrs: { value: id } }));
}

async function loadSourceIds(): Promise<SourceStatus[]> {
  const sources = await api.sources();
  sourceCount = sources.length;
  for (const s of sources) addSourceOption(s.id);
  syncFilterControls(list.filters);
  return sources;
}

/** `90 s` → "less than a minute", `600` → "about 10 min", `5400` → "about 1 h 30 min". */
function duration(seconds: number): string {
  if (seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  return `about ${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
}

/** A running sync: messages fetched (of planned), bytes, rate and time left, with a bar once the plan is known. */
function progressBlock(p: SyncProgressView): HTMLElement {
  const planned = p.planned !== undefined && p.planned > 0 ? p.planned : undefined;
  const text = [
    planned !== undefined
      ? `${p.fetched} of ${planned} messages`
      : `${p.fetched} message${p.fetched === 1 ? '' : 's'} fetched`,
    formatBytes(p.fetchedBytes),
    p.bytesPerSecond !== undefined ? `${formatBytes(Math.round(p.bytesPerSecond))}/s` : '',
    p.etaSeconds !== undefined ? `${duration(p.etaSeconds)} left` : '',
  ]
    .filter(Boolean)
    .join(' · ');
  const percent = planned !== undefined ? Math.min(100, Math.round((p.fetched / planned) * 100)) : null;
  const fill = h('div', { class: 'fill' });
  fill.style.width = `${percent ?? 0}%`;
  return h(
    'div',
    { class: 'progress' },
    h('p', { class: 'progress-text' }, h('strong', { text: 'Syncing: ' }), text),
    percent !== null
      ? h(
          'div',
          {
            class: 'bar',
            attrs: {
              role: 'progressbar',
              'aria-label': `Sync of ${p.sourceId}`,
              'aria-valuemin': '0',
              'aria-valuemax': '100',
              'aria-valuenow': String(percent),
            },
          },
          fill,
        )
      : null,
  );
}

function bar(label: string, percent: number | null, detail: string): HTMLElement {
  const p = percent === null ? 0 : Math.max(0, Math.min(100, percent));
  const fill = h('div', { class: 'fill' });
  fill.style.width = `${p}%`;
  return h(
    'div',
    { class: 'quota' },
    h(
      'div',
      { class: 'quota-label' },
      h('span', { text: label }),
      h('span', { class: 'muted', text: detail }),
    ),
    h(
      'div',
      {
        class: `bar${p >= 90 ? ' high' : p >= 75 ? ' mid' : ''}`,
        attrs: {
          role: 'meter',
          'aria-label': label,
          'aria-valuemin': '0',
          'aria-valuemax': '100',
          'aria-valuenow': String(Math.round(p)),
        },
      },
      fill,
    ),
  );
}

function sourceCard(s: SourceStatus): HTMLElement {
  const run = s.lastRun;
  const outcome = run ? run.outcome : 'never run';
  const counts = run
    ? [
        run.fetched !== undefined ? `${run.fetched} fetched` : '',
        run.deletedUpstream ? `${run.deletedUpstream} deleted upstream` : '',
        run.evicted ? `${run.evicted} evicted` : '',
      ]
        .filter(Boolean)
        .join(', ')
    : '';
  const error = s.error ?? run?.error ?? null;
  const up = s.quota.upstream;
  const inbox = s.quota.inbox;
  const syncButton = h('button', { class: 'sync', text: 'Sync now' });
  syncButton.addEventListener('click', () => {
    syncButton.disabled = true;
    api
      .syncNow(s.id)
      .then(() => {
        status(`Sync of ${s.id} queued.`);
        // On one machine the sync starts now: look again soon for its progress.
        watchForProgress();
      })
      .catch(fail)
      .finally(() => (syncButton.disabled = false));
  });
  return h(
    'article',
    {
      class: `source${error && !s.progress ? ' failing' : ''}${s.progress ? ' syncing' : ''}`,
      dataset: { source: s.id },
    },
    h(
      'header',
      {},
      h('h2', {}, badge(s.id)),
      h('span', { class: 'muted', text: `${s.protocol.toUpperCase()} ${s.user}@${s.host}:${s.port}` }),
      s.enabled ? null : h('span', { class: 'pill', text: 'disabled' }),
      s.progress ? h('span', { class: 'pill live', text: 'syncing' }) : null,
      syncButton,
    ),
    s.progress ? progressBlock(s.progress) : null,
    h(
      'p',
      { class: 'run' },
      h('span', { class: `outcome ${outcome}`, text: outcome }),
      run ? ` ${longDate(run.at)}` : '',
      counts ? ` · ${counts}` : '',
      s.consecutiveFailures > 1 ? ` · ${s.consecutiveFailures} failures in a row` : '',
    ),
    error
      ? h(
          'p',
          { class: 'error-text', attrs: { role: 'note' } },
          h('strong', { text: `${error.code}: ` }),
          error.message,
        )
      : null,
    h('p', { class: 'muted', text: `Stored: ${s.stored.messages} messages, ${formatBytes(s.stored.bytes)}` }),
    inbox
      ? bar(
          'Inbox quota',
          Math.max(inbox.messagesPercent ?? 0, inbox.bytesPercent ?? 0),
          [
            inbox.maxMessages !== null ? `${inbox.messages} / ${inbox.maxMessages} messages` : '',
            inbox.maxBytes !== null ? `${formatBytes(inbox.bytes)} / ${formatBytes(inbox.maxBytes)}` : '',
            `when full: ${inbox.onExceed}`,
          ]
            .filter(Boolean)
            .join(' · '),
        )
      : null,
    up
      ? bar(
          'Upstream quota',
          up.usedPercent,
          `${formatBytes(up.usedBytes)} / ${formatBytes(up.limitBytes)}` +
            (up.afterBytes !== up.usedBytes ? ` (after policies: ${formatBytes(up.afterBytes)})` : ''),
        )
      : null,
    s.schedule?.nextDueAt
      ? h('p', {
          class: 'muted',
          text:
            `Next run ${longDate(s.schedule.nextDueAt)}` +
            (s.schedule.backoffUntil ? ` (backing off until ${longDate(s.schedule.backoffUntil)})` : ''),
        })
      : null,
    s.recentActions.length > 0
      ? h(
          'details',
          { class: 'actions-log' },
          h('summary', { text: `Recent deletions and evictions (${s.recentActions.length})` }),
          h(
            'ul',
            {},
            ...s.recentActions.map((a) =>
              h(
                'li',
                {},
                h('time', { text: shortDate(a.at), attrs: { datetime: a.at }, title: longDate(a.at) }),
                h('span', { class: 'pill', text: a.action }),
                h('span', { text: a.subject || a.identity }),
                h('span', { class: 'muted', text: ` — ${a.reason}` }),
              ),
            ),
          ),
        )
      : null,
  );
}

let sourcesTimer: ReturnType<typeof setTimeout> | undefined;
let sourcesGeneration = 0;
/** Polls left after "Sync now" or an add even if no progress shows yet (the sync may not have started). */
let pollGrace = 0;

function stopSourcesPolling(): void {
  clearTimeout(sourcesTimer);
  sourcesTimer = undefined;
}

/** Asks again in ~2 s while a sync runs (or a sync was just asked for); not while the tab is hidden. */
function schedulePoll(syncing: boolean): void {
  stopSourcesPolling();
  if (!syncing) {
    if (pollGrace <= 0) return;
    pollGrace--;
  }
  if (route.view !== 'sources' || document.hidden) return;
  sourcesTimer = setTimeout(() => void renderSources().catch(fail), PROGRESS_POLL_MS);
}

function watchForProgress(): void {
  pollGrace = 2;
  if (!sourcesTimer) schedulePoll(false);
}

/**
 * The sources view. Drawn again on each poll: the open "recent deletions" lists and the focused button stay as
 * they were, and the whole view is swapped in one step (no flicker, no scroll jump).
 */
async function renderSources(): Promise<void> {
  const generation = ++sourcesGeneration;
  const view = byId('view-sources');
  const sources = await api.sources();
  if (generation !== sourcesGeneration || route.view !== 'sources') return;
  sourceCount = sources.length;
  for (const s of sources) addSourceOption(s.id);
  const open = new Set(
    [...view.querySelectorAll<HTMLDetailsElement>('article.source details[open]')].map(
      (d) => d.closest<HTMLElement>('article.source')?.dataset.source,
    ),
  );
  const focused = document.activeElement;
  const focusSource =
    focused instanceof HTMLElement && view.contains(focused)
      ? focused.closest<HTMLElement>('article.source')?.dataset.source
      : undefined;
  const focusClass = focused instanceof HTMLElement ? focused.className : '';
  const cards = sources.map((s) => {
    const card = sourceCard(s);
    if (open.has(s.id)) card.querySelector('details')?.setAttribute('open', '');
    return card;
  });
  const addLink = canSetup
    ? h('a', { class: 'button add-source', text: 'Add a source', attrs: { href: '#/setup' } })
    : null;
  view.replaceChildren(
    h('div', { class: 'view-head' }, h('h1', { text: 'Sources' }), addLink),
    ...(sources.length === 0 ? [h('p', { class: 'empty', text: 'No sources configured.' })] : []),
    ...cards,
  );
  if (focusSource && focusClass) {
    const again = cards
      .find((c) => c.dataset.source === focusSource)
      ?.querySelector<HTMLElement>(`.${focusClass.split(/\s+/).filter(Boolean).join('.')}`);
    again?.focus();
  }
  schedulePoll(sources.some((s) => s.progress));
}

function showSetup(): void {
  const view = byId('view-setup');
  if (!canSetup) return renderNoSetup(view);
  renderSetup(view, {
    api,
    firstRun: () => sourceCount === 0,
    added: (sourceId) => {
      addSourceOption(sourceId);
      sourceCount = (sourceCount ?? 0) + 1;
      status(`Added ${sourceId}. "Sync now" fetches its mail.`);
      pollGrace = 2;
      go('#/sources');
    },
    fail,
  });
}

// ---------------------------------------------------------------------------------------------------- keys

let pendingG = 0;

function onKey(e: KeyboardEvent): void {
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
  const target = e.target as HTMLElement | null;
  const typing =
    target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
  if (typing) {
    if (e.key === 'Escape') target.blur();
    return;
  }
  const key = e.key;
  // Enter and space on a focused button or link do what that control does.
  if ((key === 'Enter' || key === ' ') && target && ['BUTTON', 'A', 'SUMMARY'].includes(target.tagName))
    return;
  if (Date.now() - pendingG < 1500) {
    pendingG = 0;
    if (key === 's') return void go('#/sources');
    if (key === 'i') return void go(listHash(list.filters));
  }
  // The form to add a source takes no single-key commands (a stray "u" must not leave a half-filled form).
  if (route.view === 'setup' && key !== 'g') return;
  const inList = route.view === 'list';
  const inMessage = route.view === 'message';
  const run = (p: Promise<unknown>) => void p.catch(fail);
  switch (key) {
    case 'g':
      pendingG = Date.now();
      return;
    case '/':
      e.preventDefault();
      if (!inList) go(listHash(list.filters));
      byId<HTMLInputElement>('search').focus();
      byId<HTMLInputElement>('search').select();
      return;
    case 'j':
    case 'k': {
      const delta = key === 'j' ? 1 : -1;
      if (inList) run(moveSelection(delta));
      else if (inMessage)
        run(
          moveSelection(delta).then(() => {
            const m = list.messages[list.selected];
            if (m && m.id !== current?.id) go(messageHash(m.id));
          }),
        );
      return;
    }
    case 'o':
    case 'Enter': {
      if (!inList) return;
      const m = list.messages[list.selected];
      if (m) {
        e.preventDefault();
        go(messageHash(m.id));
      }
      return;
    }
    case 'u':
    case 'Escape':
      if (!inList) backToList();
      return;
    case 'U': {
      const id = inMessage ? current?.id : list.messages[list.selected]?.id;
      if (id) run(toggleUnread(id));
      return;
    }
    case '#': {
      const id = inMessage ? current?.id : inList ? list.messages[list.selected]?.id : undefined;
      if (id) run(deleteMessage(id));
      return;
    }
    default:
  }
}

// ---------------------------------------------------------------------------------------------------- start

function wire(): void {
  let debounce: ReturnType<typeof setTimeout> | undefined;
  const applyFilters = () => {
    clearTimeout(debounce);
    go(listHash(currentFilters()));
  };
  byId('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    applyFilters();
  });
  byId('search').addEventListener('input', () => {
    clearTimeout(debounce);
    debounce = setTimeout(applyFilters, 300);
  });
  byId('filter-source').addEventListener('change', applyFilters);
  byId('filter-unread').addEventListener('change', applyFilters);
  byId('load-more').addEventListener('click', () => void loadMore().catch(fail));
  window.addEventListener('hashchange', () => void onRoute());
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) stopSourcesPolling();
    else if (route.view === 'sources') void renderSources().catch(fail);
  });
  document.addEventListener('keydown', onKey);
  new IntersectionObserver(
    (entries) => {
      if (
        route.view === 'list' &&
        entries.some((e) => e.isIntersecting) &&
        !list.done &&
        list.messages.length > 0
      )
        void loadMore().catch(fail);
    },
    { rootMargin: '400px' },
  ).observe(byId('sentinel'));
  const signOut = byId('sign-out');
  signOut.hidden = auth.kind !== 'cognito';
  signOut.addEventListener('click', () => auth.signOut());
}

async function start(): Promise<void> {
  try {
    const config = await loadConfig();
    auth = await createAuth(config);
    api = new Api(auth);
    canSetup = config.auth === 'cookie' && config.setup === true;
    wire();
    if (canSetup) {
      // First run: no sources yet, and this server can add one. The inbox would be empty: the form instead.
      const sources = await loadSourceIds().catch(() => null);
      if (sources?.length === 0 && parseRoute(location.hash).view === 'list')
        history.replaceState(null, '', '#/setup');
    } else {
      void loadSourceIds().catch(() => undefined);
    }
    await onRoute();
    document.body.dataset.ready = '1';
  } catch (err) {
    fail(err);
    document.body.dataset.ready = '1';
  }
}

void start();
