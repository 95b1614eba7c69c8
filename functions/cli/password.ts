import { TributaryError } from '../core/errors';

/** The terminal or pipe a password is read from (process.stdin; a stand-in in tests). */
export interface SecretInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/** Where a password comes from, as the command line says: one of them, or none to be asked for it. */
export interface PasswordChoice {
  /** `--password-stdin`: the whole of standard input, one trailing line end removed (`pass show x | tributary ...`). */
  stdin?: boolean;
  /** `--password-env NAME`: the value of an environment variable. */
  env?: string;
}

export class PasswordInputError extends TributaryError {
  override readonly name = 'PasswordInputError';
  constructor(message: string) {
    super('CONFIG_INVALID', message, false);
  }
}

/** Ctrl-C at the password prompt. */
export class PromptInterrupted extends Error {}

const MAX_PASSWORD_BYTES = 4096;

async function readAllInput(input: SecretInput): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > MAX_PASSWORD_BYTES)
      throw new PasswordInputError(`--password-stdin: more than ${MAX_PASSWORD_BYTES} bytes: not a password`);
    chunks.push(b);
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * Reads a line from a terminal without echoing it: raw mode, each key handled here (Enter ends, Backspace erases,
 * Ctrl-C interrupts, Ctrl-U clears). Nothing typed is written anywhere; the prompt goes to `prompt` (stderr).
 */
export function promptHidden(
  input: SecretInput,
  prompt: (text: string) => void,
  label: string,
): Promise<string> {
  if (!input.isTTY || !input.setRawMode)
    return Promise.reject(
      new PasswordInputError(
        'no terminal to ask for the password: give it with --password-stdin (piped) or --password-env NAME',
      ),
    );
  const setRaw = input.setRawMode.bind(input);
  prompt(`${label}: `);
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (fn: () => void) => {
      input.removeListener('data', onData);
      setRaw(false);
      input.pause();
      prompt('\n');
      fn();
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of String(chunk)) {
        if (ch === '\r' || ch === '\n') return finish(() => resolve(typed));
        if (ch === '\u0003')
          return finish(() => reject(new PromptInterrupted('interrupted at the password prompt')));
        if (ch === '\u0004' && typed === '')
          return finish(() => reject(new PasswordInputError('no password given')));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (ch === '\u0015') typed = '';
        else if (ch >= ' ') typed += ch;
      }
    };
    setRaw(true);
    input.setEncoding('utf8');
    input.on('data', onData);
    input.resume();
  });
}

/**
 * The password of a source from the place the user chose. Never from a command-line argument (it would sit in the
 * shell's history and in `ps`): from a prompt when standard input is a terminal, from piped standard input, or from
 * an environment variable. An empty password is refused.
 */
export async function readPassword(
  choice: PasswordChoice,
  io: { input: SecretInput; env: NodeJS.ProcessEnv; prompt: (text: string) => void },
  label: string,
): Promise<string> {
  if (choice.stdin && choice.env !== undefined)
    throw new PasswordInputError('give the password one way: --password-stdin or --password-env, not both');
  let value: string;
  if (choice.env !== undefined) {
    const v = io.env[choice.env];
    if (v === undefined)
      throw new PasswordInputError(`--password-env ${choice.env}: that variable is not set`);
    value = v;
  } else if (choice.stdin) {
    if (io.input.isTTY)
      throw new PasswordInputError(
        '--password-stdin reads a pipe (e.g. `pass show mail | tributary ...`); at a terminal, leave it out to be asked',
      );
    value = await readAllInput(io.input);
  } else {
    value = await promptHidden(io.input, io.prompt, label);
  }
  if (value === '') throw new PasswordInputError('the password is empty');
  return value;
}
