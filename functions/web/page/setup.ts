/**
 * Adding a source (one machine, `#/setup`): the first-run page when the inbox has no sources, and "Add a source"
 * from the sources view. A plain form: "Test connection" runs the check `tributary sources test` runs and shows
 * its lines; "Add source" checks and saves. The server validates (functions/web/setup.ts); its 400 names the
 * field, shown beside it. The password is only ever in the password box and the request body.
 */
import type { NewSourceInput, SetupResult } from '../contract';
import { type Api, ApiFailure } from './api';
import { append, clear, h } from './dom';

export interface SetupContext {
  api: Api;
  /** True while the inbox has no sources: the form greets a first run. */
  firstRun(): boolean;
  /** A source was added. */
  added(sourceId: string): void;
  /** Errors that are not about the form (not signed in, the server down). */
  fail(err: unknown): void;
}

type Protocol = NewSourceInput['protocol'];
type Tls = NewSourceInput['tls'];
type RetentionMode = NonNullable<NewSourceInput['retention']>['mode'];

export function defaultPort(protocol: Protocol, tls: Tls): number {
  if (protocol === 'imap') return tls === 'implicit' ? 993 : 143;
  return tls === 'implicit' ? 995 : 110;
}

export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The form's fields, by the name the API uses for them in a 400 (`retention.days` is `days`). */
const FIELDS = [
  'protocol',
  'host',
  'tls',
  'port',
  'user',
  'password',
  'folders',
  'retention',
  'days',
  'id',
] as const;
type Field = (typeof FIELDS)[number];

function fieldOf(apiField: string | undefined): Field | undefined {
  if (!apiField) return undefined;
  if (apiField === 'retention.days') return 'days';
  const head = apiField.split('.')[0] as Field;
  return FIELDS.includes(head) ? head : undefined;
}

const LABELS: Record<Field, string> = {
  protocol: 'Protocol',
  host: 'Server',
  tls: 'Encryption',
  port: 'Port',
  user: 'User name',
  password: 'Password',
  folders: 'IMAP folders',
  retention: 'Mail on the server',
  days: 'Days',
  id: 'Name',
};

const RETENTION: Array<{ mode: RetentionMode; label: string; explain: string }> = [
  {
    mode: 'keep',
    label: 'Keep it',
    explain: 'Tributary only copies: nothing on the server is ever deleted.',
  },
  {
    mode: 'delete-after-days',
    label: 'Delete after some days',
    explain: 'Each message is deleted on the server that many days after its copy was stored here.',
  },
  {
    mode: 'delete-on-retrieve',
    label: 'Delete once copied',
    explain: 'Each message is deleted on the server as soon as its copy is safely stored here.',
  },
];

interface Form {
  root: HTMLFormElement;
  heading: HTMLHeadingElement;
  intro: HTMLParagraphElement;
  cancel: HTMLAnchorElement;
  controls: Record<Exclude<Field, 'retention'>, HTMLInputElement | HTMLSelectElement>;
  retention: HTMLInputElement[];
  errors: Record<Field, HTMLElement>;
  foldersRow: HTMLElement;
  portHint: HTMLElement;
  testButton: HTMLButtonElement;
  addButton: HTMLButtonElement;
  result: HTMLElement;
  /** The port was typed in: a change of protocol or TLS leaves it alone. */
  portEdited: boolean;
}

let form: Form | undefined;
let busy = false;

function hint(id: string, text: string): HTMLElement {
  return h('p', { class: 'hint', text, attrs: { id } });
}

function errorSlot(field: Field): HTMLElement {
  return h('p', { class: 'field-error', hidden: true, attrs: { id: `setup-${field}-error` } });
}

function row(
  field: Field,
  control: HTMLInputElement | HTMLSelectElement,
  error: HTMLElement,
  ...hints: HTMLElement[]
): HTMLElement {
  control.id = `setup-${field}`;
  control.setAttribute('aria-describedby', [...hints.map((x) => x.id), error.id].join(' '));
  return h(
    'div',
    { class: 'field', dataset: { field } },
    h('label', { text: LABELS[field], attrs: { for: control.id } }),
    control,
    ...hints,
    error,
  );
}

function select(options: Array<[string, string]>): HTMLSelectElement {
  return h('select', {}, ...options.map(([value, text]) => h('option', { text, attrs: { value } })));
}

function input(type: string, attrs: Record<string, string> = {}): HTMLInputElement {
  return h('input', {
    attrs: { type, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', ...attrs },
  });
}

function build(ctx: SetupContext): Form {
  const errors = Object.fromEntries(FIELDS.map((f) => [f, errorSlot(f)])) as Record<Field, HTMLElement>;
  const protocol = select([
    ['imap', 'IMAP'],
    ['pop3', 'POP3'],
  ]);
  const host = input('text', { placeholder: 'imap.example.com', inputmode: 'url', required: '' });
  const tls = select([
    ['implicit', 'TLS from the start (implicit)'],
    ['starttls', 'STARTTLS'],
    ['none', 'None (127.0.0.1 or localhost only)'],
  ]);
  const port = input('number', { min: '1', max: '65535', inputmode: 'numeric', value: '993' });
  const user = input('text', { required: '' });
  const password = input('password', { required: '' });
  const folders = input('text', { value: 'INBOX', placeholder: 'INBOX' });
  const days = input('number', { min: '1', max: '3650', inputmode: 'numeric', value: '30' });
  const id = input('text', { placeholder: 'e.g. work-mail', pattern: '[a-z0-9][a-z0-9\\-]{0,62}' });
  const portHint = hint('setup-port-hint', '');
  const retention = RETENTION.map((r) =>
    h('input', {
      attrs: {
        type: 'radio',
        name: 'retention',
        value: r.mode,
        id: `setup-retention-${r.mode}`,
        'aria-describedby': `setup-retention-${r.mode}-explain`,
      },
    }),
  );
  retention[0]!.checked = true;
  days.setAttribute('aria-label', 'Days after which mail is deleted on the server');
  days.id = 'setup-days';
  days.setAttribute('aria-describedby', errors.days.id);

  const foldersRow = row(
    'folders',
    folders,
    errors.folders,
    hint(
      'setup-folders-hint',
      'Separated by commas, e.g. INBOX, Archive. POP3 has one mailbox and no folders.',
    ),
  );
  const testButton = h('button', {
    text: 'Test connection',
    class: 'test',
    attrs: { type: 'button', id: 'setup-test' },
  });
  const addButton = h('button', {
    text: 'Add source',
    class: 'primary add',
    attrs: { type: 'submit', id: 'setup-add' },
  });
  const result = h('div', {
    class: 'setup-result',
    attrs: { id: 'setup-result', role: 'status', 'aria-live': 'polite' },
  });
  const heading = h('h1', { attrs: { id: 'setup-title' } });
  const intro = h('p', { class: 'intro' });
  const cancel = h('a', { text: 'Back to the sources', class: 'cancel', attrs: { href: '#/sources' } });

  const root = h(
    'form',
    { class: 'setup-form', attrs: { novalidate: '', autocomplete: 'off', 'aria-labelledby': 'setup-title' } },
    heading,
    intro,
    h(
      'fieldset',
      {},
      h('legend', { text: 'Server' }),
      h(
        'div',
        { class: 'grid' },
        row('protocol', protocol, errors.protocol),
        row('host', host, errors.host),
        row(
          'tls',
          tls,
          errors.tls,
          hint(
            'setup-tls-hint',
            '"None" sends the password in clear: it is allowed only for a server on this machine (127.0.0.1 or localhost).',
          ),
        ),
        row('port', port, errors.port, portHint),
      ),
    ),
    h(
      'fieldset',
      {},
      h('legend', { text: 'Account' }),
      h(
        'div',
        { class: 'grid' },
        row('user', user, errors.user),
        row(
          'password',
          password,
          errors.password,
          hint('setup-password-hint', 'Kept on this machine in a file only you can read; never shown again.'),
        ),
        foldersRow,
      ),
    ),
    h(
      'fieldset',
      { class: 'retention', attrs: { 'aria-describedby': errors.retention.id } },
      h('legend', { text: 'Mail on the server' }),
      ...RETENTION.map((r, i) =>
        h(
          'div',
          { class: 'choice' },
          retention[i],
          h(
            'label',
            { attrs: { for: `setup-retention-${r.mode}` } },
            h('strong', { text: r.label }),
            h('span', {
              class: 'muted',
              text: ` ${r.explain}`,
              attrs: { id: `setup-retention-${r.mode}-explain` },
            }),
          ),
          r.mode === 'delete-after-days'
            ? h('span', { class: 'days' }, days, h('span', { text: ' days' }))
            : null,
        ),
      ),
      errors.days,
      errors.retention,
    ),
    h(
      'div',
      { class: 'grid' },
      row(
        'id',
        id,
        errors.id,
        hint(
          'setup-id-hint',
          'Optional: the name the inbox shows for this source (lower-case letters, digits and dashes). Left empty, one is made from the user and the server.',
        ),
      ),
    ),
    h('div', { class: 'setup-actions' }, testButton, addButton, cancel),
    result,
  );

  const f: Form = {
    root,
    heading,
    intro,
    cancel,
    controls: { protocol, host, tls, port, user, password, folders, days, id },
    retention,
    errors,
    foldersRow,
    portHint,
    testButton,
    addButton,
    result,
    portEdited: false,
  };

  const refresh = () => {
    const p = protocol.value as Protocol;
    const t = tls.value as Tls;
    const def = defaultPort(p, t);
    if (!f.portEdited) port.value = String(def);
    portHint.textContent = `${p === 'imap' ? 'IMAP' : 'POP3'} ${t === 'implicit' ? 'over TLS' : t === 'starttls' ? 'with STARTTLS' : 'in clear'}: usually ${def}.`;
    foldersRow.hidden = p !== 'imap';
    days.disabled = !retention[1]!.checked;
    checkTls(f);
  };
  protocol.addEventListener('change', refresh);
  tls.addEventListener('change', refresh);
  for (const r of retention) r.addEventListener('change', refresh);
  host.addEventListener('change', () => checkTls(f));
  port.addEventListener('input', () => {
    f.portEdited =
      port.value !== '' && port.value !== String(defaultPort(protocol.value as Protocol, tls.value as Tls));
  });
  for (const field of FIELDS) {
    const control = field === 'retention' ? null : f.controls[field];
    control?.addEventListener('input', () => setError(f, field, null));
  }
  testButton.addEventListener('click', () => void submit(f, ctx, 'test'));
  root.addEventListener('submit', (e) => {
    e.preventDefault();
    void submit(f, ctx, 'add');
  });
  refresh();
  return f;
}

/** Shows (or clears) the error beside a field: an API message follows the field's name unless `whole`. */
function setError(f: Form, field: Field, message: string | null, whole = false): void {
  const slot = f.errors[field];
  slot.textContent = message ? (whole ? message : `${LABELS[field]} ${message}`) : '';
  slot.hidden = !message;
  const control = field === 'retention' ? f.retention[0] : f.controls[field];
  if (message) control?.setAttribute('aria-invalid', 'true');
  else control?.removeAttribute('aria-invalid');
  slot.closest('.field')?.classList.toggle('invalid', !!message);
}

/** "None" for a host that is not this machine: said at once, beside the choice. */
function checkTls(f: Form): void {
  const host = f.controls.host.value.trim();
  if (f.controls.tls.value === 'none' && host && !isLoopback(host))
    setError(f, 'tls', `"None" is only allowed for 127.0.0.1 or localhost; ${host} is not one.`, true);
  else if (f.errors.tls.textContent?.includes('"None"')) setError(f, 'tls', null);
}

function readInput(f: Form): NewSourceInput {
  const c = f.controls;
  const protocol = c.protocol.value as Protocol;
  const mode = (f.retention.find((r) => r.checked)?.value ?? 'keep') as RetentionMode;
  const port = c.port.value.trim();
  const id = c.id.value.trim();
  const folders = c.folders.value
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  return {
    protocol,
    host: c.host.value.trim(),
    ...(port ? { port: Number(port) } : {}),
    tls: c.tls.value as Tls,
    user: c.user.value,
    password: c.password.value,
    ...(protocol === 'imap' ? { folders: folders.length ? folders : ['INBOX'] } : {}),
    retention: mode === 'delete-after-days' ? { mode, days: Number(c.days.value || NaN) } : { mode },
    ...(id ? { id } : {}),
  };
}

function showResult(f: Form, kind: 'ok' | 'error' | 'busy', title: string, lines: string[] = []): void {
  clear(f.result);
  f.result.dataset.kind = kind;
  append(
    f.result,
    h('p', { class: 'result-title', text: title }),
    lines.length ? h('ul', { class: 'check-lines' }, ...lines.map((l) => h('li', { text: l.trim() }))) : null,
  );
}

async function submit(f: Form, ctx: SetupContext, what: 'test' | 'add'): Promise<void> {
  if (busy) return;
  for (const field of FIELDS) setError(f, field, null);
  checkTls(f);
  if (!f.errors.tls.hidden) {
    f.controls.tls.focus();
    return;
  }
  busy = true;
  f.root.setAttribute('aria-busy', 'true');
  // aria-disabled, not disabled: the focus stays on the button that was pressed.
  f.testButton.setAttribute('aria-disabled', 'true');
  f.addButton.setAttribute('aria-disabled', 'true');
  const input = readInput(f);
  showResult(
    f,
    'busy',
    what === 'test' ? `Connecting to ${input.host || 'the server'}…` : 'Checking and adding…',
  );
  let result: SetupResult;
  try {
    result = what === 'test' ? await ctx.api.testSource(input) : await ctx.api.addSource(input);
  } catch (err) {
    if (err instanceof ApiFailure && err.status === 400 && err.issues.length > 0) {
      let first: Field | undefined;
      for (const issue of err.issues) {
        const field = fieldOf(issue.field);
        if (!field) continue;
        first ??= field;
        if (f.errors[field].hidden) setError(f, field, issue.message);
      }
      showResult(f, 'error', 'Check the marked fields.', first ? [] : [err.message]);
      if (first) (first === 'retention' ? f.retention[0] : f.controls[first])?.focus();
    } else if (err instanceof ApiFailure && err.status !== 401) {
      showResult(f, 'error', `${err.code}: ${err.message}`);
    } else {
      clear(f.result);
      ctx.fail(err);
    }
    return;
  } finally {
    busy = false;
    f.root.removeAttribute('aria-busy');
    f.testButton.removeAttribute('aria-disabled');
    f.addButton.removeAttribute('aria-disabled');
  }
  if (!result.ok) {
    showResult(f, 'error', `${result.code}: ${result.message}`);
    const field = fieldOf(result.field);
    if (field) setError(f, field, result.message, true);
    return;
  }
  if (what === 'test') {
    showResult(f, 'ok', 'Connection OK', result.lines);
    return;
  }
  showResult(f, 'ok', `Added ${result.sourceId}.`, result.lines);
  reset(f);
  ctx.added(result.sourceId);
}

function reset(f: Form): void {
  f.root.reset();
  f.portEdited = false;
  f.retention[0]!.checked = true;
  f.controls.protocol.dispatchEvent(new Event('change'));
}

/** Shows the form in `view` (built once: what was typed survives a trip to another view). */
export function renderSetup(view: HTMLElement, ctx: SetupContext): void {
  form ??= build(ctx);
  const first = ctx.firstRun();
  form.heading.textContent = first ? 'Add your first mail account' : 'Add a source';
  form.intro.textContent = first
    ? 'Tributary copies mail from your IMAP and POP3 accounts into this one inbox. Say where the first account is, test the connection, then add it.'
    : 'Another IMAP or POP3 account to copy into this inbox. Test the connection, then add it.';
  form.cancel.hidden = first;
  if (form.root.parentElement !== view) {
    clear(view);
    view.appendChild(form.root);
  }
  if (!busy) {
    // Coming (back) to the form: the last answer is history.
    clear(form.result);
    delete form.result.dataset.kind;
  }
  document.body.dataset.firstRun = first ? '1' : '';
}

/** The view when this server cannot add sources (AWS: `tributary sources add`). */
export function renderNoSetup(view: HTMLElement): void {
  clear(view);
  append(
    view,
    h('h1', { text: 'Add a source' }),
    h('p', {
      text: 'Sources are added with the command line here: "tributary sources add" (or in the config file).',
    }),
  );
}
