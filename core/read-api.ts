/**
 * The read API of ../shared/API.md, served from a tier's own cache: parse the request, ask the
 * serving rules (core/rules.ts) for a plan, and carry it out. The relay and the edge run this same
 * function; they differ only in the `ReadTier` they pass — where "latest" comes from, and what
 * "etcd" and "relay" mean when the plan sends a read elsewhere.
 *
 * Every failure ends in `errorResponse` (core/format.ts): a Status with the right code, never a
 * 500. Unknown errors are reported to `tier.onError` for logging and answered 503.
 */
import { paginate } from './continue.ts';
import { ApiError, Expired, TooLargeResourceVersion, TooManyRequests } from './errors.ts';
import {
  errorEvent,
  errorResponse,
  frameEvent,
  getResponse,
  listBody,
  listResponse,
  type ServedBy,
  type WatchFraming,
  watchContentType,
  watchFraming,
} from './format.ts';
import { ListBodies } from './list-bodies.ts';
import { M, type MetricsSink } from './metrics.ts';
import type { GetRequest, ListRequest, ReadRequest, WatchRequest } from './request.ts';
import { parseReadRequest } from './request.ts';
import { type OnTimeout, planRead, type ReadAt, type Tier, type TierFacts } from './rules.ts';
import type { KeyReader } from './store.ts';
import type { Clock, Revision } from './types.ts';
import type { WatchCache } from './watch-cache.ts';
import { watchStream } from './watch-stream.ts';

/** What a tier provides so the shared read path can serve from it. */
export interface ReadTier {
  readonly tier: Tier;
  readonly exposedPrefixes: readonly string[];
  readonly clock: Clock;
  /** How long a read waits for the cache to reach a revision (API.md: 3 s by default). */
  readonly waitTimeoutMs: number;
  readonly continueSecret?: string | undefined;
  /** The tier can prove on demand that it reached etcd's current revision (see core/rules.ts). */
  readonly consistentReadsFromCache: boolean;
  /** The cache for an exposed prefix; `undefined` when this tier has none (yet). */
  cache(exposedPrefix: string): WatchCache | undefined;
  /** etcd's current revision for a most-recent read (relay: a quorum read; edge: asks the relay). */
  latestRevision(exposedPrefix: string): Promise<Revision>;
  /** Relay only: serve a get or list from etcd at `at`. */
  fromEtcd?(request: GetRequest | ListRequest, at: ReadAt, raw: Request): Promise<Response>;
  /**
   * Relay only: throws `Expired` when etcd has compacted `revision`, so that an Exact read or a
   * continue token at it gets 410 although the cache's window still holds that state.
   */
  checkExact?(exposedPrefix: string, revision: Revision): Promise<void>;
  /** Edge only: send the request on to the relay. */
  forward?(raw: Request): Promise<Response>;
  /**
   * Checks the client's credentials and scopes for a parsed request (core/auth.ts); throws
   * `Unauthorized` or `Forbidden`. Runs before anything is read or forwarded.
   */
  authorize?(request: ReadRequest, raw: Request): void;
  /** Extra response headers (the edge names its replica and lag). */
  headers?(exposedPrefix: string): Record<string, string>;
  /** An error that is not an `ApiError`: log it; the client gets a 503. */
  onError?(error: unknown, request: Request): void;
  /** Where the read path's metrics go (consistent reads); none when absent. */
  readonly metrics?: MetricsSink;
  /** Watch streams opened and closed (for metrics and leak checks). */
  onWatch?(delta: 1 | -1): void;
}

/** Serves one read request at this tier. Never throws. */
export async function serveRead(tier: ReadTier, raw: Request): Promise<Response> {
  const servedBy: ServedBy = tier.tier;
  try {
    const url = new URL(raw.url);
    const request = parseReadRequest(url.pathname, url.searchParams, {
      exposedPrefixes: tier.exposedPrefixes,
      ...(tier.continueSecret !== undefined ? { continueSecret: tier.continueSecret } : {}),
    });
    tier.authorize?.(request, raw);
    return await execute(tier, request, raw);
  } catch (error) {
    if (!(error instanceof ApiError)) tier.onError?.(error, raw);
    return errorResponse(error, servedBy);
  }
}

async function execute(tier: ReadTier, request: ReadRequest, raw: Request): Promise<Response> {
  const cache = tier.cache(request.exposedPrefix);
  const facts: TierFacts =
    cache?.ready === true
      ? {
          ready: true,
          revision: cache.revision,
          oldestRevision: cache.history.startRevision,
          consistentReadsFromCache: tier.consistentReadsFromCache,
        }
      : {
          ready: false,
          revision: 0,
          oldestRevision: 0,
          consistentReadsFromCache: tier.consistentReadsFromCache,
        };
  const plan = planRead(request, tier.tier, facts);

  switch (plan.serve) {
    case 'reject':
      if (plan.reason === 'notReady')
        throw new TooManyRequests('the cache is still loading; retry shortly', 1);
      {
        const expired = Expired.tooOld(
          'rv' in request.consistency ? request.consistency.rv : undefined,
          facts.oldestRevision,
        );
        // An accepted watch reports expiry as one ERROR event and ends, as the API server does.
        if (request.verb === 'watch')
          return watchErrorResponse(tier, expired, watchFraming(raw.headers.get('Accept')));
        throw expired;
      }
    case 'relay':
      return forward(tier, raw);
    case 'etcd':
      if (request.verb === 'watch' || !tier.fromEtcd) throw new TooManyRequests('no etcd at this tier', 1);
      return tier.fromEtcd(request, plan.at, raw);
    case 'local': {
      if (cache === undefined) throw new TooManyRequests('the cache is still loading; retry shortly', 1);
      if (plan.at === 'current')
        return respond(tier, cache, request, raw, { kind: 'snapshot', reader: cache.snapshot() });
      try {
        const start = await reach(tier, cache, request, plan.at);
        if (plan.at === 'latest') countConsistentRead(tier, request, true, false);
        return respond(tier, cache, request, raw, start);
      } catch (error) {
        if (error instanceof TooLargeResourceVersion) {
          if (plan.at === 'latest') countConsistentRead(tier, request, false, plan.onTimeout !== 'tooLarge');
          return onTimeout(tier, request, raw, plan.onTimeout, plan.at, error);
        }
        // The cache relisted while the read waited and no longer holds the state the plan
        // counted on (its window moved past it): the tier behind this one may still have it.
        if (error instanceof Expired && request.verb !== 'watch') {
          if (tier.fromEtcd) return tier.fromEtcd(request, plan.at, raw);
          if (tier.forward) return tier.forward(raw);
        }
        throw error;
      }
    }
  }
}

/** Where a local read starts: a snapshot to read (or to send as initial events), or a revision to watch after. */
type Start = { kind: 'snapshot'; reader: KeyReader } | { kind: 'after'; revision: Revision };

/**
 * Brings the cache to the state the plan asks for. Rejects with `TooLargeResourceVersion` when it
 * does not get there within the wait. A watch without initial events never waits for "latest":
 * the changes after etcd's current revision are simply the ones the cache has not seen yet.
 */
async function reach(tier: ReadTier, cache: WatchCache, request: ReadRequest, at: ReadAt): Promise<Start> {
  const watchAfter = request.verb === 'watch' && !request.initialEvents;
  if (at === 'latest') {
    const latest = await tier.latestRevision(request.exposedPrefix);
    if (watchAfter) return { kind: 'after', revision: latest };
    await cache.waitFor(latest, tier.waitTimeoutMs);
    return { kind: 'snapshot', reader: cache.snapshot() };
  }
  if ('exact' in at) {
    await cache.waitFor(at.exact, tier.waitTimeoutMs);
    if (watchAfter) return { kind: 'after', revision: at.exact };
    await tier.checkExact?.(request.exposedPrefix, at.exact);
    return { kind: 'snapshot', reader: cache.snapshotAt(at.exact) };
  }
  await cache.waitFor(at.notOlderThan, tier.waitTimeoutMs);
  if (watchAfter) return { kind: 'after', revision: at.notOlderThan };
  return { kind: 'snapshot', reader: cache.snapshot() };
}

async function onTimeout(
  tier: ReadTier,
  request: ReadRequest,
  raw: Request,
  action: OnTimeout,
  at: ReadAt,
  error: TooLargeResourceVersion,
): Promise<Response> {
  if (action === 'forward') return forward(tier, raw);
  if (action === 'etcd' && request.verb !== 'watch' && tier.fromEtcd) return tier.fromEtcd(request, at, raw);
  throw error;
}

/** A most-recent get or list the cache tried to serve (Kubernetes' consistent_read_total). */
function countConsistentRead(
  tier: ReadTier,
  request: ReadRequest,
  success: boolean,
  fallback: boolean,
): void {
  if (request.verb === 'watch') return;
  tier.metrics?.count(M.consistentReads, {
    prefix: request.exposedPrefix,
    success: String(success),
    fallback: String(fallback),
  });
}

function forward(tier: ReadTier, raw: Request): Promise<Response> {
  if (!tier.forward) throw new TooManyRequests('this tier cannot forward reads', 1);
  return tier.forward(raw);
}

function respond(
  tier: ReadTier,
  cache: WatchCache,
  request: ReadRequest,
  raw: Request,
  start: Start,
): Response {
  const extra = tier.headers?.(request.exposedPrefix);
  if (request.verb === 'watch') {
    return watchResponse(
      tier,
      cache,
      request,
      start,
      watchFraming(raw.headers.get('Accept')),
      extra,
      raw.signal,
    );
  }
  if (start.kind !== 'snapshot') throw new Error('a get or list needs a snapshot');
  const reader = start.reader;
  const info = { servedBy: tier.tier, revision: reader.revision, ...(extra ? { headers: extra } : {}) };
  if (request.verb === 'get') {
    return getResponse(request.key, reader.get(request.key), info, raw.headers.get('If-None-Match'));
  }
  const { limit, continue: token } = request.pagination;
  const page = reader.list(request.prefix, {
    ...(token ? { startKey: token.start } : {}),
    ...(limit !== undefined ? { limit } : {}),
  });
  const listPage = paginate(
    page.items,
    page.remaining,
    { rv: reader.revision, prefix: request.prefix },
    tier.continueSecret,
  );
  const shape = `${request.prefix}\u0000${token?.start ?? ''}\u0000${limit ?? ''}`;
  const body = listBodiesOf(cache).get(reader, shape, page.items.length, () =>
    listBody(listPage, reader.revision),
  );
  return listResponse(listPage, info, body);
}

const listBodies = new WeakMap<WatchCache, ListBodies>();

function listBodiesOf(cache: WatchCache): ListBodies {
  let bodies = listBodies.get(cache);
  if (bodies === undefined) {
    bodies = new ListBodies();
    listBodies.set(cache, bodies);
  }
  return bodies;
}

/** Streams a watch; the request's `Accept` header picked NDJSON or SSE. */
function watchResponse(
  tier: ReadTier,
  cache: WatchCache,
  request: WatchRequest,
  start: Start,
  framing: WatchFraming,
  extra: Record<string, string> | undefined,
  signal: AbortSignal,
): Response {
  tier.onWatch?.(1);
  const revision = start.kind === 'snapshot' ? start.reader.revision : start.revision;
  const body = watchStream({
    prefix: request.prefix,
    start: start.kind === 'snapshot' ? { initial: start.reader } : { after: start.revision },
    initialEventsEnd: request.initialEventsEndBookmark,
    allowBookmarks: request.allowWatchBookmarks,
    timeoutMs: request.timeoutSeconds !== undefined ? request.timeoutSeconds * 1000 : undefined,
    framing,
    clock: tier.clock,
    subscribe: (options) => cache.watch(options),
    onEnd: () => tier.onWatch?.(-1),
    signal,
  });
  const headers = new Headers({
    'Content-Type': watchContentType(framing),
    'Cache-Control': 'no-store',
    'X-Resource-Version': String(revision),
    'X-Served-By': tier.tier,
    'X-Content-Type-Options': 'nosniff',
  });
  for (const [k, v] of Object.entries(extra ?? {})) headers.set(k, v);
  return new Response(body, { status: 200, headers });
}

/** A watch that ends at once with one ERROR event (the rv it asked for left the window). */
function watchErrorResponse(tier: ReadTier, error: Error, framing: WatchFraming): Response {
  const body = new TextEncoder().encode(frameEvent(errorEvent(error), framing));
  return new Response(body, {
    status: 200,
    headers: {
      'Content-Type': watchContentType(framing),
      'Cache-Control': 'no-store',
      'X-Served-By': tier.tier,
    },
  });
}
