/**
 * A TCP proxy on 127.0.0.1 that fault tests put between a client and a server, to cut every
 * connection at a chosen moment or to black-hole them (bytes stop flowing, sockets stay open, as
 * when a network path dies without a reset).
 */
import net from 'node:net';

export interface TcpProxy {
  /** The port clients connect to. */
  readonly port: number;
  /** Connections currently open (client side). */
  readonly connections: number;
  /** Destroys every open connection, both sides, at once. New connections are still accepted. */
  cutAll(): void;
  /**
   * Stops forwarding in both directions without closing anything; connections accepted while
   * paused are held too. Bytes wait in the kernel's buffers and flow again on `resume()`.
   */
  pause(): void;
  resume(): void;
  /** Delays every chunk by `ms` in both directions (order kept); 0 turns it off. */
  setDelay(ms: number): void;
  /** New connections go to `port` from now on (open ones stay where they are: `cutAll` them). */
  retarget(port: number): void;
  /** Cuts everything and stops listening. */
  close(): Promise<void>;
}

interface Pair {
  readonly client: net.Socket;
  readonly server: net.Socket;
}

export async function startProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let target = targetPort;
  let paused = false;
  let delayMs = 0;

  /**
   * Forwards `from` to `to`, honouring pause (via socket flow control) and delay. Bytes keep
   * their order across a change of delay: while delayed chunks are still queued, new ones queue
   * behind them even after `setDelay(0)`.
   */
  const forward = (from: net.Socket, to: net.Socket) => {
    let chain = Promise.resolve();
    let queued = 0;
    from.on('data', (chunk: Buffer) => {
      if (delayMs === 0 && queued === 0) {
        if (!to.write(chunk)) from.pause();
        return;
      }
      const ms = delayMs;
      queued++;
      chain = chain.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(() => {
              queued--;
              if (!to.destroyed) to.write(chunk);
              resolve();
            }, ms),
          ),
      );
    });
    to.on('drain', () => {
      if (!paused) from.resume();
    });
  };

  const server = net.createServer((client) => {
    const upstream = net.connect(target, targetHost);
    const pair: Pair = { client, server: upstream };
    pairs.add(pair);
    const destroy = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', destroy);
    upstream.on('error', destroy);
    client.on('close', destroy);
    upstream.on('close', destroy);
    forward(client, upstream);
    forward(upstream, client);
    if (paused) {
      client.pause();
      upstream.pause();
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');

  const cutAll = () => {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      pair.client.destroy();
      pair.server.destroy();
    }
  };

  return {
    port: address.port,
    get connections() {
      return pairs.size;
    },
    cutAll,
    pause() {
      paused = true;
      for (const { client, server: upstream } of pairs) {
        client.pause();
        upstream.pause();
      }
    },
    resume() {
      paused = false;
      for (const { client, server: upstream } of pairs) {
        client.resume();
        upstream.resume();
      }
    },
    setDelay(ms) {
      delayMs = ms;
    },
    retarget(port) {
      target = port;
    },
    close() {
      cutAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
