/**
 * Kubernetes response bodies from a snapshot: a get, a list page (with selectors, limit and
 * continue), a Table, watch events, bookmarks and Status errors with Kubernetes' messages.
 *
 * Objects are never re-serialised per request: a list is the shared bytes of its objects
 * (core/k8s/objects.ts) between a header and a footer, and a watch event wraps those bytes.
 * Only Tables are built per request, since their Age column depends on the time of the request.
 */
import { NotFound, toStatus } from '../errors.ts';
import type { ChangeEvent, KvObject, Revision } from '../types.ts';
import {
  countLeftOut,
  encodedObject,
  type K8sView,
  type LeftOutCounts,
  leftOutReason,
  viewOf,
} from './objects.ts';
import type { K8sRead } from './request.ts';
import { isObjectKey, type ResourceInfo } from './resources.ts';

const encoder = new TextEncoder();

/** The view of `kv` if it is an object of `resource` (right depth, servable value). */
export function resourceView(kv: KvObject, resource: ResourceInfo): K8sView | undefined {
  return isObjectKey(kv.key, resource) ? viewOf(kv) : undefined;
}

// ---- get ------------------------------------------------------------------------------------

/** The object a get asks for, or `NotFound` with Kubernetes' message (`configmaps "x" not found`). */
export function getView(kv: KvObject | undefined, request: K8sRead): K8sView {
  const view = kv === undefined ? undefined : resourceView(kv, request.resource);
  if (view === undefined) throw notFound(request.resource, request.name ?? '');
  return view;
}

/** A NotFound as Kubernetes words it; `details` are filled in by `k8sStatus`. */
export class ResourceNotFound extends NotFound {
  readonly details: { name: string; group: string; kind: string };
  constructor(resource: ResourceInfo, name: string) {
    super(
      `${resource.group === '' ? resource.resource : `${resource.resource}.${resource.group}`} "${name}" not found`,
    );
    this.details = { name, group: resource.group, kind: resource.resource };
  }
}

function notFound(resource: ResourceInfo, name: string): ResourceNotFound {
  return new ResourceNotFound(resource, name);
}

// ---- list -----------------------------------------------------------------------------------

/** One page of a Kubernetes list: the selected objects of one page of keys. */
export interface K8sListPage {
  readonly views: readonly K8sView[];
  readonly continueToken: string | undefined;
  readonly remainingItemCount: number | undefined;
  /** Values under the prefix that were not served, by reason (never half-served). */
  readonly leftOut: LeftOutCounts;
}

/**
 * The Kubernetes page of one page the read path served (core/read-api.ts pages by key, with its
 * own continue token bound to the prefix): the objects of the resource that the selector
 * selects. With a selector a page may hold fewer items than `limit`, even none, while a continue
 * token says more keys follow — the Kubernetes API allows it, and kubectl and client-go page on.
 * `remainingItemCount` is kept only without a selector (Kubernetes omits it then).
 */
export function selectPage(
  items: Iterable<KvObject>,
  request: K8sRead,
  continueToken: string | undefined,
  remaining: number | undefined,
): K8sListPage {
  const { resource, selector } = request;
  const leftOut: LeftOutCounts = {};
  const views: K8sView[] = [];
  for (const kv of items) {
    if (!isObjectKey(kv.key, resource)) continue;
    const view = viewOf(kv);
    if (view === undefined) {
      const reason = leftOutReason(kv);
      if (reason !== undefined) countLeftOut(leftOut, reason);
      continue;
    }
    if (selector.everything || selector.matches(view)) views.push(view);
  }
  const remainingItemCount = continueToken !== undefined && selector.everything ? remaining : undefined;
  return { views, continueToken, remainingItemCount, leftOut };
}

/** `{"kind":"ConfigMapList",…,"items":[…]}` from the objects' shared bytes. */
export function listBody(page: K8sListPage, request: K8sRead, revision: Revision): Uint8Array {
  const metadata: Record<string, string | number> = { resourceVersion: String(revision) };
  if (page.continueToken !== undefined) metadata.continue = page.continueToken;
  if (page.remainingItemCount !== undefined) metadata.remainingItemCount = page.remainingItemCount;
  const head = encoder.encode(
    `{"kind":${JSON.stringify(`${request.resource.kind}List`)},"apiVersion":${JSON.stringify(request.apiVersion)},"metadata":${JSON.stringify(metadata)},"items":[`,
  );
  const parts: Uint8Array[] = [head];
  page.views.forEach((view, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(encodedObject(view));
  });
  parts.push(CLOSE_LIST);
  return concat(parts);
}

const COMMA = encoder.encode(',');
const CLOSE_LIST = encoder.encode(']}');

// ---- Table ----------------------------------------------------------------------------------

/** Content-Type of a Table response. */
export const TABLE_CONTENT_TYPE = 'application/json;as=Table;v=v1;g=meta.k8s.io';

const COLUMNS = [
  {
    name: 'Name',
    type: 'string',
    format: 'name',
    description: 'Name must be unique within a namespace.',
    priority: 0,
  },
  { name: 'Age', type: 'string', format: '', description: 'Time since the object was created.', priority: 0 },
];

/** A `meta.k8s.io/v1` Table of `views`; each row's object is PartialObjectMetadata (with namespace). */
export function tableBody(
  views: readonly K8sView[],
  revision: Revision,
  now: number,
  page?: Pick<K8sListPage, 'continueToken' | 'remainingItemCount'>,
): Uint8Array {
  const metadata: Record<string, string | number> = { resourceVersion: String(revision) };
  if (page?.continueToken !== undefined) metadata.continue = page.continueToken;
  if (page?.remainingItemCount !== undefined) metadata.remainingItemCount = page.remainingItemCount;
  const rows = views.map((view) => ({
    cells: [view.name, age(view.creationTimestamp, now)],
    object: {
      kind: 'PartialObjectMetadata',
      apiVersion: 'meta.k8s.io/v1',
      metadata: (view.body as { metadata: unknown }).metadata,
    },
  }));
  return encoder.encode(
    JSON.stringify({
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata,
      columnDefinitions: COLUMNS,
      rows,
    }),
  );
}

/**
 * A watch event for a client that asked for Tables (kubectl get -w): the object as a one-row
 * Table, as the API server sends it. Built per watcher (the Age cell depends on the time), which
 * only interactive watches ask for.
 */
export function tableEventLine(type: K8sEventType, view: K8sView, now: number): Uint8Array {
  const table = new TextDecoder().decode(tableBody([view], view.kv.modRevision, now));
  return encoder.encode(`{"type":"${type}","object":${table}}\n`);
}

/** An object's age as kubectl prints it (apimachinery `duration.HumanDuration`); `<unknown>` without a timestamp. */
export function age(creationTimestamp: string | undefined, now: number): string {
  const created = creationTimestamp === undefined ? Number.NaN : Date.parse(creationTimestamp);
  if (Number.isNaN(created)) return '<unknown>';
  return humanDuration(now - created);
}

export function humanDuration(ms: number): string {
  if (ms < -1000) return '<invalid>';
  if (ms < 0) return '0s';
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  const d = Math.floor(h / 24);
  if (h < 24 * 8) return h % 24 === 0 ? `${d}d` : `${d}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${d}d`;
  const y = Math.floor(d / 365);
  if (h < 24 * 365 * 8) return d % 365 === 0 ? `${y}y` : `${y}y${d % 365}d`;
  return `${y}y`;
}

// ---- watch ----------------------------------------------------------------------------------

export type K8sEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

/**
 * How one change appears to a watcher of `request`, or undefined when it does not concern it.
 * With a selector an update that moves an object into the selection is ADDED and one that moves
 * it out is DELETED (its previous state at the new revision), as the API server's cacher does; a
 * value that stops (or starts) being servable counts as leaving (or entering) the selection.
 */
export function watchEventOf(
  change: ChangeEvent,
  request: K8sRead,
): { type: K8sEventType; view: K8sView } | undefined {
  const { resource, selector } = request;
  const passes = (kv: KvObject | undefined): K8sView | undefined => {
    if (kv === undefined) return undefined;
    const view = resourceView(kv, resource);
    return view !== undefined && (selector.everything || selector.matches(view)) ? view : undefined;
  };
  if (change.type === 'DELETE') {
    const view = passes(change.object);
    return view === undefined ? undefined : { type: 'DELETED', view };
  }
  const now = passes(change.object);
  const before = passes(change.prev);
  if (now !== undefined) return { type: before === undefined ? 'ADDED' : 'MODIFIED', view: now };
  if (before === undefined) return undefined;
  const left = leftView(change);
  return left === undefined ? undefined : { type: 'DELETED', view: left };
}

/** The previous state at the change's revision, made once per change for all watchers. */
function leftView(change: ChangeEvent): K8sView | undefined {
  if (change.prev === undefined) return undefined;
  let kv = leftObjects.get(change);
  if (kv === undefined) {
    kv = Object.freeze({ ...change.prev, modRevision: change.object.modRevision });
    leftObjects.set(change, kv);
  }
  return viewOf(kv);
}

const leftObjects = new WeakMap<ChangeEvent, KvObject>();

/**
 * One event line, `{"type":…,"object":…}\n`, framed once per (change, type) and shared by every
 * watcher that sends it (most watchers of a resource send the same type for the same change).
 */
export function eventLine(type: K8sEventType, view: K8sView): Uint8Array {
  let byType = lines.get(view.kv);
  if (byType === undefined) {
    byType = new Map();
    lines.set(view.kv, byType);
  }
  let bytes = byType.get(type);
  if (bytes === undefined) {
    bytes = concat([encoder.encode(`{"type":"${type}","object":`), encodedObject(view), CLOSE_EVENT]);
    byType.set(type, bytes);
  }
  return bytes;
}

const lines = new WeakMap<KvObject, Map<K8sEventType, Uint8Array>>();
const CLOSE_EVENT = encoder.encode('}\n');

/**
 * `BOOKMARK` with `{kind, apiVersion, metadata:{resourceVersion}}`; the end of the initial events
 * (sendInitialEvents=true) also carries the `k8s.io/initial-events-end: "true"` annotation.
 */
export function bookmarkLine(request: K8sRead, revision: Revision, initialEventsEnd: boolean): Uint8Array {
  const metadata: Record<string, unknown> = { resourceVersion: String(revision) };
  if (initialEventsEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
  const object = { kind: request.resource.kind, apiVersion: request.apiVersion, metadata };
  return encoder.encode(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`);
}

/** An `ERROR` event carrying a Status. */
export function errorLine(error: unknown): Uint8Array {
  return encoder.encode(`${JSON.stringify({ type: 'ERROR', object: k8sStatus(error) })}\n`);
}

// ---- Status ---------------------------------------------------------------------------------

/** The Status body of an error, with Kubernetes' `details` for NotFound. */
export function k8sStatus(
  error: unknown,
): ReturnType<typeof toStatus> & { details?: Record<string, unknown> } {
  const status = toStatus(error);
  if (error instanceof ResourceNotFound) return { ...status, details: { ...error.details } };
  return status;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
