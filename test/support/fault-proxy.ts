import net from 'node:net';
import { mulberry32 } from './corpus';

/**
 * A fault-injecting TCP proxy between Tributary and Dovecot. Each connection gets one fault, chosen by `choose`:
 * - `cut`: closes both sides after a random number of bytes from the server (FIN);
 * - `reset`: the same, with a TCP RST;
 * - `stall`: accepts and says nothing (the server is never contacted);
 * - `trickle`: server bytes at about 1 KB/s;
 * - `split`: every server write as 1-byte TCP segments;
 * - `none`: a clean pipe.
 */
export type Fault = 'none' | 'cut' | 'reset' | 'stall' | 'trickle' | 'split';

export interface FaultProxy {
  port: number;
  /** Connections per fault, as applied. */
  counts: Record<Fault, number>;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  target: { host: string; port: number };
  /** The fault of the n-th connection (0-based). */
  choose: (n: number) => Fault;
  seed: number;
  /** The cut/reset point is drawn in [0, cutWithin) bytes of server output. */
  cutWithin?: number;
  /** Sees every byte the client sends (tests read the commands of a plaintext protocol). */
  onClientData?: (chunk: Buffer) => void;
}

/** Uniform in [0, 1) from a seed. */
export function uniform(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 2 ** 32;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const random = uniform(options.seed);
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const counts: Record<Fault, number> = { none: 0, cut: 0, reset: 0, stall: 0, trickle: 0, split: 0 };
  let n = 0;
  const server = net.createServer((client) => {
    const fault = options.choose(n++);
    counts[fault]++;
    sockets.add(client);
    client.on('error', () => undefined);
    client.on('close', () => sockets.delete(client));
    if (fault === 'stall') return; // accept, say nothing, read nothing
    const upstream = net.connect(options.target.port, options.target.host);
    sockets.add(upstream);
    const end = (reset: boolean) => {
      if (reset) client.resetAndDestroy();
      else client.destroy();
      upstream.destroy();
    };
    upstream.on('error', () => end(false));
    upstream.on('close', () => {
      sockets.delete(upstream);
      // Let a trickle or split finish what it already took from the server, then close.
      if (fault !== 'trickle' && fault !== 'split') client.destroy();
    });
    client.on('close', () => upstream.destroy());
    if (options.onClientData) client.on('data', options.onClientData);
    client.pipe(upstream);
    const cutAt = Math.floor(random() * (options.cutWithin ?? 200_000));
    let sent = 0;
    if (fault === 'none') {
      upstream.pipe(client);
    } else if (fault === 'cut' || fault === 'reset') {
      upstream.on('data', (chunk: Buffer) => {
        if (sent + chunk.length >= cutAt) {
          client.write(chunk.subarray(0, Math.max(0, cutAt - sent)), () => end(fault === 'reset'));
          upstream.pause();
          sent = cutAt;
          return;
        }
        sent += chunk.length;
        client.write(chunk);
      });
    } else {
      // trickle (100 bytes every 100 ms) or split (1 byte per segment, Nagle off): a queue drained by a timer.
      client.setNoDelay(true);
      const queue: Buffer[] = [];
      const step = fault === 'trickle' ? 100 : 1;
      const every = fault === 'trickle' ? 100 : 0;
      let draining = false;
      const drain = () => {
        if (client.destroyed) return;
        const head = queue[0];
        if (!head) {
          draining = false;
          if (upstream.destroyed) client.destroy();
          else upstream.resume();
          return;
        }
        client.write(head.subarray(0, step));
        if (head.length <= step) queue.shift();
        else queue[0] = head.subarray(step);
        if (!every) {
          setImmediate(drain);
          return;
        }
        const timer = setTimeout(() => {
          timers.delete(timer);
          drain();
        }, every);
        timers.add(timer);
      };
      upstream.on('data', (chunk: Buffer) => {
        queue.push(chunk);
        upstream.pause(); // back-pressure: nothing more until the queue is drained
        if (!draining) {
          draining = true;
          drain();
        }
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    counts,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
