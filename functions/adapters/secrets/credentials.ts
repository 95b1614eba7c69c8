import fs from 'node:fs';
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { TributaryError } from '../../core/errors';
import type { Source } from '../../core/model';
import type { Credentials } from '../../core/ports';

export type SecretRef = { env: string } | { file: string } | { ssmParameter: string };

function missing(source: Source, where: string): TributaryError {
  return new TributaryError('SECRET_MISSING', `source ${source.id}: no password found in ${where}`, false);
}

/**
 * A secret file is used only when it is its owner's alone, as fetchmail and ssh do with theirs: a password other
 * users can read is a leaked one, and one they can change lets them point a login anywhere. The mode checked is the
 * mode of the file actually opened (fstat), not of a name that could change in between.
 */
function readSecretFile(source: Source, file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    throw missing(source, `the file ${file} (it cannot be read)`);
  }
  try {
    const stat = fs.fstatSync(fd);
    const uid = process.getuid?.();
    if (uid !== undefined) {
      const mode = `0${(stat.mode & 0o777).toString(8)}`;
      if (stat.mode & 0o077)
        throw new TributaryError(
          'SECRET_MISSING',
          `source ${source.id}: the secret file ${file} can be ${stat.mode & 0o044 ? 'read' : 'changed'} by other users (mode ${mode}), so it is not used: run "chmod 600 ${file}"`,
          false,
        );
      if (stat.uid !== uid && stat.uid !== 0)
        throw new TributaryError(
          'SECRET_MISSING',
          `source ${source.id}: the secret file ${file} belongs to another user (uid ${stat.uid}), so it is not used: it must be yours, mode 600`,
          false,
        );
    }
    return fs.readFileSync(fd, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    if (err instanceof TributaryError) throw err;
    throw missing(source, `the file ${file} (it cannot be read)`);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Passwords from where each source says: an environment variable or a git-ignored file on one machine, an SSM
 * SecureString in AWS. The value is never logged or echoed in an error.
 */
export class ConfiguredCredentials implements Credentials {
  private readonly cache = new Map<string, string>();

  constructor(
    private readonly refs: ReadonlyMap<string, SecretRef>,
    private readonly ssm?: SSMClient,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  async password(source: Source): Promise<string> {
    const cached = this.cache.get(source.id);
    if (cached !== undefined) return cached;
    const ref = this.refs.get(source.id);
    if (!ref) throw missing(source, 'the config (no "secret")');
    let value: string | undefined;
    if ('env' in ref) {
      value = this.env[ref.env];
      if (!value) throw missing(source, `the environment variable ${ref.env} (it is not set)`);
    } else if ('file' in ref) {
      value = readSecretFile(source, ref.file);
      if (!value) throw missing(source, `the file ${ref.file} (it is empty)`);
    } else {
      if (!this.ssm)
        throw missing(source, `SSM parameter ${ref.ssmParameter} (SSM is only used with the "aws" store)`);
      try {
        const out = await this.ssm.send(
          new GetParameterCommand({ Name: ref.ssmParameter, WithDecryption: true }),
        );
        value = out.Parameter?.Value;
      } catch (err) {
        throw new TributaryError(
          'SECRET_MISSING',
          `source ${source.id}: cannot read SSM parameter ${ref.ssmParameter}: ${(err as Error).name}`,
          true,
          { cause: err },
        );
      }
      if (!value) throw missing(source, `SSM parameter ${ref.ssmParameter} (empty)`);
    }
    this.cache.set(source.id, value);
    return value;
  }
}
