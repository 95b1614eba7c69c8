import path from 'node:path';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { PAGE_ASSETS_DIR } from '../../functions/web/page-assets';

/** The Lambda entry points, one file each under functions/handlers/, each exporting `handler`. */
export type HandlerName = 'dispatch' | 'sync' | 'api';

const HANDLERS_DIR = path.resolve(__dirname, '../../functions/handlers');

/** The service name and metrics namespace of every Tributary function (Powertools reads them). */
export const POWERTOOLS_SERVICE_NAME = 'tributary';
export const POWERTOOLS_METRICS_NAMESPACE = 'Tributary';

export interface MailFunctionProps {
  /** Which handler: bundles `functions/handlers/<handler>.ts`, export `handler`. */
  readonly handler: HandlerName;
  /** Shown in the console. */
  readonly description: string;
  /**
   * Memory in MB; Lambda gives CPU in proportion (1,769 MB = 1 vCPU).
   * @default 256
   */
  readonly memorySize?: number;
  /**
   * @default Duration.seconds(30)
   */
  readonly timeout?: Duration;
  /**
   * How long the function's log group keeps its logs.
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Environment beyond what every function gets (POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE,
   * NODE_OPTIONS=--enable-source-maps).
   * @default - none
   */
  readonly environment?: Record<string, string>;
  /**
   * What Lambda does when it detects a Lambda -> SQS -> Lambda loop (more than 16 hops in one chain).
   * @default lambda.RecursiveLoop.TERMINATE
   */
  readonly recursiveLoop?: lambda.RecursiveLoop;
  /**
   * Carry the web page, built, in a `page-assets` folder beside the handler (the API function serves it).
   * @default false
   */
  readonly pageAssets?: boolean;
}

const WRITE_PAGE_ASSETS = path.join(__dirname, '..', '..', 'scripts', 'write-page-assets.ts');

/**
 * One Tributary Lambda: the handler bundled by the local esbuild (no Docker), minified with source maps, Node.js 22
 * on ARM64 (Graviton: about 20% cheaper per GB-second than x86 for the same work), its own log group with a
 * retention, and its own role that may write to that log group and nothing else until the stack grants more by
 * intent (MailStore.grantReadWriteMail and the like). No AWS managed policy: AWSLambdaBasicExecutionRole would let
 * it create log groups anywhere.
 */
export class MailFunction extends Construct implements iam.IGrantable {
  readonly function: nodejs.NodejsFunction;
  readonly logGroup: logs.LogGroup;
  readonly role: iam.Role;
  readonly grantPrincipal: iam.IPrincipal;

  constructor(scope: Construct, id: string, props: MailFunctionProps) {
    super(scope, id);
    // The service stack is stateless: logs go with it (they are bounded by the retention anyway); mail, sync state
    // and the audit trail live in the retained store.
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Tributary ${props.handler} function`,
    });
    this.logGroup.grantWrite(this.role);
    this.function = new nodejs.NodejsFunction(this, 'Function', {
      entry: path.join(HANDLERS_DIR, `${props.handler}.ts`),
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout ?? Duration.seconds(30),
      role: this.role,
      logGroup: this.logGroup,
      recursiveLoop: props.recursiveLoop ?? lambda.RecursiveLoop.TERMINATE,
      environment: {
        POWERTOOLS_SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE,
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        forceDockerBundling: false,
        minify: true,
        sourceMap: true,
        // Stack traces map to file:line without shipping the sources themselves.
        sourcesContent: false,
        target: 'node22',
        // The SDK version the tests ran against, not whatever the runtime carries: the S3 adapter depends on its
        // checksum behaviour (docs/benchmarks.md: the sha256 sent with each PutObject).
        bundleAwsSDK: true,
        ...(props.pageAssets
          ? {
              // The page is built by esbuild at bundling time; the handler only reads the result, so esbuild (which
              // page-assets.ts imports lazily for local builds) stays out of the bundle.
              externalModules: ['esbuild'],
              commandHooks: {
                beforeBundling: () => [],
                beforeInstall: () => [],
                afterBundling: (_inputDir: string, outputDir: string) => [
                  `npx tsx "${WRITE_PAGE_ASSETS}" "${path.join(outputDir, PAGE_ASSETS_DIR)}"`,
                ],
              },
            }
          : {}),
      },
    });
    this.grantPrincipal = this.role;
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions::AwsSolutions-L1',
      reason:
        'nodejs22.x is the runtime the code is built for and tested on (README: Node.js 20.11 or newer, the ' +
        'Lambda runtime nodejs22.x); moving to nodejs24.x is a change of its own, with the test matrix, not a ' +
        'side effect of a CDK upgrade. Node.js 22 is in long-term support until April 2027.',
    });
  }
}
