/**
 * What the client throws. Two kinds, so that callers can tell "the server said no" from "no
 * answer came":
 *
 * - `StatusError`: the tier answered with a Kubernetes-style Status (API.md "Errors"), or a watch
 *   ended with an `ERROR` event carrying one. `code` and `reason` are the Status's.
 * - `TransportError`: no complete answer (connection refused or cut, body unreadable). For a
 *   write this means the outcome is unknown, exactly like a `503` from the relay.
 */
import type { Status } from '../core/errors.ts';

export type { Status };

/** Base class of everything the client throws on purpose. */
export class EdgewatchError extends Error {
  override get name() {
    return this.constructor.name;
  }
}

/** A Status answer (or a watch's ERROR event). */
export class StatusError extends EdgewatchError {
  readonly status: Status;
  /** The request that got it (method and key or prefix), for messages. */
  readonly request: string;
  /** The revision the answer was served at (`X-Resource-Version`: a 404 says where the key was absent). */
  readonly revision: number | undefined;
  /** The tier that answered (`X-Served-By`). */
  readonly servedBy: string | null;
  constructor(status: Status, request: string, served?: { revision?: number; servedBy?: string | null }) {
    super(`${request}: ${status.code} ${status.reason}: ${status.message}`);
    this.status = status;
    this.request = request;
    this.revision = served?.revision;
    this.servedBy = served?.servedBy ?? null;
  }
  get code(): number {
    return this.status.code;
  }
  get reason(): string {
    return this.status.reason;
  }
  /** Seconds the server asked the client to wait (`Retry-After`), when it said. */
  get retryAfterSeconds(): number | undefined {
    return this.status.details?.retryAfterSeconds;
  }
}

/** No (complete) answer: the connection failed or the body could not be read. */
export class TransportError extends EdgewatchError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const hasCode = (error: unknown, code: number): boolean =>
  error instanceof StatusError && error.code === code;

/** 404: the key does not exist at the revision the read was served from. */
export const isNotFound = (error: unknown): boolean => hasCode(error, 404);
/** 410: the revision left the tier's window (a watch resumes by relisting). */
export const isExpired = (error: unknown): boolean => hasCode(error, 410);
/** 410 with the cause `HistoryChanged`: etcd's history changed under the tier (wiped or restored). */
export const isHistoryChanged = (error: unknown): boolean =>
  hasCode(error, 410) &&
  ((error as StatusError).status.details?.causes ?? []).some((c) => c.reason === 'HistoryChanged');
/** 412: a write's If-Match / create-only condition did not hold. */
export const isPreconditionFailed = (error: unknown): boolean => hasCode(error, 412);
/** 504 ResourceVersionTooLarge: the tier did not reach the revision asked for in time. */
export const isTooLargeResourceVersion = (error: unknown): boolean =>
  error instanceof StatusError &&
  error.code === 504 &&
  (error.status.details?.causes ?? []).some((c) => c.reason === 'ResourceVersionTooLarge');

/** The Status in a response body, or one made up from the HTTP status when there is none. */
export function statusOf(httpStatus: number, statusText: string, body: string): Status {
  try {
    const parsed = JSON.parse(body) as Partial<Status>;
    if (parsed && parsed.kind === 'Status' && typeof parsed.code === 'number') return parsed as Status;
  } catch {
    // not JSON: a proxy's or load balancer's page
  }
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    code: httpStatus,
    reason: statusText || 'Unknown',
    message: body.slice(0, 200),
  };
}
