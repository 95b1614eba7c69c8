import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3RawMailStore } from '../../../functions/adapters/s3/raw-mail-store';
import { makeAwsClients } from '../../../functions/shared/aws-clients';

/**
 * The SDK clients' settings that change what goes on the wire. An upload of 2 MB or more would carry
 * `Expect: 100-continue` by the SDK's default, which costs a new connection (no keep-alive) and a round trip of
 * waiting before the body: every big message paid a TCP (in AWS, also TLS) handshake and that wait.
 */

async function* bytesOf(buffer: Buffer): AsyncIterable<Uint8Array> {
  yield buffer;
}

describe('the S3 client', () => {
  const seen: Array<{ expect?: string; socket: number; bytes: number }> = [];
  const sockets = new Map<object, number>();
  let server: http.Server;
  let endpoint = '';

  beforeAll(async () => {
    // A stand-in that accepts any PUT, recording its headers and which connection carried it.
    server = http.createServer((req, res) => {
      if (!sockets.has(req.socket)) sockets.set(req.socket, sockets.size);
      let bytes = 0;
      req.on('data', (chunk: Buffer) => (bytes += chunk.length));
      req.on('end', () => {
        seen.push({ expect: req.headers.expect, socket: sockets.get(req.socket)!, bytes });
        res.writeHead(200, { ETag: '"0"' }).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('sends big messages without waiting for a go-ahead, on the connection it keeps', async () => {
    const env = {
      AWS_ENDPOINT_URL_S3: endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
    };
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      const { s3 } = makeAwsClients(env);
      const store = new S3RawMailStore(s3, 'bucket');
      const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
      for (const key of ['raw/s/1.eml', 'raw/s/2.eml'])
        await store.put(key, bytesOf(big), { size: big.length });
      s3.destroy();
    } finally {
      process.env = saved;
    }
    expect(seen.map((r) => r.bytes)).toEqual([3 * 1024 * 1024, 3 * 1024 * 1024]);
    expect(seen.map((r) => r.expect)).toEqual([undefined, undefined]);
    expect(seen[1]!.socket).toBe(seen[0]!.socket);
  });

  it('is set the same way for AWS itself', async () => {
    const { s3 } = makeAwsClients({});
    expect((s3.config as { expectContinueHeader?: unknown }).expectContinueHeader).toBe(false);
    s3.destroy();
  });
});
