import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { startCourier } from './courier';
import { startDovecot } from './dovecot';
import { ensureTable, startLocalAws } from '../../functions/local/emulators';

/**
 * Starts the real servers once for all jest projects: a private Dovecot (IMAP, POP3, TLS, quota), a private
 * Courier (IMAP, POP3, TLS), DynamoDB Local and s3rver, all on 127.0.0.1. Workers are forked afterwards and
 * inherit the environment set here.
 */
export default async function globalSetup(): Promise<void> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tributary-test-'));
  fs.chmodSync(scratch, 0o755); // Dovecot's unprivileged processes read the users file and Maildirs under it
  const t0 = Date.now();
  // Courier runs in a private mount namespace, which takes root: without it its tests say why they are skipped.
  const courierNeedsRoot = process.getuid?.() !== 0;
  const [dovecot, aws, courier] = await Promise.all([
    startDovecot(path.join(scratch, 'dovecot')),
    startLocalAws({
      bucket: 'tributary-test-raw',
      s3Dir: path.join(scratch, 's3'),
      // Every test after it fails with ECONNREFUSED: say which server went and why, once, where CI shows it.
      onServerExit: (message) => process.stderr.write(`\n[harness] ${message}\n`),
    }),
    courierNeedsRoot ? undefined : startCourier(path.join(scratch, 'courier')),
  ]);
  const globals = globalThis as { __TRIBUTARY_HARNESS__?: unknown };
  globals.__TRIBUTARY_HARNESS__ = {
    scratch,
    stops: [dovecot.stop, aws.stop, ...(courier ? [courier.stop] : [])],
  };
  Object.assign(process.env, aws.env, {
    TRIBUTARY_TEST_DOVECOT: JSON.stringify(dovecot.info),
    TRIBUTARY_TEST_COURIER: JSON.stringify(
      courier?.info ?? { unavailable: 'the Courier harness needs root (a private mount namespace)' },
    ),
    TRIBUTARY_TEST_TABLE: 'tributary-test',
    TRIBUTARY_TEST_BUCKET: aws.bucket,
    TRIBUTARY_TEST_SCRATCH: scratch,
  });
  const client = new DynamoDBClient({});
  await ensureTable(client, 'tributary-test');
  client.destroy();
  process.stderr.write(
    `\n[harness] Dovecot, ${courier ? 'Courier, ' : ''}DynamoDB Local and s3rver ready in ${Date.now() - t0} ms\n`,
  );
}
