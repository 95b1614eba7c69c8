import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, parseConfig } from '../../../functions/shared/config';

const imap = {
  id: 'work',
  protocol: 'imap',
  host: 'imap.example.com',
  user: 'ann',
  secret: { env: 'WORK_PASS' },
};

describe('parseConfig', () => {
  it('fills the defaults a user expects', () => {
    const c = parseConfig(
      { sources: [imap, { ...imap, id: 'isp', protocol: 'pop3', tls: 'starttls' }] },
      '/x/tributary.config.json',
    );
    expect(c.store).toEqual({ mode: 'local', dataDir: '/x/.tributary' });
    expect(c.sources[0]).toMatchObject({
      port: 993,
      tls: 'implicit',
      folders: ['INBOX'],
      pollMinutes: 5,
      enabled: true,
      retention: { mode: 'keep' },
    });
    expect(c.sources[1]).toMatchObject({ port: 110, tls: 'starttls', folders: [] });
  });

  it.each([
    [
      { sources: [{ ...imap, tls: 'none' }] },
      /sources\[0\] \(id "work"\)\.tls: "none" sends the password in clear/,
    ],
    [{ sources: [{ ...imap, password: 'hunter2' }] }, /passwords never go in the config file/],
    [{ sources: [{ ...imap, protocol: 'smtp' }] }, /protocol: must be "imap" or "pop3"/],
    [{ sources: [{ ...imap, id: 'Work Mail' }] }, /id: must be a slug/],
    [{ sources: [imap, imap] }, /"work" is used twice/],
    [{ sources: [{ ...imap, port: 99999 }] }, /port/],
    [{ sources: [{ ...imap, secret: 'hunter2' }] }, /secret: must be \{"env": "VARIABLE"\}/],
    [{ sources: [{ ...imap, protocol: 'pop3', folders: ['INBOX'] }] }, /POP3 has no folders/],
    [{ sources: [{ ...imap, retention: { mode: 'delete-after-days' } }] }, /retention/],
    [{ store: { mode: 'aws', table: 't' } }, /store\.bucket/],
    [{ sources: [{ ...imap, hots: 'x' }] }, /unknown field "hots": check the spelling/],
    [{ sources: [{ ...imap, retention: { mode: 'delete-after-days', days: 0 } }] }, /retention\.days/],
    [{ sources: [{ ...imap, inboxQuota: { maxBytes: 1 } }] }, /inboxQuota\.onExceed: must be "pause"/],
    [
      { sources: [{ ...imap, inboxQuota: { onExceed: 'pause' } }] },
      /inboxQuota: needs "maxBytes", "maxMessages" or both/,
    ],
    [
      {
        sources: [
          {
            ...imap,
            retention: { mode: 'delete-on-retrieve' },
            inboxQuota: { maxMessages: 5, onExceed: 'evict-oldest' },
          },
        ],
      },
      /inboxQuota\.onExceed: "evict-oldest" only removes copies that still exist upstream/,
    ],
    [
      { sources: [{ ...imap, upstreamQuota: { maxUsagePercent: 75, targetPercent: 90 } }] },
      /upstreamQuota: targetPercent must be below maxUsagePercent/,
    ],
    [
      { sources: [{ ...imap, upstreamQuota: { maxUsagePercent: 190, targetPercent: 75 } }] },
      /upstreamQuota\.maxUsagePercent/,
    ],
    [
      {
        sources: [{ ...imap, protocol: 'pop3', upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 } }],
      },
      /upstreamQuota\.capacityBytes: is required for POP3/,
    ],
    [
      {
        sources: [
          { ...imap, upstreamQuota: { maxUsagePercent: 90, targetPercent: 75, capacityBytes: 1000 } },
        ],
      },
      /upstreamQuota\.capacityBytes: is for POP3 only/,
    ],
  ])('refuses %j naming the field and the fix', (raw, message) => {
    expect(() => parseConfig(raw, 'tributary.config.json')).toThrow(message);
  });

  it('reads every policy', () => {
    const c = parseConfig(
      {
        sources: [
          {
            ...imap,
            retention: { mode: 'delete-after-days', days: 14 },
            upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
            inboxQuota: { maxBytes: 1e9, onExceed: 'evict-oldest' },
          },
          {
            ...imap,
            id: 'isp',
            protocol: 'pop3',
            retention: { mode: 'delete-on-retrieve' },
            upstreamQuota: { maxUsagePercent: 90, targetPercent: 75, capacityBytes: 1e8 },
            inboxQuota: { maxMessages: 1000, onExceed: 'pause' },
          },
        ],
      },
      'c.json',
    );
    expect(c.sources[0]).toMatchObject({
      retention: { mode: 'delete-after-days', days: 14 },
      upstreamQuota: { maxUsagePercent: 90, targetPercent: 75 },
      inboxQuota: { maxBytes: 1e9, onExceed: 'evict-oldest' },
    });
    expect(c.sources[1]).toMatchObject({
      retention: { mode: 'delete-on-retrieve' },
      upstreamQuota: { capacityBytes: 1e8 },
      inboxQuota: { maxMessages: 1000, onExceed: 'pause' },
    });
  });

  it('allows tls none on loopback only', () => {
    expect(
      parseConfig({ sources: [{ ...imap, host: '127.0.0.1', tls: 'none' }] }, 'c.json').sources[0]!.port,
    ).toBe(143);
  });

  it('never echoes a password it refuses', () => {
    let message = '';
    try {
      parseConfig({ sources: [{ ...imap, password: 'hunter2' }] }, 'c.json');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).not.toContain('hunter2');
  });
});

describe('loadConfig', () => {
  it('accepts the example config the README tells a newcomer to copy', () => {
    const config = loadConfig(path.join(__dirname, '../../../tributary.config.example.json'));
    expect(config.sources.map((s) => [s.id, s.enabled])).toEqual([
      ['work', false],
      ['old-isp', false],
    ]);
  });

  it('says where it looked when there is no file, and what is wrong with bad JSON', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trib-config-'));
    expect(() => loadConfig(path.join(dir, 'missing.json'))).toThrow(/no config file at .*missing\.json/);
    fs.writeFileSync(path.join(dir, 'bad.json'), '{ "sources": [ }');
    expect(() => loadConfig(path.join(dir, 'bad.json'))).toThrow(/is not valid JSON/);
    fs.writeFileSync(
      path.join(dir, 'ca.json'),
      JSON.stringify({ sources: [{ ...imap, caFile: 'nope.pem' }] }),
    );
    expect(() => loadConfig(path.join(dir, 'ca.json'))).toThrow(/caFile: cannot read/);
    fs.rmSync(dir, { recursive: true });
  });
});
