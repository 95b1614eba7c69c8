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
      try {
        value = fs.readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
      } catch {
        throw missing(source, `the file ${ref.file} (it cannot be read)`);
      }
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
