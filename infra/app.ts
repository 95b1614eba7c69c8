import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { StorageStack } from './storage-stack';

/** Builds the whole app; the only place that reads CDK context on the infra side (docs/contributing.md, where code goes). */
export function buildApp(app: App = new App()): { app: App; storage: StorageStack } {
  const storage = new StorageStack(app, 'TributaryStorage', {
    description: 'Tributary: raw mail (S3) and the inbox index (DynamoDB). Retained on stack deletion.',
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, storage };
}

if (require.main === module) {
  buildApp().app.synth();
}
