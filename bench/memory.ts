import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoMessageIndex } from '../functions/adapters/dynamodb/message-index';
import type { TestUser } from '../test/support/mail-lab';
import type { Lab } from './lib/lab';
import { measure } from './lib/measure';
import type { Command } from './lib/types';

/**
 * Memory (issue #6): peak RSS of `tributary sync` of a mailbox holding one 50 MB message, over IMAPS or POP3S,
 * beside the same command over an empty mailbox (what the process costs before any message), so the message's
 * own cost shows. A second pass runs the same sync with a sampler preloaded (`--require`) that reads
 * process.memoryUsage() every few milliseconds, to say where the peak is: V8 heap, buffers outside it, or code.
 */

export const MEMORY_TARGET_MB = 200;
export const BIG_MESSAGE_BYTES = 50 * 1024 * 1024;

/** process.memoryUsage() at the sample with the highest RSS, in MB. */
export interface MemoryBreakdown {
  rssMb: number;
  heapTotalMb: number;
  heapUsedMb: number;
  externalMb: number;
  arrayBuffersMb: number;
  samples: number;
}

export interface MemoryRun {
  peakRssMb: number;
  wallMs: number;
  cpuMs: number;
}

export interface MemoryFigures {
  protocol: 'imap' | 'pop3';
  messageBytes: number;
  /** The sync of the one big message (fresh store each run); `peakRssMb` is the largest of the runs. */
  runs: MemoryRun[];
  peakRssMb: number;
  /** The same command over an empty mailbox. */
  baselinePeakRssMb: number;
  /** peakRssMb - baselinePeakRssMb: what holding and storing the message costs. */
  messageCostMb: number;
  /** From the sampled run: where the memory is at its peak. */
  atPeak: MemoryBreakdown;
  baselineAtPeak: MemoryBreakdown;
  targetMb: number;
  meetsTarget: boolean;
}

/** Deterministic pseudo-random bytes (AES-128-CTR over zeros, fixed key): an attachment that does not compress. */
function pseudoRandom(bytes: number, seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16));
  return Buffer.concat([cipher.update(Buffer.alloc(bytes)), cipher.final()]);
}

/**
 * A realistic 50 MB message: headers, a short text/plain part, and a PDF-like attachment in base64 with 76
 * character lines, every line ending CRLF, sized so the whole is `total` bytes. Deterministic.
 */
export function bigMessage(total = BIG_MESSAGE_BYTES): Buffer {
  const boundary = '=_tributary_bench_mem_0001';
  const head = [
    'Return-Path: <ann.lee@example.com>',
    'Received: from mail.example.com (mail.example.com [192.0.2.10])',
    '\tby mx.example.net with ESMTPS id 4Xk2sQ1Lz8z9vB',
    '\tfor <bench@example.net>; Thu, 19 Nov 2026 09:14:03 +0000',
    'Message-ID: <bench-mem-50mb@example.com>',
    'Date: Thu, 19 Nov 2026 09:14:00 +0000',
    'From: Ann Lee <ann.lee@example.com>',
    'To: Bench <bench@example.net>',
    'Subject: The scanned archive (50 MB)',
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    'This is a multi-part message in MIME format.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 7bit',
    '',
    'Hello,',
    '',
    'here is the scanned archive we talked about. It is big, sorry.',
    '',
    'Ann',
    '',
    `--${boundary}`,
    'Content-Type: application/pdf; name="archive-scan.pdf"',
    'Content-Disposition: attachment; filename="archive-scan.pdf"',
    'Content-Transfer-Encoding: base64',
    '',
    '',
  ].join('\r\n');
  const tail = `\r\n--${boundary}--\r\n`;
  // base64 of n bytes in 76-character lines with CRLF: 4 * ceil(n / 3) characters plus 2 per line.
  const encodedSize = (n: number) => {
    const chars = 4 * Math.ceil(n / 3);
    return chars + 2 * Math.ceil(chars / 76);
  };
  const room = total - Buffer.byteLength(head) - Buffer.byteLength(tail);
  let raw = Math.floor(room * 0.7);
  while (encodedSize(raw + 57) <= room) raw += 57; // whole lines of 57 raw bytes
  while (encodedSize(raw + 1) <= room) raw++;
  const b64 = pseudoRandom(raw, 'tributary-bench-mem').toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  const body = lines.join('\r\n') + '\r\n';
  // Pad the text part's last line so the total is exact (the base64 lines stay 76 characters).
  const short = room - Buffer.byteLength(body);
  const padded = head.replace('Ann\r\n', `Ann${' '.repeat(Math.max(0, short))}\r\n`);
  return Buffer.concat([Buffer.from(padded), Buffer.from(body), Buffer.from(tail)]);
}

/** Preloaded with --require: samples process.memoryUsage() and writes the sample of highest RSS at exit. */
const SAMPLER = `
const fs = require('node:fs');
const out = process.env.BENCH_MEM_SAMPLES;
let peak = { rss: 0 }, samples = 0;
const take = () => { samples++; const m = process.memoryUsage(); if (m.rss > peak.rss) peak = m; };
setInterval(take, 5).unref();
process.on('exit', () => { take(); fs.writeFileSync(out, JSON.stringify({ ...peak, samples })); });
`;

const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** Adds the sampler to `command`; after the run, `read()` gives the sample of highest RSS. */
function withSampler(
  command: Command,
  lab: Lab,
  name: string,
): { command: Command; read(): MemoryBreakdown } {
  const sampler = path.join(lab.dir, 'memory-sampler.cjs');
  fs.writeFileSync(sampler, SAMPLER);
  const file = path.join(lab.dir, `memory-${name}.json`);
  return {
    command: {
      ...command,
      args: ['--require', sampler, ...command.args],
      env: { ...command.env, BENCH_MEM_SAMPLES: file },
    },
    read() {
      const s = JSON.parse(fs.readFileSync(file, 'utf8')) as NodeJS.MemoryUsage & { samples: number };
      return {
        rssMb: mb(s.rss),
        heapTotalMb: mb(s.heapTotal),
        heapUsedMb: mb(s.heapUsed),
        externalMb: mb(s.external),
        arrayBuffersMb: mb(s.arrayBuffers),
        samples: s.samples,
      };
    },
  };
}

export async function benchMemory(
  lab: Lab,
  protocol: 'imap' | 'pop3',
  options: {
    runs?: number;
    /** Size of the one message, 50 MB by default (other sizes show whether the peak follows the size). */
    messageBytes?: number;
    /** Node flags put before the bundle, e.g. ['--max-semi-space-size=1']. */
    nodeFlags?: string[];
    log?: (line: string) => void;
  } = {},
): Promise<MemoryFigures> {
  const runs = options.runs ?? 3;
  const log = options.log ?? (() => undefined);
  const message = bigMessage(options.messageBytes ?? BIG_MESSAGE_BYTES);
  const sha256 = createHash('sha256').update(message).digest('hex');
  const full = lab.mail.createUser('mem');
  lab.mail.deliver(full, message);
  const empty = lab.mail.createUser('mem0');
  const sdk = {
    region: lab.aws.env.AWS_REGION,
    credentials: {
      accessKeyId: lab.aws.env.AWS_ACCESS_KEY_ID!,
      secretAccessKey: lab.aws.env.AWS_SECRET_ACCESS_KEY!,
    },
  };
  const s3 = new S3Client({ ...sdk, endpoint: lab.aws.s3Endpoint, forcePathStyle: true });
  const ddb = DynamoDBDocumentClient.from(new DynamoDBClient({ ...sdk, endpoint: lab.aws.dynamodbEndpoint }));

  /** One sync of `user` into a fresh store; checks what it stored; `sample` adds the memoryUsage sampler. */
  const sync = async (user: TestUser, expected: number, sample?: string) => {
    const store = await lab.freshStore(`mem-${protocol}`);
    try {
      const configFile = path.join(lab.dir, `memory-${protocol}.config.json`);
      fs.writeFileSync(
        configFile,
        JSON.stringify({
          store: { mode: 'aws', table: store.table, bucket: store.bucket, region: 'us-east-1' },
          sources: [
            {
              id: 'mem',
              protocol,
              host: lab.dovecot.host,
              port: protocol === 'imap' ? lab.dovecot.ports.imaps : lab.dovecot.ports.pop3s,
              tls: 'implicit',
              caFile: lab.dovecot.caFile,
              servername: 'localhost',
              user: user.name,
              secret: { env: 'BENCH_MEM_PASSWORD' },
            },
          ],
        }),
      );
      const command = lab.tributary(['sync', '--json', '--config', configFile], {
        ...store.env,
        BENCH_MEM_PASSWORD: user.password,
      });
      command.args.unshift(...(options.nodeFlags ?? []));
      const sampler = sample ? withSampler(command, lab, `${protocol}-${sample}`) : undefined;
      const m = await measure(sampler?.command ?? command);
      if (m.exitCode !== 0) throw new Error(`tributary sync exited ${m.exitCode}: ${m.stderr.slice(-2000)}`);
      const report = (JSON.parse(m.stdout) as { sources: Array<{ outcome: string; fetched: number }> })
        .sources[0];
      if (report?.fetched !== expected)
        throw new Error(
          `tributary sync fetched ${report?.fetched}, not ${expected}: ${m.stdout.slice(-2000)}`,
        );
      // What was stored: the S3 object's size, and the index record's size and sha256 (the exact bytes).
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: store.bucket }));
      const objects = listed.Contents ?? [];
      const records = [];
      for await (const r of new DynamoMessageIndex(ddb, store.table).sourceMessages('mem')) records.push(r);
      if (objects.length !== expected || records.length !== expected)
        throw new Error(`stored ${objects.length} objects and ${records.length} records, not ${expected}`);
      if (expected) {
        const [object] = objects;
        const [record] = records;
        if (object?.Size !== message.length || record?.object.size !== message.length)
          throw new Error(
            `stored ${object?.Size} bytes (record: ${record?.object.size}), not ${message.length}`,
          );
        if (record.object.sha256 !== sha256) throw new Error('the stored copy is not the delivered message');
      }
      return { m, breakdown: sampler?.read() };
    } finally {
      await store.drop();
    }
  };

  try {
    log(`memory ${protocol}: baseline (empty mailbox)`);
    const baseline = (await sync(empty, 0)).m;
    const measured: MemoryRun[] = [];
    for (let i = 0; i < runs; i++) {
      log(`memory ${protocol}: one ${mb(message.length)} MB message, run ${i + 1}/${runs}`);
      const m = (await sync(full, 1)).m;
      measured.push({
        peakRssMb: mb(m.peakRssKb * 1024),
        wallMs: Math.round(m.wallMs),
        cpuMs: Math.round(m.userMs + m.sysMs),
      });
    }
    log(`memory ${protocol}: sampled runs`);
    const baselineAtPeak = (await sync(empty, 0, 'empty')).breakdown!;
    const atPeak = (await sync(full, 1, 'full')).breakdown!;
    const peakRssMb = Math.max(...measured.map((r) => r.peakRssMb));
    const baselinePeakRssMb = mb(baseline.peakRssKb * 1024);
    return {
      protocol,
      messageBytes: message.length,
      runs: measured,
      peakRssMb,
      baselinePeakRssMb,
      messageCostMb: Math.round((peakRssMb - baselinePeakRssMb) * 10) / 10,
      atPeak,
      baselineAtPeak,
      targetMb: MEMORY_TARGET_MB,
      meetsTarget: peakRssMb <= MEMORY_TARGET_MB,
    };
  } finally {
    s3.destroy();
    ddb.destroy();
  }
}
