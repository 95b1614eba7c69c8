import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { mockClient } from 'aws-sdk-client-mock';
import { resolveStore, STACK_OUTPUTS } from '../../../functions/shared/deployment';

const cfn = mockClient(CloudFormationClient);
afterEach(() => cfn.reset());
afterAll(() => cfn.restore());

const outputs = (o: Record<string, string>) => ({
  Stacks: [
    {
      StackName: 'TributaryService',
      CreationTime: new Date(),
      StackStatus: 'CREATE_COMPLETE' as const,
      Outputs: Object.entries(o).map(([OutputKey, OutputValue]) => ({ OutputKey, OutputValue })),
    },
  ],
});

describe('finding a deployed store', () => {
  it("reads the table, bucket and secrets path from the stack's outputs; values in the config win", async () => {
    cfn
      .on(DescribeStacksCommand, { StackName: 'TributaryService' })
      .resolves(outputs({ TableName: 't1', BucketName: 'b1', SecretsPrefix: '/p/' }));
    await expect(
      resolveStore({ mode: 'aws', stack: 'TributaryService', region: 'eu-west-1' }),
    ).resolves.toEqual({
      mode: 'aws',
      region: 'eu-west-1',
      table: 't1',
      bucket: 'b1',
      deployment: { stack: 'TributaryService', secretsPrefix: '/p/' },
    });
    await expect(
      resolveStore({ mode: 'aws', stack: 'TributaryService', bucket: 'mine' }),
    ).resolves.toMatchObject({
      table: 't1',
      bucket: 'mine',
    });
  });

  it('does not call CloudFormation when everything is given, nor for a bare store', async () => {
    await expect(
      resolveStore({ mode: 'aws', stack: 'S', table: 't', bucket: 'b', secretsPrefix: '/x/' }),
    ).resolves.toMatchObject({ deployment: { stack: 'S', secretsPrefix: '/x/' } });
    await expect(resolveStore({ mode: 'aws', table: 't', bucket: 'b' })).resolves.toEqual({
      mode: 'aws',
      region: undefined,
      table: 't',
      bucket: 'b',
    });
    expect(cfn.commandCalls(DescribeStacksCommand)).toHaveLength(0);
  });

  it('says which stack is missing, which output is missing, and when the call itself fails', async () => {
    cfn
      .on(DescribeStacksCommand)
      .rejects(Object.assign(new Error('Stack with id Nope does not exist'), { name: 'ValidationError' }));
    await expect(resolveStore({ mode: 'aws', stack: 'Nope' })).rejects.toThrow(
      /no stack "Nope" in the default region: deploy it/,
    );
    cfn.reset();
    cfn.on(DescribeStacksCommand).resolves(outputs({ TableName: 't', BucketName: 'b' }));
    await expect(resolveStore({ mode: 'aws', stack: 'TributaryService' })).rejects.toThrow(
      `has no output ${STACK_OUTPUTS.secretsPrefix}`,
    );
    cfn.reset();
    cfn.on(DescribeStacksCommand).rejects(
      Object.assign(new Error('The security token included in the request is invalid'), {
        name: 'UnrecognizedClientException',
      }),
    );
    await expect(resolveStore({ mode: 'aws', stack: 'TributaryService' })).rejects.toThrow(
      /cannot read the outputs of the stack "TributaryService" \(UnrecognizedClientException.*check your AWS credentials/,
    );
  });
});
