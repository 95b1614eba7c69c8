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
  const s3 = new S3Client(
    isLocalEndpoint(env)
      ? {
          requestHandler,
          forcePathStyle: true,
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        }
      : { requestHandler },
  );
  return { dynamodb, documents, s3 };
}
