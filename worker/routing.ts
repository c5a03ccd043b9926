/**
 * Which replica a request belongs to. The Worker validates the whole request with the same parser
 * the replica uses (core/request.ts), so malformed reads are answered at once, without waking a
 * Durable Object.
 */
import { ApiError } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';
import { exposedPrefixFor, parseReadRequest } from '../core/request.ts';

/** `/_replica/{status,metrics,readyz,corrupt}/{prefix}`: about one replica, no read (corrupt: tests only). */
const INTERNAL_PATH = /^\/_replica\/(status|metrics|readyz|corrupt)\//;

/** The exposed prefix whose replica serves `url`, or the error response to send instead. */
export function exposedPrefixOfPath(
  url: URL,
  exposedPrefixes: readonly string[],
  continueSecret: string | undefined,
): string | Response {
  try {
    const internal = INTERNAL_PATH.exec(url.pathname);
    if (internal !== null) {
      return exposedPrefixFor(`/${url.pathname.slice(internal[0].length)}`, exposedPrefixes, 'prefix');
    }
    return parseReadRequest(url.pathname, url.searchParams, {
      exposedPrefixes,
      ...(continueSecret !== undefined ? { continueSecret } : {}),
    }).exposedPrefix;
  } catch (error) {
    if (error instanceof ApiError) return errorResponse(error, 'edge');
    throw error;
  }
}
