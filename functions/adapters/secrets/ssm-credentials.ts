import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { TributaryError } from '../../core/errors';
import type { Source } from '../../core/model';
import type { Credentials } from '../../core/ports';

/**
 * The deployed service's passwords: one SSM Parameter Store SecureString per source, named `<prefix><source id>`,
 * read decrypted and kept for the life of the warm container (one GetParameter per source and container, not per
 * run). `forget` drops one after the server refused it, so a password changed in SSM is read again at the next run.
 * The value is never logged or put in an error; errors name the parameter, never its value.
 */
export class SsmCredentials implements Credentials {
  private readonly cache = new Map<string, string>();

  constructor(
    private readonly ssm: SSMClient,
    private readonly prefix: string,
  ) {}

  parameterName(sourceId: string): string {
    return `${this.prefix}${sourceId}`;
  }

  async password(source: Source): Promise<string> {
    const cached = this.cache.get(source.id);
    if (cached !== undefined) return cached;
    const name = this.parameterName(source.id);
    let value: string | undefined;
    try {
      const out = await this.ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
      value = out.Parameter?.Value;
    } catch (err) {
      const missing = (err as { name?: string }).name === 'ParameterNotFound';
      throw new TributaryError(
        'SECRET_MISSING',
        missing
          ? `source ${source.id}: no SSM parameter ${name}: create it as a SecureString holding the password`
          : `source ${source.id}: cannot read SSM parameter ${name}: ${(err as Error).name}`,
        // Throttling or a network error may pass; a parameter that does not exist will not appear by itself.
        !missing,
        { cause: err },
      );
    }
    if (!value)
      throw new TributaryError(
        'SECRET_MISSING',
        `source ${source.id}: SSM parameter ${name} is empty`,
        false,
      );
    this.cache.set(source.id, value);
    return value;
  }

  /** Drops the cached password of a source (the server refused it). */
  forget(sourceId: string): void {
    this.cache.delete(sourceId);
  }
}
