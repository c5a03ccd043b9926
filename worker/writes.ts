/**
 * Writes at the edge: forwarded to the relay as they came (method, path, query, body, the
 * client's `Authorization` and precondition headers), and the relay's answer returned unchanged.
 *
 * The edge checks nothing about a write itself: the relay is the only tier that writes, so it
 * alone decides who may (write scopes, core/auth.ts) and what the answer is (relay/writes.ts).
 * A read at the edge with `resourceVersion=<the write's X-Resource-Version>` then waits for the
 * replica to reach the write, like any NotOlderThan read (read-your-writes).
 */
import { ServiceUnavailable } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';

/** The client's headers that a write carries on to the relay. */
const FORWARDED_HEADERS = ['authorization', 'content-type', 'if-match', 'if-none-match'];

export async function forwardWrite(relayUrl: string, raw: Request): Promise<Response> {
  const url = new URL(raw.url);
  const headers = new Headers();
  for (const name of FORWARDED_HEADERS) {
    const value = raw.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  try {
    // Streamed, not buffered: the relay enforces the size limit as it reads (413).
    return await fetch(`${relayUrl.replace(/\/$/, '')}${url.pathname}${url.search}`, {
      method: raw.method,
      headers,
      body: raw.body,
      signal: raw.signal,
    });
  } catch {
    // Never retried: the relay may have applied the write before the connection failed.
    return errorResponse(
      new ServiceUnavailable(
        'the edge lost its connection to the relay; the write may or may not have been applied',
      ),
      'edge',
    );
  }
}
