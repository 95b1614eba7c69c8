import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';

/**
 * SDK clients built once and passed in (docs/contributing.md, where code goes). The only AWS-aware code that knows about local mode:
 * with an endpoint override (DynamoDB Local, s3rver) S3 needs path-style addressing and checksums only when
 * required, because s3rver stores aws-chunked framing inside streamed objects otherwise. AWS keeps its defaults.
 */
export interface AwsClients {
  dynamodb: DynamoDBClient;
  documents: DynamoDBDocumentClient;
  s3: S3Client;
}

export function isLocalEndpoint(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL);
}

export function makeAwsClients(env: NodeJS.ProcessEnv = process.env): AwsClients {
  // No call may hang a sync forever: connect and per-request timeouts (a sync holds a lease while it waits).
  const requestHandler = { connectionTimeout: 5_000, requestTimeout: 60_000 };
  const dynamodb = new DynamoDBClient({ requestHandler });
  const documents = DynamoDBDocumentClient.from(dynamodb, {
    marshallOptions: { removeUndefinedValues: true },
  });
  // No `Expect: 100-continue` on uploads of 2 MB and more (the SDK's default): the SDK sends each such request on a
  // new connection of its own (no keep-alive; in AWS a TCP and TLS handshake) and waits a round trip for the
  // server's go-ahead before the body. It spares sending a body the server would refuse, which for our own bucket
  // and credentials is the rare failure, not the rule.
  const s3Options = { requestHandler, expectContinueHeader: false as const };
  const s3 = new S3Client(
    isLocalEndpoint(env)
      ? {
          ...s3Options,
          forcePathStyle: true,
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        }
      : s3Options,
  );
  return { dynamodb, documents, s3 };
}
