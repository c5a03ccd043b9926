/**
 * How every tier writes a read response: the bodies, the headers and the watch framing of
 * ../shared/API.md, in one place, so the relay, the edge and the relay's etcd fallback answer
 * byte-for-byte alike.
 */
import { NotFound, toStatus } from './errors.ts';
import { listBody as streamedListBody, writeObject } from './list-body.ts';
import { EncodedObject, objectJson } from './object.ts';
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
  return new Response(objectJson(object), { status: 200, headers });
}

/** One page of a list. `continueToken` and `remaining` are set only when more items follow. */
export interface ListPage {
  items: readonly KvObject[];
  continueToken?: string | undefined;
  remaining?: number | undefined;
}

/** What precedes a list's items: everything but the items, which stream after it. */
function listHead(page: Omit<ListPage, 'items'>, revision: Revision): string {
  const metadata: Record<string, string | number> = { resourceVersion: String(revision) };
  if (page.continueToken !== undefined) {
    metadata.continue = page.continueToken;
    if (page.remaining !== undefined) metadata.remainingItemCount = page.remaining;
  }
  return `{"kind":"List","metadata":${JSON.stringify(metadata)},"items":[`;
}

/** A list page's body as one string (tests, small bodies); equal to the streamed body's bytes. */
export function listBody(page: ListPage, revision: Revision): string {
  return `${listHead(page, revision)}${page.items.map(objectJson).join(',')}]}`;
}

/**
 * A list response, its body streamed from the page's items in chunks (core/list-body.ts): the
 * items are read lazily, so `items` may be a snapshot's cursor over a whole prefix.
 */
export function listResponse(page: ListSource | ListPage, info: ServeInfo): Response {
  const body = streamedListBody(listHead(page, info.revision), page.items, ']}', writeObject);
  return new Response(body, { status: 200, headers: baseHeaders(info) });
}

/**
 * One page of a list as the read path hands it to a shape: its items in key order — for a list
 * without `limit` a lazy cursor over the snapshot, never an array of the prefix — and, when more
 * follow, the continue token and how many remain.
 */
export interface ListSource {
  readonly items: Iterable<KvObject>;
  readonly continueToken?: string | undefined;
  readonly remaining?: number | undefined;
  /** The revision the page was read at (the list's `resourceVersion`). */
  readonly revision: Revision;
  /**
   * Set when the page was read from a tier's own snapshot, which later requests may read again:
   * a shape may keep the body it built for (`snapshot`, `shape`) and send it again
   * (core/list-bodies.ts; the Kubernetes shape does). API.md's lists stream instead.
   */
  readonly reuse?: { readonly snapshot: KeyReader; readonly shape: string } | undefined;
}

/**
 * How a front end writes what the read path serves (core/read-api.ts `serveParsed`): the bodies
 * of gets and lists, the watch framing, and errors. `kvShape` is API.md's; the Kubernetes-shaped
 * API has its own. Every method returns a complete `Response`, with `info.revision` as
 * `X-Resource-Version`, `info.servedBy` as `X-Served-By` and `info.headers` added.
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

/** API.md's bodies. */
export const kvShape: ReadShape = {
  get: (key, object, info, raw) => getResponse(key, object, info, raw.headers.get('If-None-Match')),
  list: (page, info) => listResponse(page, info),
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
  // A cached object's value is already JSON (core/object.ts): it is not escaped again per event.
  const json =
    event.object instanceof EncodedObject
      ? `{"type":"${event.type}","object":${objectJson(event.object)}}`
      : JSON.stringify(event);
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
