import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { ConfigError, StorageError } from '../core/errors';
import type { StoreConfig } from './config';

/** The outputs of the service stack this CLI reads (infra/service-stack.ts writes them). */
export const STACK_OUTPUTS = {
  table: 'TableName',
  bucket: 'BucketName',
  secretsPrefix: 'SecretsPrefix',
} as const;

/** The name `cdk deploy --all` gives the service stack (infra/app.ts). */
export const DEFAULT_SERVICE_STACK = 'TributaryService';

/**
 * Where an `aws` store is, once known. `deployment` is set for a deployed Tributary (the config names its stack): its
 * sources live in the table's registry and their passwords in SSM under `secretsPrefix`, as the Lambdas read them.
 * Without it the store is a bare table and bucket whose sources are listed in the config file.
 */
export interface ResolvedAwsStore {
  mode: 'aws';
  region?: string;
  table: string;
  bucket: string;
  deployment?: { stack: string; secretsPrefix: string };
}

export type ResolvedStore = Extract<StoreConfig, { mode: 'local' }> | ResolvedAwsStore;

/**
 * Fills in what an `aws` store leaves out from its stack's outputs (one DescribeStacks call); values written in the
 * config win over the outputs. A store without a stack is returned as it is.
 */
export async function resolveStore(
  store: StoreConfig,
  cloudFormation: () => Pick<CloudFormationClient, 'send' | 'destroy'> = () =>
    new CloudFormationClient(store.mode === 'aws' && store.region ? { region: store.region } : {}),
): Promise<ResolvedStore> {
  if (store.mode === 'local') return store;
  const { stack, region } = store;
  if (stack === undefined) {
    if (store.secretsPrefix !== undefined)
      throw new ConfigError('store.secretsPrefix: only with "stack" (a deployed Tributary); remove it');
    return { mode: 'aws', region, table: store.table!, bucket: store.bucket! };
  }
  let outputs: Record<string, string> = {};
  if (store.table === undefined || store.bucket === undefined || store.secretsPrefix === undefined) {
    const client = cloudFormation();
    try {
      const out = await client.send(new DescribeStacksCommand({ StackName: stack }));
      const found = out.Stacks?.[0];
      if (!found) throw new ConfigError(`store.stack: no stack "${stack}"`);
      outputs = Object.fromEntries(
        (found.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? ''] as const),
      );
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      const e = err as { name?: string; message?: string };
      if (e.name === 'ValidationError' && /does not exist/.test(e.message ?? ''))
        throw new ConfigError(
          `store.stack: there is no stack "${stack}" in ${region ?? 'the default region'}: deploy it (docs/deploy.md), or correct "stack" or "region"`,
        );
      throw new StorageError(
        `cannot read the outputs of the stack "${stack}" (${e.name ?? 'error'}: ${e.message ?? ''}): check your AWS credentials and region`,
        { cause: err },
      );
    } finally {
      client.destroy();
    }
  }
  const pick = (given: string | undefined, key: string): string => {
    const value = given ?? outputs[key];
    if (!value)
      throw new ConfigError(
        `store.stack: the stack "${stack}" has no output ${key}: is it Tributary's service stack, deployed by this version?`,
      );
    return value;
  };
  return {
    mode: 'aws',
    region,
    table: pick(store.table, STACK_OUTPUTS.table),
    bucket: pick(store.bucket, STACK_OUTPUTS.bucket),
    deployment: { stack, secretsPrefix: pick(store.secretsPrefix, STACK_OUTPUTS.secretsPrefix) },
  };
}
