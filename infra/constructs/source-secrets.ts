import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

export interface SourceSecretsProps {
  /** The SSM path every source password lives under, e.g. `/tributary/TributaryService/sources/`. */
  readonly prefix: string;
}

/**
 * The sources' passwords: SSM SecureString parameters under one path, put there by the owner
 * (`aws ssm put-parameter --type SecureString`, docs/deploy.md), never by CloudFormation, so no password ever
 * appears in a template. This construct creates nothing; it names the path and grants reading it.
 */
export class SourceSecrets extends Construct {
  readonly prefix: string;

  constructor(scope: Construct, id: string, props: SourceSecretsProps) {
    super(scope, id);
    if (!/^\/[A-Za-z0-9_.\-/]+\/$/.test(props.prefix) || props.prefix.includes('//'))
      throw new Error(`secrets prefix ${props.prefix}: an SSM path starting and ending with "/"`);
    this.prefix = props.prefix;
  }

  /** `arn:...:parameter/<prefix>*`: every parameter under the prefix, whatever the sources are called. */
  get parameterArnPattern(): string {
    return Stack.of(this).formatArn({
      service: 'ssm',
      resource: 'parameter',
      resourceName: `${this.prefix.slice(1)}*`,
    });
  }

  /**
   * Read (and decrypt) the passwords under the prefix: ssm:GetParameter on the path, and kms:Decrypt only when
   * SSM asks for it on the caller's behalf (the AWS managed key `alias/aws/ssm` is used by SecureString
   * parameters; its key policy already admits callers of this account through SSM, the statement says the same
   * thing from the role's side and covers a customer managed key whose policy delegates to IAM).
   */
  grantRead(grantee: iam.IGrantable): iam.Grant {
    const stack = Stack.of(this);
    const parameters = iam.Grant.addToPrincipal({
      grantee,
      actions: ['ssm:GetParameter'],
      resourceArns: [this.parameterArnPattern],
    });
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['kms:Decrypt'],
      resourceArns: [stack.formatArn({ service: 'kms', resource: 'key', resourceName: '*' })],
      conditions: {
        StringEquals: {
          'kms:ViaService': `ssm.${stack.region}.amazonaws.com`,
          'kms:CallerAccount': stack.account,
        },
      },
    });
    return parameters;
  }
}
