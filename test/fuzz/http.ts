/**
 * A raw HTTP/1.1 GET for the fuzz tests. `fetch` cannot send hostile input: its URL parser
 * resolves `..` and `%2e%2e`, re-encodes Unicode and refuses some bytes before anything reaches
 * the server. `node:http` writes the request target as given (as Latin-1 bytes, so a caller that
 * wants raw UTF-8 in the request line passes `utf8AsLatin1(text)`), which is what a hostile
 * client does.
 *
 * Every exchange ends within `deadlineMs` or is reported as `hang`; a response that streams
 * (a watch) is read for at most `chunks` chunks and then abandoned — the socket is destroyed, as
 * when a browser tab closes — so the servers' clean-up on client disconnect is exercised too.
 */
import http from 'node:http';

/** One request to send. `target` is the request target: path and query, not yet validated. */
export interface RawRequest {
  readonly target: string;
  readonly headers: Readonly<Record<string, string>>;
  /** For a streaming response: chunks to read (0 = abandon at the headers) before aborting. */
  readonly chunks: number;
}

/** What came back. `hang` and `socketError` are failures the caller reports; the rest are data. */
export type RawOutcome =
  | {
      readonly kind: 'response';
      readonly status: number;
      readonly headers: http.IncomingHttpHeaders;
      /** The whole body, or for a stream the chunks read before it was abandoned. */
      readonly body: string;
      readonly streamed: boolean;
      /** The stream ended by itself (finite, e.g. one ERROR event) rather than being abandoned. */
      readonly ended: boolean;
    }
  | { readonly kind: 'hang'; readonly phase: 'headers' | 'body' }
  | { readonly kind: 'socketError'; readonly message: string };

export interface Target {
  readonly host: string;
  readonly port: number;
  readonly agent: http.Agent;
}

/**
 * How long a pooled connection may sit idle before the client drops it rather than reuse it.
 * workerd closes an idle keep-alive connection after 5 s and says nothing of it (no
 * `Keep-Alive: timeout=` hint, which node:http's server sends and the agent obeys), so a socket
 * reused at ~5 s races that close: a request written just as workerd closes, or while this
 * process was too busy to read the FIN, fails with `socket hang up` or ECONNRESET before the
 * server saw it. The edge's leak check waits about KEEPALIVE_MS (5 s) between two fuzz runs,
 * so the next run's first requests landed right on that close. Well under 5 s, so it never races.
 */
export const IDLE_SOCKET_MS = 2_000;

/** A target for `url` with a keep-alive pool of `sockets` connections. */
export function targetOf(url: string, sockets: number): Target {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port),
    // `timeout` destroys a free socket idle that long; on a socket in use it only emits 'timeout'.
    agent: new http.Agent({ keepAlive: true, maxSockets: sockets, timeout: IDLE_SOCKET_MS }),
  };
}

/** Text whose UTF-8 bytes are spelled as Latin-1 characters, so `node:http` sends them raw. */
export function utf8AsLatin1(text: string): string {
  let out = '';
  for (const byte of new TextEncoder().encode(text)) out += String.fromCharCode(byte);
  return out;
}

function isStream(headers: http.IncomingHttpHeaders): boolean {
  const type = String(headers['content-type'] ?? '');
  return type.includes('x-ndjson') || type.includes('event-stream');
}

export interface SendOptions {
  /** The whole exchange (headers and a non-streaming body) must finish within this. */
  readonly deadlineMs: number;
  /** How long to wait for each watch chunk before abandoning the stream anyway. */
  readonly chunkWaitMs: number;
}

/** Sends one GET and settles with its outcome; never rejects. */
export function send(target: Target, request: RawRequest, options: SendOptions): Promise<RawOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (outcome: RawOutcome, abandon: boolean) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      // Abandon whatever is still open: a watch that never ends, or a response we stopped
      // reading. A response read to its end keeps its keep-alive socket.
      if (abandon) req.destroy();
      resolve(outcome);
    };
    const arm = (ms: number, phase: 'headers' | 'body') => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => finish({ kind: 'hang', phase }, true), ms);
    };

    let req: http.ClientRequest;
    try {
      req = http.request({
        host: target.host,
        port: target.port,
        agent: target.agent,
        method: 'GET',
        path: request.target,
        headers: request.headers,
      });
    } catch (error) {
      // node:http refuses some targets itself (bytes outside 0x21–0xff); the generators avoid them.
      resolve({ kind: 'socketError', message: `client refused the request: ${String(error)}` });
      return;
    }
    arm(options.deadlineMs, 'headers');
    req.on('error', (error) => finish({ kind: 'socketError', message: String(error) }, true));
    req.on('response', (res) => {
      const streamed = isStream(res.headers);
      const parts: Buffer[] = [];
      const done = (ended: boolean) =>
        finish(
          {
            kind: 'response',
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString('utf8'),
            streamed,
            ended,
          },
          !ended,
        );
      res.on('end', () => done(true));
      res.on('error', () => done(false));
      if (!streamed) {
        arm(options.deadlineMs, 'body');
        res.on('data', (chunk: Buffer) => parts.push(chunk));
        return;
      }
      if (request.chunks === 0) {
        done(false);
        return;
      }
      // A quiet watch sends nothing for seconds: a chunk that does not come is no hang, so the
      // stream is abandoned after chunkWaitMs, which is exactly what the test wants to do anyway.
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => done(false), options.chunkWaitMs);
      res.on('data', (chunk: Buffer) => {
        parts.push(chunk);
        if (parts.length >= request.chunks) done(false);
      });
    });
    req.end();
  });
}
