/**
 * An HTTP proxy in front of a tier that the test can close like a gate: while closed, new
 * requests wait; `endStreams()` ends the responses in flight cleanly (a complete chunked body, as
 * a server that closes a watch does), so a client sees an ordinary end of stream, not an error.
 */
import { createServer, request as httpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GateProxy {
  readonly url: string;
  close(): void;
  open(): void;
  /** Requests waiting at the closed gate. */
  readonly waiting: number;
  endStreams(): void;
  stop(): Promise<void>;
}

export async function startGateProxy(target: string): Promise<GateProxy> {
  const upstream = new URL(target);
  let gate: Promise<void> | undefined;
  let release: (() => void) | undefined;
  let waiting = 0;
  const inFlight = new Set<ServerResponse>();
  const server = createServer(async (req, res) => {
    if (gate) {
      waiting++;
      await gate;
      waiting--;
    }
    inFlight.add(res);
    const forwarded = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.on('data', (chunk: Buffer) => res.write(chunk));
        up.on('end', () => res.end());
        up.on('error', () => res.end());
        // A relay that stops may just close the socket: end the client's response cleanly then too.
        up.on('close', () => res.end());
      },
    );
    forwarded.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    res.on('close', () => {
      inFlight.delete(res);
      forwarded.destroy();
    });
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      gate ??= new Promise((resolve) => {
        release = resolve;
      });
    },
    open() {
      release?.();
      gate = undefined;
      release = undefined;
    },
    get waiting() {
      return waiting;
    },
    endStreams() {
      for (const res of inFlight) res.end();
    },
    stop: () =>
      new Promise((resolve) => {
        release?.();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
