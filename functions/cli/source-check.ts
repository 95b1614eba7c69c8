import type { Source } from '../core/model';
import type { MailConnector } from '../core/ports';

/**
 * "Test this source": connects and logs in as a sync would, then reads what the sync depends on (TLS, the
 * capabilities it uses, the folders or the maildrop, the quota). Read-only: it opens folders with EXAMINE and
 * changes nothing upstream. `tributary sources test` prints its lines (or the report as JSON), the web page's
 * "test connection" shows the same. A failure to connect or log in throws the connector's UpstreamError (a code and
 * a message a person can act on), never the password.
 */
export interface SourceCheck {
  /** For `--json` and the web API: id, protocol, server, tlsMode, tls, capabilities, folders, messages, quota... */
  report: Record<string, unknown>;
  /** The same, in lines for a person (the first names the source and the server). */
  lines: string[];
}

export const CHECK_TIMEOUT_MS = 20_000;

/** The capabilities a sync uses or benefits from, reported yes or no. */
export const IMAP_CAPABILITIES = ['IDLE', 'UIDPLUS', 'CONDSTORE', 'QUOTA', 'MOVE', 'QRESYNC'];
export const POP3_CAPABILITIES = ['UIDL', 'TOP', 'PIPELINING', 'STLS', 'EXPIRE', 'LOGIN-DELAY'];

function mb(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${(bytes / 1024).toFixed(1)} KB`;
}

function percentOf(used: number, limit: number): string {
  return `${((used / limit) * 100).toFixed(1)}%`;
}

function tlsLine(
  tls: { protocol: string; cipher: string; subject: string; issuer: string; validTo: string } | undefined,
) {
  return tls
    ? `  TLS: ${tls.protocol} ${tls.cipher}, certificate ${tls.subject} issued by ${tls.issuer}, valid to ${tls.validTo}`
    : '  TLS: none (loopback only)';
}

export async function checkSource(
  source: Source,
  password: string,
  connector: MailConnector,
  options: { timeoutMs?: number } = {},
): Promise<SourceCheck> {
  const timeoutMs = options.timeoutMs ?? CHECK_TIMEOUT_MS;
  const report: Record<string, unknown> = {
    id: source.id,
    protocol: source.protocol,
    server: `${source.host}:${source.port}`,
    tlsMode: source.tls,
  };
  const lines: string[] = [`${source.id}: ${source.protocol} ${source.host}:${source.port} (${source.tls})`];
  if (source.protocol === 'imap') {
    const session = await connector.openImap(source, password, { timeoutMs });
    try {
      report.tls = session.tls;
      report.capabilities = Object.fromEntries(
        IMAP_CAPABILITIES.map((c) => [c, session.capabilities.has(c)]),
      );
      const folders = await session.listFolders();
      report.folders = folders;
      lines.push(tlsLine(session.tls));
      lines.push(`  login: ok as ${source.user}`);
      lines.push(
        `  capabilities: ${IMAP_CAPABILITIES.map((c) => `${c} ${session.capabilities.has(c) ? 'yes' : 'no'}`).join(', ')}`,
      );
      lines.push(`  folders on the server: ${folders.join(', ')}`);
      const counts: Record<string, number> = {};
      for (const f of source.folders) {
        const status = await session.openFolder(f);
        counts[f] = status.exists;
        lines.push(
          `  ${f}: ${status.exists} messages (UIDVALIDITY ${status.uidValidity}, UIDNEXT ${status.uidNext})`,
        );
      }
      report.messages = counts;
      const quota = await session.quota();
      report.quota = quota ?? null;
      lines.push(
        quota
          ? `  quota: ${mb(quota.usedBytes)} of ${mb(quota.limitBytes)} (${percentOf(quota.usedBytes, quota.limitBytes)})`
          : `  quota: the server does not report usage${session.capabilities.has('QUOTA') ? '' : ' (no QUOTA)'}: "upstreamQuota" cannot work for this source`,
      );
    } finally {
      await session.close();
    }
    return { report, lines };
  }
  const session = await connector.openPop3(source, password, { timeoutMs });
  try {
    const caps = session.capabilities.map((c) => c.toUpperCase());
    const has = (c: string) => caps.some((x) => x === c || x.startsWith(`${c} `));
    report.tls = session.tls;
    report.capabilities = Object.fromEntries(POP3_CAPABILITIES.map((c) => [c, has(c)]));
    const stat = await session.stat();
    report.messages = stat.count;
    report.octets = stat.octets;
    lines.push(tlsLine(session.tls));
    lines.push(`  login: ok as ${source.user}`);
    lines.push(`  capabilities: ${POP3_CAPABILITIES.map((c) => `${c} ${has(c) ? 'yes' : 'no'}`).join(', ')}`);
    lines.push(`  maildrop: ${stat.count} messages, ${mb(stat.octets)}`);
    report.quota = null;
    const capacity = source.upstreamQuota?.capacityBytes;
    lines.push(
      `  quota: POP3 reports no quota${capacity ? `; the quota guard measures ${mb(stat.octets)} against the declared capacityBytes ${mb(capacity)} (${percentOf(stat.octets, capacity)})` : '; declare "capacityBytes" in "upstreamQuota" for the quota guard'}`,
    );
  } finally {
    await session.quit().catch(() => session.abort());
  }
  return { report, lines };
}
