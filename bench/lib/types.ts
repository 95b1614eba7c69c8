/**
 * Shared shapes of the benchmark (`npm run bench`): the upstream every contender reads, a contender (one
 * fetcher run as a child process), and what a measured run yields.
 */

/** The bench's private Dovecot and the mailbox holding the corpus. */
export interface Upstream {
  /** 127.0.0.1, or the latency proxy's address in the 20 ms runs (same host). */
  host: string;
  /** The certificate's name (the server's certificate is for DNS:localhost and IP:127.0.0.1). */
  servername: 'localhost';
  /** IMAPS and POP3S ports (implicit TLS). In the latency runs these are the proxy's ports. */
  imapsPort: number;
  pop3sPort: number;
  user: string;
  password: string;
  /** PEM file of the CA that signed the server certificate. */
  caFile: string;
  /** The mailbox's message count and total size in bytes (LF line ends on disk, CRLF on the wire). */
  messages: number;
  /** Runs doveadm against the bench's Dovecot (e.g. ['flags', 'remove', '\\Seen', 'mailbox', 'INBOX', 'ALL']). */
  doveadm(args: string[]): Promise<void>;
}

export interface Command {
  cmd: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
}

/** One fetcher. Every method gets the same work directory, private to this contender. */
export interface Contender {
  /** Short name for the table, e.g. "mbsync", "Tributary IMAP". */
  name: string;
  protocol: 'imap' | 'pop3';
  /** Why it cannot run here (not installed and could not be installed), or undefined when it can. */
  unavailable(): Promise<string | undefined>;
  /** Its version string as the tool prints it. */
  version(): Promise<string>;
  /** Forget everything fetched so far (empty Maildir, no state): the next `command` is a full sync. */
  reset(upstream: Upstream, workDir: string): Promise<void>;
  /** The command that syncs (full after reset, a no-op re-poll when run again with nothing new). */
  command(upstream: Upstream, workDir: string): Promise<Command>;
  /** Called before each run (full or re-poll), outside the timing (e.g. fetchmail's \Seen reset before a full run). */
  beforeRun?(upstream: Upstream, workDir: string, kind: 'full' | 'repoll'): Promise<void>;
  /** A raw ceiling, not a fetcher: it keeps no state, so it has no re-poll to measure. */
  noRepoll?: boolean;
  /** What the last run left: messages and bytes delivered in all (checked against the corpus after a full run). */
  delivered(workDir: string): Promise<{ messages: number; bytes: number }>;
}

/** One measured child run. */
export interface Measurement {
  wallMs: number;
  userMs: number;
  sysMs: number;
  /** Largest resident set of the process tree's biggest process, KiB (getrusage RUSAGE_CHILDREN ru_maxrss). */
  peakRssKb: number;
  exitCode: number;
  stdout: string;
  stderr: string;
}
