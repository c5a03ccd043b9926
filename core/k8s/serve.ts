/**
 * The Kubernetes-shaped front end (API.md "Kubernetes-shaped endpoints"), the same at the relay
 * and at the edge: it parses a Kubernetes path into the read API's own request and hands it to
 * the shared read path (core/read-api.ts `serveParsed`) with its own `ReadShape`, so a
 * Kubernetes read gets the very plan a `/v1` read of the same key or prefix gets — the edge serves
 * rv=0 and NotOlderThan from its replica and forwards what it cannot prove, tokens and scopes are
 * checked on the key or prefix the request maps to.
 *
 *     /version ───────────────────────────────────────────────► served here, no credentials
 *     /api, /apis, /apis/{g}[/{v}] ─ authenticate ─ table ────► discovery from the cache's data
 *                                   (edge replica not loaded: forwarded to the relay)
 *     /api/v1/…, /apis/{g}/{v}/… ─ table ─ parseK8sRead ─────► serveParsed(tier, read, k8sShape)
 *
 * The resource table is derived from the snapshot the request sees (core/k8s/resources.ts) and
 * kept per snapshot, so it follows the data without configuration.
 */
import { ApiError, Forbidden, NotFound, TooManyRequests } from '../errors.ts';
import type { ReadShape, ServedBy, ServeInfo } from '../format.ts';
import { ListBodies } from '../list-bodies.ts';
import { M } from '../metrics.ts';
import { type ReadTier, serveParsed } from '../read-api.ts';
import { exposedPrefixFor } from '../request.ts';
import type { KeyReader } from '../store.ts';
import type { WatchCache } from '../watch-cache.ts';
import {
  coreDocument,
  type DiscoveryDocument,
  groupDocument,
  groupsDocument,
  resourceListDocument,
  versionDocument,
} from './discovery.ts';
import {
  bookmarkLine,
  errorLine,
  eventLine,
  getView,
  type K8sEventType,
  k8sStatus,
  listBody,
  resourceView,
  selectPage,
  TABLE_CONTENT_TYPE,
  tableBody,
  tableEventLine,
  watchEventOf,
} from './encode.ts';
import { encodedObject, formatLeftOut, type K8sView, type LeftOutCounts } from './objects.ts';
import { type K8sRead, parseK8sRead, routeK8s } from './request.ts';
import { DEFAULT_ROOT, deriveResources, type ExplicitResource, type ResourceTable } from './resources.ts';

export { isK8sPath } from './request.ts';

/** How a tier serves the Kubernetes layout. */
export interface K8sOptions {
  /** Where the Kubernetes layout starts in etcd (default `/registry/`). */
  readonly root?: string;
  /** Explicit resources that add to or override what the data says (core/k8s/resources.ts). */
  readonly explicit?: readonly ExplicitResource[];
}

/** Serves one Kubernetes-shaped request at this tier. Never throws. */
export async function serveK8s(tier: ReadTier, raw: Request, options: K8sOptions = {}): Promise<Response> {
  try {
    const url = new URL(raw.url);
    const route = routeK8s(url.pathname);
    if (route.kind === 'version') return documentResponse(versionDocument(), tier.tier, undefined);
    const root = options.root ?? DEFAULT_ROOT;
    const exposedPrefix = k8sExposedPrefix(tier.exposedPrefixes, root);
    const cache = tier.cache(exposedPrefix);
    if (cache?.ready !== true) {
      // The replica cannot say what it serves before it holds the data; the relay can.
      if (tier.tier === 'edge') {
        const rootList = {
          verb: 'list',
          prefix: root,
          exposedPrefix,
          consistency: { kind: 'any' },
          pagination: {},
        } as const;
        authenticate(tier, raw, root, exposedPrefix);
        const forwarded = await tier.fallback(rootList, 'latest', raw);
        if (forwarded.kind === 'response') return forwarded.response;
      }
      throw new TooManyRequests('the cache is still loading; retry shortly', 1);
    }
    const snapshot = cache.snapshot();
    const table = tableOf(snapshot, root, options.explicit ?? []);
    if (route.kind !== 'resource') {
      authenticate(tier, raw, root, exposedPrefix);
      const accept = raw.headers.get('Accept');
      const doc =
        route.kind === 'api'
          ? coreDocument(table, accept)
          : route.kind === 'apis'
            ? groupsDocument(table, accept)
            : route.kind === 'group'
              ? groupDocument(table, route.group)
              : resourceListDocument(table, route.group, route.version);
      if (doc === undefined) throw new NotFound('the server could not find the requested resource');
      return documentResponse(doc, tier.tier, snapshot.revision, tier.headers?.(exposedPrefix));
    }
    const read = parseK8sRead(route, table, url.searchParams, raw.headers.get('Accept'), {
      exposedPrefixes: tier.exposedPrefixes,
      root,
      ...(tier.continueSecret !== undefined ? { continueSecret: tier.continueSecret } : {}),
    });
    return await serveParsed(tier, read.read, raw, k8sShape(read, tier));
  } catch (error) {
    if (!(error instanceof ApiError)) tier.onError?.(error, raw);
    return k8sErrorResponse(error, tier.tier);
  }
}

/** The exposed prefix that holds the whole Kubernetes root; the API needs one. */
function k8sExposedPrefix(exposedPrefixes: readonly string[], root: string): string {
  try {
    return exposedPrefixFor(root, exposedPrefixes, 'prefix');
  } catch {
    throw new NotFound(`the Kubernetes API needs an exposed prefix that holds ${root}`);
  }
}

/**
 * Discovery is readable by any valid token (as Kubernetes grants it to every authenticated
 * user); what a token may then read is checked per request. A token whose scopes are narrower
 * than the root passes: only "no or an unknown token" (401) stops it.
 */
function authenticate(tier: ReadTier, raw: Request, root: string, exposedPrefix: string): void {
  try {
    tier.authorize?.(
      { verb: 'list', prefix: root, exposedPrefix, consistency: { kind: 'any' }, pagination: {} },
      raw,
    );
  } catch (error) {
    if (!(error instanceof Forbidden)) throw error;
  }
}

const tables = new WeakMap<KeyReader, { table: ResourceTable; explicit: readonly ExplicitResource[] }>();

/** The table for a snapshot, derived once per snapshot (a cache shares one until its next change). */
export function tableOf(
  snapshot: KeyReader,
  root: string,
  explicit: readonly ExplicitResource[],
): ResourceTable {
  const kept = tables.get(snapshot);
  if (kept !== undefined && kept.explicit === explicit) return kept.table;
  const table = deriveResources(snapshot, root, explicit);
  tables.set(snapshot, { table, explicit });
  return table;
}

/** The table a cache's current state gives (for status pages and tests). */
export function currentTable(cache: WatchCache, options: K8sOptions = {}): ResourceTable {
  return tableOf(cache.snapshot(), options.root ?? DEFAULT_ROOT, options.explicit ?? []);
}

function headersOf(info: ServeInfo, contentType: string): Headers {
  const headers = new Headers({
    'Content-Type': contentType,
    'Cache-Control': 'no-store',
    'X-Resource-Version': String(info.revision),
    'X-Served-By': info.servedBy,
  });
  for (const [k, v] of Object.entries(info.headers ?? {})) headers.set(k, v);
  return headers;
}

function documentResponse(
  doc: DiscoveryDocument,
  servedBy: ServedBy,
  revision: number | undefined,
  extra?: Record<string, string>,
): Response {
  const headers = new Headers({
    'Content-Type': doc.contentType,
    'Cache-Control': 'no-store',
    'X-Served-By': servedBy,
  });
  if (revision !== undefined) headers.set('X-Resource-Version', String(revision));
  for (const [k, v] of Object.entries(extra ?? {})) headers.set(k, v);
  return new Response(JSON.stringify(doc.body), { status: 200, headers });
}

/** A Status response as the API server writes it. */
export function k8sErrorResponse(error: unknown, servedBy: ServedBy): Response {
  const status = k8sStatus(error);
  const headers = new Headers({
    'Content-Type': 'application/json',
    'Cache-Control': 'no-store',
    'X-Served-By': servedBy,
  });
  const retry = (status.details as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds;
  if (retry !== undefined) headers.set('Retry-After', String(retry));
  return new Response(JSON.stringify(status), { status: status.code, headers });
}

/** Kubernetes list bodies, kept apart from the kv API's (core/list-bodies.ts bounds each). */
const keptBodies = new ListBodies();
/** What each body left out, so that a kept body still says so (header, metric) when sent again. */
const leftOutOf = new WeakMap<Uint8Array, LeftOutCounts>();

/** How the read path writes a Kubernetes read: objects, lists, Tables, events and Status. */
function k8sShape(read: K8sRead, tier: ReadTier): ReadShape {
  const line = (type: K8sEventType, view: K8sView): Uint8Array =>
    read.table ? tableEventLine(type, view, tier.clock.now()) : eventLine(type, view);
  return {
    get: (_key, object, info) => {
      const view = getView(object, read);
      if (read.table) {
        return new Response(tableBody([view], info.revision, tier.clock.now()), {
          status: 200,
          headers: headersOf(info, TABLE_CONTENT_TYPE),
        });
      }
      return new Response(encodedObject(view), { status: 200, headers: headersOf(info, 'application/json') });
    },
    list: (page, info) => {
      // A list read again from the same snapshot (clients relisting a quiet resource) is sent
      // from the bytes built the first time, without looking at its objects again; Tables carry
      // ages, so they are built each time.
      const select = () => selectPage(page.items, read, page.continueToken, page.remaining);
      const build = () => {
        const selected = select();
        const bytes = listBody(selected, read, page.revision);
        leftOutOf.set(bytes, selected.leftOut);
        return bytes;
      };
      let body: Uint8Array;
      if (read.table) {
        const selected = select();
        body = tableBody(selected.views, page.revision, tier.clock.now(), selected);
        leftOutOf.set(body, selected.leftOut);
      } else if (page.reuse === undefined) {
        body = build();
      } else {
        const key = `${page.reuse.shape}\u0000${read.bodyKey}`;
        const items = Array.isArray(page.items) ? page.items.length : page.reuse.snapshot.size;
        body = keptBodies.get(page.reuse.snapshot, key, items, build);
      }
      const headers = headersOf(info, read.table ? TABLE_CONTENT_TYPE : 'application/json');
      const counts = leftOutOf.get(body) ?? {};
      const leftOut = formatLeftOut(counts);
      if (leftOut !== '') {
        headers.set('X-Edgewatch-Left-Out', leftOut);
        for (const [reason, n] of Object.entries(counts)) tier.metrics?.count(M.k8sLeftOut, { reason }, n);
      }
      return new Response(body, { status: 200, headers });
    },
    watchFraming: () => 'ndjson',
    watchEncoder: () => ({
      contentType: 'application/json',
      initial: (object) => {
        const view = resourceView(object, read.resource);
        if (view === undefined || !(read.selector.everything || read.selector.matches(view)))
          return undefined;
        return line('ADDED', view);
      },
      change: (event) => {
        const shaped = watchEventOf(event, read);
        return shaped === undefined ? undefined : line(shaped.type, shaped.view);
      },
      bookmark: (revision, initialEventsEnd) => bookmarkLine(read, revision, initialEventsEnd),
      error: (error) => errorLine(error),
    }),
    error: (error, servedBy) => k8sErrorResponse(error, servedBy),
  };
}

/** The routes the Kubernetes front end answers (hono patterns), at the relay and the edge. */
export const K8S_ROUTES = ['/api', '/api/*', '/apis', '/apis/*', '/version', '/version/'];
