import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  ConditionalCheckFailedException,
  DescribeTableCommand,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, QueryCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { makeAwsClients } from '../../../functions/shared/aws-clients';

const TableName = process.env.TRIBUTARY_TEST_TABLE!;
const Bucket = process.env.TRIBUTARY_TEST_BUCKET!;
const aws = makeAwsClients();
const run = randomBytes(4).toString('hex');

afterAll(() => {
  aws.dynamodb.destroy();
  aws.s3.destroy();
});

describe('DynamoDB Local', () => {
  it('has the table with its GSIs', async () => {
    const { Table } = await aws.dynamodb.send(new DescribeTableCommand({ TableName }));
    expect(Table?.GlobalSecondaryIndexes?.map((i) => i.IndexName).sort()).toEqual(['GSI1', 'GSI2', 'GSI3']);
  });

  it('refuses a second conditional put of the same key', async () => {
    const Item = { PK: `T#${run}`, SK: 'once', GSI1PK: `T#${run}`, GSI1SK: '2026-11-26' };
    const put = () =>
      aws.documents.send(
        new PutCommand({ TableName, Item, ConditionExpression: 'attribute_not_exists(PK)' }),
      );
    await put();
    await expect(put()).rejects.toBeInstanceOf(ConditionalCheckFailedException);
    const viaIndex = await aws.documents.send(
      new QueryCommand({
        TableName,
        IndexName: 'GSI1',
        KeyConditionExpression: 'GSI1PK = :p',
        ExpressionAttributeValues: { ':p': `T#${run}` },
      }),
    );
    expect(viaIndex.Items).toHaveLength(1);
  });

  it('commits a transaction whole or not at all', async () => {
    const counterKey = { PK: `T#${run}`, SK: 'counter' };
    const tx = (sk: string) =>
      aws.documents.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName,
                Item: { PK: `T#${run}`, SK: sk },
                ConditionExpression: 'attribute_not_exists(PK)',
              },
            },
            {
              Update: {
                TableName,
                Key: counterKey,
                UpdateExpression: 'ADD messages :one',
                ExpressionAttributeValues: { ':one': 1 },
              },
            },
          ],
        }),
      );
    await tx('m1');
    await expect(tx('m1')).rejects.toBeInstanceOf(TransactionCanceledException);
    const { Item } = await aws.documents.send(
      new GetCommand({ TableName, Key: counterKey, ConsistentRead: true }),
    );
    expect(Item?.messages).toBe(1);
  });
});

describe('the S3 server', () => {
  it('stores a 20 MB streamed multipart upload byte for byte', async () => {
    const size = 20 * 1024 * 1024;
    const data = randomBytes(size);
    const chunks = function* () {
      for (let o = 0; o < size; o += 64 * 1024) yield data.subarray(o, o + 64 * 1024);
    };
    const Key = `harness/${run}/big.bin`;
    const upload = new Upload({
      client: aws.s3,
      params: { Bucket, Key, Body: Readable.from(chunks()) },
      partSize: 5 * 1024 * 1024,
      queueSize: 2,
    });
    const parts: number[] = [];
    upload.on('httpUploadProgress', (p) => p.part && parts.push(p.part));
    await upload.done();
    expect(new Set(parts).size).toBeGreaterThan(1);
    const got = await aws.s3.send(new GetObjectCommand({ Bucket, Key }));
    const hash = createHash('sha256');
    let length = 0;
    for await (const chunk of got.Body as Readable) {
      hash.update(chunk as Buffer);
      length += (chunk as Buffer).length;
    }
    expect(length).toBe(size);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

describe('the stand-ins to a web page', () => {
  // They accept any credentials, so a page the tester visits must not be able to use them: a browser sends a
  // cross-origin request with these headers only after a preflight, and reads an answer only with an
  // Access-Control-Allow-Origin that names its origin (or *). Neither stand-in gives one.
  it.each([
    ['DynamoDB Local', () => process.env.AWS_ENDPOINT_URL_DYNAMODB!],
    ['the S3 server', () => `${process.env.AWS_ENDPOINT_URL_S3!}/${Bucket}`],
  ])('%s allows no other origin', async (_name, endpoint) => {
    const preflight = await fetch(endpoint(), {
      method: 'OPTIONS',
      headers: {
        Origin: 'http://page.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type,x-amz-target,authorization',
      },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const simple = await fetch(endpoint(), { headers: { Origin: 'http://page.example' } });
    expect(simple.headers.get('access-control-allow-origin')).toBeNull();
  });
});
