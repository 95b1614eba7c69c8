import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  NotFound,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { StorageError, TributaryError } from '../../core/errors';
import { collect } from '../../core/pipeline';
import type { Bytes, RawMailStore } from '../../core/ports';

/** Bodies up to this size that are already in memory are sent in a single PutObject. */
const SINGLE_PUT_BYTES = 16 * 1024 * 1024;

/**
 * Raw messages in S3, streamed: lib-storage sends one PutObject for a small message and a multipart upload for a
 * big one, holding at most partSize x queueSize in memory whatever the message size.
 */
export class S3RawMailStore implements RawMailStore {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
    private readonly options: { partSize?: number; queueSize?: number } = {},
  ) {}

  async put(key: string, body: Bytes, info: { sha256?: string; size?: number }): Promise<void> {
    try {
      // A body known to be in memory and small enough goes in one PutObject (a multipart upload of a 10 MB message
      // is five requests); the bytes are read through `body` all the same, so the caller's hashing still sees them.
      if (info.size !== undefined && info.size <= SINGLE_PUT_BYTES) {
        const bytes = await collect(body);
        const command = new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: bytes,
          ContentLength: bytes.length,
          ContentType: 'message/rfc822',
          Metadata: info.sha256 ? { sha256: info.sha256 } : undefined,
          // S3 checks the body against the hash we computed while reading it from the server, end to end.
          ChecksumSHA256: info.sha256 ? Buffer.from(info.sha256, 'hex').toString('base64') : undefined,
        });
        if (info.sha256) signWithKnownHash(command, info.sha256);
        await this.s3.send(command);
        return;
      }
      await new Upload({
        client: this.s3,
        params: {
          Bucket: this.bucket,
          Key: key,
          Body: Readable.from(body, { objectMode: false }),
          ContentType: 'message/rfc822',
          Metadata: info.sha256 ? { sha256: info.sha256 } : undefined,
        },
        partSize: this.options.partSize ?? 5 * 1024 * 1024,
        queueSize: this.options.queueSize ?? 2,
        leavePartsOnError: false,
      }).done();
    } catch (err) {
      // An error from the body stream (the upstream connection, the time budget) is not a storage failure.
      if (err instanceof TributaryError || !(err instanceof Error && '$metadata' in err)) throw err;
      throw new StorageError(`could not store ${key} in bucket ${this.bucket}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  async get(key: string): Promise<Bytes> {
    const out = await this.send(`read ${key}`, () =>
      this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })),
    );
    if (!out.Body) throw new StorageError(`object ${key} has no body`);
    return storageErrors(out.Body as Readable, `read ${key}`, this.bucket);
  }

  async head(key: string): Promise<{ size: number; sha256?: string } | undefined> {
    try {
      const out = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: Number(out.ContentLength), sha256: out.Metadata?.sha256 };
    } catch (err) {
      if (err instanceof NotFound || (err as { name?: string }).name === 'NotFound') return undefined;
      throw asStorageError(err, `look up ${key}`, this.bucket);
    }
  }

  async delete(key: string): Promise<void> {
    await this.send(`delete ${key}`, () =>
      this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })),
    );
  }

  /** An S3 failure is a StorageError (typed, retryable) for the run status, not an INTERNAL one. */
  private async send<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw asStorageError(err, what, this.bucket);
    }
  }
}

function asStorageError(err: unknown, what: string, bucket: string): Error {
  if (err instanceof TributaryError) return err;
  return new StorageError(`could not ${what} in bucket ${bucket}: ${(err as Error).message}`, { cause: err });
}

/** The body of a GetObject, whose stream may fail half way (a reset connection): that too is a storage failure. */
async function* storageErrors(body: Readable, what: string, bucket: string): Bytes {
  try {
    for await (const chunk of body) yield chunk as Uint8Array;
  } catch (err) {
    throw asStorageError(err, what, bucket);
  }
}

/**
 * SigV4 signs a hash of the payload; the signer hashes the body itself unless the request already carries
 * `x-amz-content-sha256`. We know that hash (the caller computed it while reading the message), so we set it.
 */
function signWithKnownHash(command: PutObjectCommand, sha256Hex: string): void {
  command.middlewareStack.add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> } | undefined;
      if (request?.headers) request.headers['x-amz-content-sha256'] = sha256Hex;
      return next(args);
    },
    { step: 'build', name: 'tributaryKnownPayloadHash' },
  );
}
