import { App, CrossStackReferences, ReferenceStrength, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ServiceStack } from './service-stack';
import { StorageStack } from './storage-stack';

/** A context value given as a JSON array (cdk.json) or a comma-separated string (`-c callbackUrls=a,b`). */
function contextList(app: App, key: string): string[] | undefined {
  const value: unknown = app.node.tryGetContext(key);
  if (value === undefined || value === '') return undefined;
  const list: unknown[] = Array.isArray(value)
    ? value
    : typeof value === 'string'
      ? value.split(',')
      : [value];
  if (!list.every((v) => typeof v === 'string'))
    throw new Error(`context ${key}: a list of strings or one comma-separated string`);
  return list.map((v) => v.trim()).filter((v) => v !== '');
}

/** A whole-number context value (`-c syncConcurrency=3` arrives as a string). */
function contextNumber(app: App, key: string): number | undefined {
  const value: unknown = app.node.tryGetContext(key);
  if (value === undefined || value === '') return undefined;
  const n = typeof value === 'number' || typeof value === 'string' ? Number(value) : NaN;
  if (!Number.isInteger(n)) throw new Error(`context ${key}: a whole number, not ${JSON.stringify(value)}`);
  return n;
}

/** A yes/no context value (`-c detailedMetrics=true` arrives as a string). */
function contextBoolean(app: App, key: string): boolean | undefined {
  const value: unknown = app.node.tryGetContext(key);
  if (value === undefined || value === '') return undefined;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new Error(`context ${key}: true or false, not ${JSON.stringify(value)}`);
}

/**
 * Builds the whole app; the only place that reads CDK context on the infra side (docs/contributing.md, where code
 * goes). Context values (all optional; docs/deploy.md): `alarmEmail`, `callbackUrls`, `syncConcurrency`,
 * `detailedMetrics`.
 */
export function buildApp(app: App = new App()): { app: App; storage: StorageStack; service: ServiceStack } {
  // Cross-stack references are strong (CloudFormation exports and Fn::ImportValue), said explicitly: the storage
  // stack cannot be deleted, nor lose an export, while the service uses it. The price: a service that stops using
  // a value of the store needs two deploys.
  CrossStackReferences.of(app).consume(ReferenceStrength.STRONG);
  const storage = new StorageStack(app, 'TributaryStorage', {
    description: 'Tributary: raw mail (S3) and the inbox index (DynamoDB). Retained on stack deletion.',
  });
  const alarmEmail: unknown = app.node.tryGetContext('alarmEmail');
  const service = new ServiceStack(app, 'TributaryService', {
    description: 'Tributary: functions, schedule, queue, HTTP API, sign-in and alarms. Stateless.',
    store: storage.store,
    alarmEmail: typeof alarmEmail === 'string' && alarmEmail !== '' ? alarmEmail : undefined,
    callbackUrls: contextList(app, 'callbackUrls'),
    syncConcurrency: contextNumber(app, 'syncConcurrency'),
    detailedMetrics: contextBoolean(app, 'detailedMetrics'),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, storage, service };
}

if (require.main === module) {
  buildApp().app.synth();
}
