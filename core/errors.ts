/**
 * Typed error conditions and the one mapper that turns them into Kubernetes-style Status bodies.
 *
 * Every tier throws these classes; only `toStatus` knows HTTP codes and reasons (STYLE.md §6),
 * so a condition means the same thing at the relay and at the edge. Anything that is not an
 * `ApiError` is unexpected: the HTTP layer logs it and answers 503 through `toStatus`.
 */

/** The JSON body of every error response (Kubernetes `metav1.Status`). */
export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  code: number;
  reason: string;
  message: string;
  details?: { causes?: { reason: string; message: string }[]; retryAfterSeconds?: number };
}

/** Base class of every expected error condition. */
export abstract class ApiError extends Error {
  abstract readonly code: number;
  abstract readonly reason: string;
  /** Seconds a client should wait before retrying (sent as `Retry-After`). */
  readonly retryAfterSeconds: number | undefined = undefined;
  override get name() {
    return this.constructor.name;
  }
}

/** A malformed parameter, path or token: the client must change the request. */
export class BadRequest extends ApiError {
  readonly code = 400;
  readonly reason = 'BadRequest';
}

/** Missing or wrong credentials. */
export class Unauthorized extends ApiError {
  readonly code = 401;
  readonly reason = 'Unauthorized';
}

/** A key or prefix outside every exposed prefix (or outside the caller's scopes). */
export class Forbidden extends ApiError {
  readonly code = 403;
  readonly reason = 'Forbidden';
}

/** The key does not exist at the revision the read was served from. */
export class NotFound extends ApiError {
  readonly code = 404;
  readonly reason = 'NotFound';
}

/** The endpoint exists but not for this method (a PUT to a list, a POST anywhere). */
export class MethodNotAllowed extends ApiError {
  readonly code = 405;
  readonly reason = 'MethodNotAllowed';
}

/** The requested revision was compacted or has left every tier's window. */
export class Expired extends ApiError {
  readonly code = 410;
  readonly reason = 'Expired';

  /**
   * Kubernetes' wording ("too old resource version: 5 (10)"), which clients match on; built here
   * only. `oldest` is the oldest revision still served, or why there is none.
   */
  static tooOld(revision: number | undefined, oldest: number | string): Expired {
    return new Expired(`too old resource version: ${revision ?? ''} (${oldest})`);
  }
}

/**
 * The state a subscriber or a list was served from belongs to another etcd history (etcd was
 * wiped or restored from a backup, or a self-check found the state wrong): a 410 like any
 * expiry for clients, which relist; tiers tell it apart to resynchronise rather than resume.
 */
export class HistoryChanged extends Expired {}

/** A write's `If-Match` / `If-None-Match` does not hold for the key's current state. */
export class PreconditionFailed extends ApiError {
  readonly code = 412;
  readonly reason = 'PreconditionFailed';
}

/** A write's body is larger than a value may be. */
export class RequestEntityTooLarge extends ApiError {
  readonly code = 413;
  readonly reason = 'RequestEntityTooLarge';
}

/** The request line is longer than the tier accepts. */
export class UriTooLong extends ApiError {
  readonly code = 414;
  readonly reason = 'RequestURITooLong';
}

/** A tier is still loading (Kubernetes answers 429 with Retry-After while its cache warms up). */
export class TooManyRequests extends ApiError {
  readonly code = 429;
  readonly reason = 'TooManyRequests';
  override readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super(message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** etcd (or the relay, seen from the edge) cannot be reached for a read that needs it. */
export class ServiceUnavailable extends ApiError {
  readonly code = 503;
  readonly reason = 'ServiceUnavailable';
}

/** rv=n is newer than anything the tiers reached within the wait. */
export class TooLargeResourceVersion extends ApiError {
  readonly code = 504;
  readonly reason = 'Timeout';
  readonly requested: number;
  readonly current: number;
  constructor(requested: number, current: number) {
    super(`Too large resource version: ${requested}, current: ${current}`);
    this.requested = requested;
    this.current = current;
  }
}

/** Builds the Status body for any thrown value; unknown errors become an opaque 503. */
export function toStatus(error: unknown): Status {
  if (error instanceof ApiError) {
    const status: Status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      code: error.code,
      reason: error.reason,
      message: error.message,
    };
    if (error instanceof TooLargeResourceVersion) {
      status.details = {
        causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
        retryAfterSeconds: 1,
      };
    } else if (error instanceof HistoryChanged) {
      // Clients tell it from an ordinary expiry: their state belongs to no history etcd has, so
      // they relist the most recent state whatever their revision (client/informer.ts).
      status.details = { causes: [{ reason: 'HistoryChanged', message: error.message }] };
    } else if (error.retryAfterSeconds !== undefined) {
      status.details = { retryAfterSeconds: error.retryAfterSeconds };
    }
    return status;
  }
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    code: 503,
    reason: 'ServiceUnavailable',
    message: 'the request could not be served; try again',
  };
}
