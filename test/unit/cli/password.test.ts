import { PassThrough, Readable } from 'node:stream';
import {
  PasswordInputError,
  PromptInterrupted,
  readPassword,
  type SecretInput,
} from '../../../functions/cli/password';

/** A terminal stand-in: a stream with isTTY and a raw mode that records its changes. */
function terminal(): { input: SecretInput & PassThrough; raw: boolean[] } {
  const raw: boolean[] = [];
  const input = Object.assign(new PassThrough(), {
    isTTY: true,
    setRawMode(mode: boolean) {
      raw.push(mode);
    },
  });
  return { input, raw };
}

describe('reading a password', () => {
  it('asks at a terminal in raw mode, echoes nothing, handles Backspace and Ctrl-U, and restores the mode', async () => {
    const { input, raw } = terminal();
    let shown = '';
    const got = readPassword({}, { input, env: {}, prompt: (t) => (shown += t) }, 'password of u on h (s)');
    input.write('wrong');
    input.write('\u0015'); // Ctrl-U: start again
    input.write('hunter22\u007f');
    input.write('\r');
    await expect(got).resolves.toBe('hunter2');
    expect(shown).toBe('password of u on h (s): \n');
    expect(raw).toEqual([true, false]);
  });

  it('stops at Ctrl-C, with the terminal restored', async () => {
    const { input, raw } = terminal();
    const got = readPassword({}, { input, env: {}, prompt: () => undefined }, 'p');
    input.write('abc\u0003');
    await expect(got).rejects.toBeInstanceOf(PromptInterrupted);
    expect(raw).toEqual([true, false]);
  });

  it('reads piped standard input without its last line end, and refuses it at a terminal', async () => {
    const piped = Readable.from([Buffer.from('s3cret pass\r\n')]) as SecretInput;
    await expect(
      readPassword({ stdin: true }, { input: piped, env: {}, prompt: () => undefined }, 'p'),
    ).resolves.toBe('s3cret pass');
    const { input } = terminal();
    await expect(
      readPassword({ stdin: true }, { input, env: {}, prompt: () => undefined }, 'p'),
    ).rejects.toThrow(/reads a pipe/);
  });

  it('reads an environment variable; refuses an unset one, an empty password and two sources', async () => {
    const input = Readable.from([]) as SecretInput;
    const io = { input, env: { PW: 'from-env', EMPTY: '' }, prompt: () => undefined };
    await expect(readPassword({ env: 'PW' }, io, 'p')).resolves.toBe('from-env');
    await expect(readPassword({ env: 'NOPE' }, io, 'p')).rejects.toThrow(/NOPE: that variable is not set/);
    await expect(readPassword({ env: 'EMPTY' }, io, 'p')).rejects.toThrow(/the password is empty/);
    await expect(readPassword({ env: 'PW', stdin: true }, io, 'p')).rejects.toThrow(/not both/);
    // Not a terminal, no option: says how to give it instead of waiting.
    await expect(readPassword({}, io, 'p')).rejects.toBeInstanceOf(PasswordInputError);
  });
});
