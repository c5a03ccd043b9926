/**
 * Writes at the edge: forwarded to the relay as they came (method, path, query, body, the
 * client's `Authorization` and precondition headers), and the relay's answer returned unchanged.
 *
 * The edge checks nothing about a write itself: the relay is the only tier that writes, so it
 * alone decides who may (write scopes, core/auth.ts) and what the answer is (relay/writes.ts).
 * A read at the edge with `resourceVersion=<the write's X-Resource-Version>` then waits for the
 * replica to reach the write, like any NotOlderThan read (read-your-writes).
 */
import { forwardToRelay } from './forward.ts';

/** The client's headers that a write carries on to the relay. */
const FORWARDED_HEADERS = ['authorization', 'content-type', 'if-match', 'if-none-match'];

export function forwardWrite(relayUrl: string, raw: Request): Promise<Response> {
  // Never retried: the relay may have applied the write before the connection failed.
  return forwardToRelay(relayUrl, raw, {
    headers: FORWARDED_HEADERS,
    withBody: true,
    unreachable: 'the edge lost its connection to the relay; the write may or may not have been applied',
  });
}
