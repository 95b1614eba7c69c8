import { MailLab, imapsClient } from '../../support/mail-lab';

const lab = MailLab.fromEnv();

function message(subject: string, body = 'Hello from the harness.\r\n'): string {
  return `From: Ann <ann@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\n${body}`;
}

describe('the harness Dovecot over IMAP', () => {
  it('logs in over IMAPS with the harness CA and lists the mailboxes', async () => {
    const user = lab.createUser();
    const client = await lab.imap(user);
    try {
      const names = (await client.list()).map((m) => m.path).sort();
      expect(names).toEqual(['Drafts', 'INBOX', 'Sent', 'Trash']);
      expect(client.capabilities.has('UIDPLUS')).toBe(true);
      expect(client.capabilities.has('QUOTA')).toBe(true);
    } finally {
      await client.logout();
    }
  });

  it('upgrades a plain connection with STARTTLS and verifies the certificate against the harness CA', async () => {
    const user = lab.createUser();
    const client = imapsClient(lab, user, { port: lab.info.ports.imap, secure: false, doSTARTTLS: true });
    await client.connect();
    try {
      expect(client.secureConnection).toBe(true);
      expect(client.authenticated).toBeTruthy();
    } finally {
      await client.logout();
    }
  });

  it('refuses a wrong password', async () => {
    const user = lab.createUser();
    const client = imapsClient(lab, { name: user.name, password: 'not-the-password' });
    await expect(client.connect()).rejects.toMatchObject({ authenticationFailed: true });
  });

  it('rejects the certificate without the harness CA', async () => {
    const user = lab.createUser();
    const client = imapsClient(lab, user, { tls: undefined }); // no CA option: the system's CAs only
    await expect(client.connect()).rejects.toMatchObject({
      code: expect.stringMatching(/^(UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/) as string,
    });
  });

  it('round-trips APPEND and FETCH byte for byte, and the quota plugin counts it', async () => {
    const user = lab.createUser('q', { quotaBytes: 10 * 1024 * 1024 });
    const raw = message('roundtrip', 'x'.repeat(50_000) + '\r\n');
    await lab.append(user, [raw]);
    const client = await lab.imap(user);
    try {
      const lock = await client.getMailboxLock('INBOX');
      try {
        const fetched = await client.fetchOne('1', { source: true, uid: true });
        expect(fetched && Buffer.from(fetched.source!).equals(Buffer.from(raw))).toBe(true);
      } finally {
        lock.release();
      }
      const quota = await client.getQuota('INBOX');
      expect(quota && quota.storage?.limit).toBe(10 * 1024 * 1024);
      expect(quota && quota.storage?.usage).toBeGreaterThanOrEqual(50_000);
    } finally {
      await client.logout();
    }
    expect((await lab.quota(user)).usedBytes).toBeGreaterThanOrEqual(50_000);
  });

  it('changes UIDVALIDITY on request', async () => {
    const user = lab.createUser();
    await lab.append(user, [message('uv')]);
    const before = await lab.status(user);
    await lab.setUidValidity(user, Number(before.uidValidity) + 7);
    const after = await lab.status(user);
    expect(after.uidValidity).toBe(String(Number(before.uidValidity) + 7));
    expect(after.messages).toBe(1);
  });
});
