/**
 * Sending a client's request on to the relay: what a replica does with a read it cannot serve
 * (worker/edge-tier.ts) and what the Worker does with every write (worker/writes.ts). Only the
 * client headers named by the caller go along; anything the edge added stays behind.
 */
import { ServiceUnavailable } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';

export interface ForwardOptions {
  /** The client's headers that matter to the relay for this kind of request (lower case). */
  readonly headers: readonly string[];
  /** Sent when the relay cannot be reached (a write says it may or may not have been applied). */
  readonly unreachable: string;
  /** Writes pass their method and body on; reads are GETs without one. */
  readonly withBody?: boolean;
}

/** The relay's answer to `raw`, unchanged; 503 with `options.unreachable` if there is none. */
export async function forwardToRelay(
  relayUrl: string,
  raw: Request,
  options: ForwardOptions,
): Promise<Response> {
  const url = new URL(raw.url);
  const headers = new Headers();
  for (const name of options.headers) {
    const value = raw.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  try {
    return await fetch(`${relayUrl.replace(/\/$/, '')}${url.pathname}${url.search}`, {
      headers,
      signal: raw.signal,
      // Streamed, not buffered: the relay enforces a write's size limit as it reads (413).
      ...(options.withBody ? { method: raw.method, body: raw.body } : {}),
    });
  } catch {
    return errorResponse(new ServiceUnavailable(options.unreachable), 'edge');
  }
}
