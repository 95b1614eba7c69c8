import net from 'node:net';

/**
 * A TCP proxy that delays every byte by `oneWayMs` in each direction (so a round trip costs 2 x oneWayMs more)
 * without limiting bandwidth: chunks are queued with their due time and written in order when due. Reading
 * pauses when the far side's write buffer is full, so a slow reader is not buffered without bound.
 *
 * `turns` counts how often the client spoke after the server had spoken: roughly the round trips of the
 * conversation (TLS handshake included).
 */
export interface LatencyProxy {
  port: number;
  turns: number;
  close(): Promise<void>;
}

function delayedPipe(from: net.Socket, to: net.Socket, delayMs: number, onData: () => void): void {
  const queue: Array<{ due: number; chunk: Buffer }> = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length && queue[0]!.due <= now + 0.5) {
      const { chunk } = queue.shift()!;
      if (!to.write(chunk) && !from.isPaused()) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    }
    if (queue.length) timer = setTimeout(flush, Math.max(0, queue[0]!.due - performance.now()));
    else if (ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    onData();
    queue.push({ due: performance.now() + delayMs, chunk });
    timer ??= setTimeout(flush, delayMs);
  });
  // The far side is ended only once every delayed byte was written: a LOGOUT answer or a TLS close_notify still
  // in the queue must arrive (dropping them made fetchmail and getmail report socket errors).
  const finish = () => {
    if (ended) return;
    ended = true;
    if (!queue.length && !timer) to.end();
  };
  from.on('end', finish);
  from.on('close', finish);
}

export async function startLatencyProxy(
  target: { host: string; port: number },
  oneWayMs: number,
): Promise<LatencyProxy> {
  const sockets = new Set<net.Socket>();
  const proxy: LatencyProxy = { port: 0, turns: 0, close: async () => undefined };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    let serverSpoke = false;
    delayedPipe(client, upstream, oneWayMs, () => {
      if (serverSpoke) proxy.turns++;
      serverSpoke = false;
    });
    delayedPipe(upstream, client, oneWayMs, () => {
      serverSpoke = true;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as net.AddressInfo).port;
  proxy.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return proxy;
}
