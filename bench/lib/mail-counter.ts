import net from 'node:net';

/**
 * A TCP pass-through in front of the mail server (bench/cost.ts) that counts connections and round trips: a turn is
 * the client speaking after the server has spoken (the TLS handshake and login included), as bench/lib/latency-proxy.ts
 * counts them, but with nothing delayed. On AWS each turn is a round trip to the mail server, waited for.
 */
export interface MailCounter {
  port: number;
  connections: number;
  turns: number;
  close(): Promise<void>;
}

export async function startMailCounter(target: { host: string; port: number }): Promise<MailCounter> {
  const sockets = new Set<net.Socket>();
  const counter: MailCounter = { port: 0, connections: 0, turns: 0, close: async () => undefined };
  const server = net.createServer((client) => {
    counter.connections++;
    const upstream = net.connect(target.port, target.host);
    let serverSpoke = false;
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', () => {
      if (serverSpoke) counter.turns++;
      serverSpoke = false;
    });
    upstream.on('data', () => {
      serverSpoke = true;
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  counter.port = (server.address() as net.AddressInfo).port;
  counter.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return counter;
}
