/** What the harness's private mail servers share (test/support/dovecot.ts, test/support/courier.ts). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { startChild, waitForPort } from '../../functions/local/processes';

const run = promisify(execFile);

/**
 * A CA (`ca.pem`, `ca.key`, CN=`caName`) and a server certificate it signed (`cert.pem`, `key.pem` mode 0600) for
 * CN=localhost, SAN DNS:localhost + IP:127.0.0.1, both valid ten years, in `tlsDir`. `rsa` keys are RSA 2048;
 * `ec` keys are P-256, so the whole costs tens of milliseconds.
 */
export async function makeCertificates(
  tlsDir: string,
  options: { key: 'rsa' | 'ec'; caName: string },
): Promise<void> {
  fs.mkdirSync(tlsDir, { recursive: true });
  const p = (f: string) => path.join(tlsDir, f);
  // keyEncipherment is RSA key transport: an EC key only signs.
  const keyUsage = options.key === 'rsa' ? 'digitalSignature,keyEncipherment' : 'digitalSignature';
  fs.writeFileSync(
    p('server.ext'),
    `basicConstraints=CA:FALSE\nkeyUsage=${keyUsage}\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n`,
  );
  const newKey =
    options.key === 'rsa'
      ? ['-newkey', 'rsa:2048', '-nodes']
      : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const openssl = (...args: string[]) => run('openssl', args);
  await openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.pem'),
    '-days',
    '3650',
    '-subj',
    `/CN=${options.caName}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  await openssl('req', ...newKey, '-keyout', p('key.pem'), '-out', p('server.csr'), '-subj', '/CN=localhost');
  await openssl(
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.pem'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-out',
    p('cert.pem'),
    '-days',
    '3650',
    '-extfile',
    p('server.ext'),
  );
  fs.chmodSync(p('key.pem'), 0o600);
}

/**
 * Starts a server's process as a group of its own (startChild), its stdout and stderr appended to `outputFile`,
 * and waits until every one of `ports` accepts a connection. If the process exits first, fails with `name`, how it
 * exited, its last lines of output and where to look (`logs`). `exited` says the same once it has exited.
 */
export async function startServerProcess(
  command: string,
  args: string[],
  options: { name: string; outputFile: string; logs: string; ports: number[] },
): Promise<{ child: ChildProcess; exited: () => string | undefined }> {
  const out = fs.openSync(options.outputFile, 'a');
  const child: ChildProcess = startChild(command, args, { stdio: ['ignore', out, out], group: true });
  fs.closeSync(out);
  let exitReason: string | undefined;
  child.once('exit', (code, signal) => {
    const said = fs.readFileSync(options.outputFile, 'utf8').trim().split('\n').slice(-5).join('\n');
    exitReason = `${options.name} exited early (code ${code}, signal ${signal}): ${said}; see ${options.logs}`;
  });
  const exited = () => exitReason;
  for (const port of options.ports) await waitForPort(port, 15000, exited);
  return { child, exited };
}
