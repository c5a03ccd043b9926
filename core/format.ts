/**
 * How every tier writes a read response: the bodies, the headers and the watch framing of
 * ../shared/API.md, in one place, so the relay, the edge and the relay's etcd fallback answer
 * byte-for-byte alike.
 */
import { NotFound, toStatus } from './errors.ts';
import { ListBodies } from './list-bodies.ts';
import type { WatchRequest } from './request.ts';
import type { KeyReader } from './store.ts';
import type { KvObject, Revision } from './types.ts';
import type { WatchEncoder } from './watch-stream.ts';

/** Which tier produced a response (`X-Served-By`). */
export type ServedBy = 'edge' | 'relay' | 'etcd';

export interface ServeInfo {
  servedBy: ServedBy;
  /** The revision of the snapshot the response was served from (`X-Resource-Version`). */
  revision: Revision;
  /** Extra headers, e.g. the replica's name and lag at the edge. */
  headers?: Record<string, string>;
}

function baseHeaders(info: ServeInfo): Headers {
  const headers = new Headers({
    'Content-Type': 'application/json',
    'X-Resource-Version': String(info.revision),
    'X-Served-By': info.servedBy,
    'Cache-Control': 'no-store',
  });
  for (const [k, v] of Object.entries(info.headers ?? {})) headers.set(k, v);
  return headers;
}

/** `ETag` of an object: its modRevision, quoted as RFC 9110 wants. */
export function etagOf(object: KvObject): string {
  return `"${object.modRevision}"`;
}

/** True when an `If-None-Match` header value matches the object's ETag (`*` matches any). */
export function ifNoneMatchHits(header: string | null, object: KvObject): boolean {
  if (header === null) return false;
  const tag = etagOf(object);
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === '*' || t === tag || t === String(object.modRevision));
}

/** The response to a get: the object, or 404 when it does not exist at the served revision. */
export function getResponse(
  key: string,
  object: KvObject | undefined,
  info: ServeInfo,
  ifNoneMatch: string | null,
): Response {
  const headers = baseHeaders(info);
  if (object === undefined) {
    const status = toStatus(new NotFound(`${JSON.stringify(key)} not found at revision ${info.revision}`));
    return new Response(JSON.stringify(status), { status: 404, headers });
  }
  headers.set('ETag', etagOf(object));
  if (ifNoneMatchHits(ifNoneMatch, object)) return new Response(null, { status: 304, headers });
  return new Response(JSON.stringify(object), { status: 200, headers });
}

/** One page of a list. `continueToken` and `remaining` are set only when more items follow. */
export interface ListPage {
  items: readonly KvObject[];
  continueToken?: string | undefined;
  remaining?: number | undefined;
}

export function listBody(page: ListPage, revision: Revision): string {
  const metadata: Record<string, string | number> = { resourceVersion: String(revision) };
  if (page.continueToken !== undefined) {
    metadata.continue = page.continueToken;
    if (page.remaining !== undefined) metadata.remainingItemCount = page.remaining;
  }
  return JSON.stringify({ kind: 'List', metadata, items: page.items });
}

/** A list response; `body` is the page already encoded (core/list-bodies.ts), when there is one. */
export function listResponse(page: ListPage, info: ServeInfo, body?: Uint8Array): Response {
  return new Response(body ?? listBody(page, info.revision), { status: 200, headers: baseHeaders(info) });
}

/** One page of a list as the read path hands it to a shape. */
export interface ListSource extends ListPage {
  /** The revision the page was read at (the list's `resourceVersion`). */
  readonly revision: Revision;
  /**
   * Set when the page was read from a tier's own snapshot, which later requests may read again:
   * a shape may keep the body it built for (`snapshot`, `shape`) and send it again.
   */
  readonly reuse?: { readonly snapshot: KeyReader; readonly shape: string } | undefined;
}

/**
 * How a front end writes what the read path serves (core/read-api.ts `serveParsed`): the bodies
 * of gets and lists, the watch framing, and errors. `kvShape` is API.md's; the Kubernetes-shaped
 * API has its own. Every method returns a complete `Response` (headers included: use
 * `baseHeaders`-like `X-Resource-Version`/`X-Served-By` from `info`).
 */
export interface ReadShape {
  /** A get of `key`; `object` is undefined when the key does not exist at `info.revision`. */
  get(key: string, object: KvObject | undefined, info: ServeInfo, raw: Request): Response;
  list(page: ListSource, info: ServeInfo): Response;
  /** NDJSON or SSE, from the request (its `Accept` header). */
  watchFraming(raw: Request): WatchFraming;
  /**
   * A front end's own watch events (core/watch-stream.ts `WatchEncoder`): the Kubernetes-shaped
   * API frames its objects and filters by selector. Absent: API.md's lines in `watchFraming`.
   */
  watchEncoder?(request: WatchRequest, raw: Request): WatchEncoder;
  /** Any error as this front end's Status response. */
  error(error: unknown, servedBy: ServedBy): Response;
}

const keptBodies = new ListBodies();

/** API.md's bodies. */
export const kvShape: ReadShape = {
  get: (key, object, info, raw) => getResponse(key, object, info, raw.headers.get('If-None-Match')),
  list: (page, info) => {
    if (page.reuse === undefined) return listResponse(page, info);
    const body = keptBodies.get(page.reuse.snapshot, page.reuse.shape, page.items.length, () =>
      listBody(page, page.revision),
    );
    return listResponse(page, info, body);
  },
  watchFraming: (raw) => watchFraming(raw.headers.get('Accept')),
  error: (error, servedBy) => errorResponse(error, servedBy),
};

/** An error as a Status response with the matching HTTP code (and Retry-After when it has one). */
export function errorResponse(error: unknown, servedBy?: ServedBy): Response {
  const status = toStatus(error);
  const headers = new Headers({ 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  if (servedBy) headers.set('X-Served-By', servedBy);
  const retry = status.details?.retryAfterSeconds;
  if (retry !== undefined) headers.set('Retry-After', String(retry));
  return new Response(JSON.stringify(status), { status: status.code, headers });
}

/** A watch event as the API streams it. */
export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEventLine {
  type: WatchEventType;
  object: unknown;
}

/** The framing of a watch stream: NDJSON by default, Server-Sent Events on request. */
export type WatchFraming = 'ndjson' | 'sse';

export function watchFraming(accept: string | null): WatchFraming {
  return accept?.includes('text/event-stream') ? 'sse' : 'ndjson';
}

export function watchContentType(framing: WatchFraming): string {
  return framing === 'sse' ? 'text/event-stream' : 'application/x-ndjson';
}

/** Frames one event; SSE events are named after the type, with the JSON line as data. */
export function frameEvent(event: WatchEventLine, framing: WatchFraming): string {
  const json = JSON.stringify(event);
  return framing === 'sse' ? `event: ${event.type}\ndata: ${json}\n\n` : `${json}\n`;
}

/** The DELETED/ADDED/MODIFIED type of a stored change. */
export function eventType(change: { type: 'PUT' | 'DELETE'; object: KvObject }): WatchEventType {
  if (change.type === 'DELETE') return 'DELETED';
  return change.object.createRevision === change.object.modRevision ? 'ADDED' : 'MODIFIED';
}

export function bookmark(revision: Revision, initialEventsEnd = false): WatchEventLine {
  const object: Record<string, unknown> = { resourceVersion: String(revision) };
  if (initialEventsEnd) object.initialEventsEnd = true;
  return { type: 'BOOKMARK', object };
}

export function errorEvent(error: unknown): WatchEventLine {
  return { type: 'ERROR', object: toStatus(error) };
}
