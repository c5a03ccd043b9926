/**
 * The read path of ../shared/API.md: ask the serving rules (core/rules.ts) for a plan and carry
 * it out. Nothing here decides who serves a read; every "what if it does not work out" is the
 * plan's (`onTimeout`, `onGone`, `fallback`), so the relay, the edge and every front end behave
 * alike.
 *
 * Two seams:
 * - `ReadTier`: where a tier's state comes from — its cache, how it learns etcd's current
 *   revision, and its one fallback (relay: etcd; edge: the relay).
 * - `ReadShape`: how a front end writes bodies (the kv API's is `kvShape` in core/format.ts; the
 *   Kubernetes-shaped API brings its own). A front end parses its own request into a
 *   `ReadRequest` and calls `serveParsed`; `serveRead` is the kv API's parser plus `kvShape`.
 *
 *     request ─parse─► ReadRequest ─planRead─► ServePlan
 *       local current ──────────────────────────────────────────► respond (shape) from the cache
 *       local at ─reach─┬─ reached ─────────────────────────────► respond from the cache
 *                       ├─ timed out ─ plan.onTimeout: fallback ─► respond from the fallback
 *                       │                             tooLarge ─► 504
 *                       └─ gone ───── plan.onGone:    fallback ─► respond from the fallback
 *                                                     expired ──► 410 (a watch: ERROR event)
 *       fallback ───────────────────────────────────────────────► respond from the fallback
 *       reject ─────────────────────────────────────────────────► 410 / 429
 *
 * Every failure ends in the shape's `error` (a Status with the right code, never a 500). Unknown
 * errors are reported to `tier.onError` for logging and answered 503.
 */
import { paginate } from './continue.ts';
import { ApiError, Expired, ServiceUnavailable, TooLargeResourceVersion, TooManyRequests } from './errors.ts';
import {
  errorEvent,
  frameEvent,
  kvShape,
  type ListSource,
  type ReadShape,
  type ServedBy,
  type WatchFraming,
  watchContentType,
} from './format.ts';
import { M, type MetricsSink } from './metrics.ts';
import type { ReadRequest, WatchRequest } from './request.ts';
import { parseReadRequest } from './request.ts';
import { planRead, type ReadAt, type ServePlan, type Tier, type TierFacts } from './rules.ts';
import type { KeyReader } from './store.ts';
import type { Clock, Revision } from './types.ts';
import type { WatchCache } from './watch-cache.ts';
import { type WatchEncoder, watchStream } from './watch-stream.ts';

/**
 * What a tier's fallback produced: a response to pass on as it is (the edge's: the relay
 * answered), or a state read elsewhere that this tier serves like its own (the relay's: etcd's
 * state at the planned revision; `servedBy` says so in `X-Served-By`).
 */
export type Fallback =
  | { readonly kind: 'response'; readonly response: Response }
  | { readonly kind: 'state'; readonly servedBy: ServedBy; readonly reader: KeyReader };

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
  /**
   * etcd's current revision for a most-recent read (relay: a quorum read; edge: asks the relay).
   * A `ServiceUnavailable` counts as not reaching "latest" in time: the plan's `onTimeout` applies.
   */
  latestRevision(exposedPrefix: string): Promise<Revision>;
  /**
   * The tier behind this one (core/rules.ts "fallback"), asked for `request` at `at`. The relay
   * reads etcd and returns the state (for a watch: the whole prefix, its initial events); the
   * edge forwards `raw` to the relay and returns the response.
   */
  fallback(request: ReadRequest, at: ReadAt, raw: Request): Promise<Fallback>;
  /**
   * Relay only: throws `Expired` when etcd has compacted `revision`, so that an Exact read or a
   * continue token at it gets 410 although the cache's window still holds that state.
   */
  checkExact?(exposedPrefix: string, revision: Revision): Promise<void>;
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
  /** Cut a watch client that stops reading after this long (core/watch-stream.ts); 0 never. */
  readonly watchStallMs?: number | undefined;
}

/** Serves one request of the kv API (API.md endpoints) at this tier. Never throws. */
export async function serveRead(tier: ReadTier, raw: Request): Promise<Response> {
  let request: ReadRequest;
  try {
    const url = new URL(raw.url);
    request = parseReadRequest(url.pathname, url.searchParams, {
      exposedPrefixes: tier.exposedPrefixes,
      ...(tier.continueSecret !== undefined ? { continueSecret: tier.continueSecret } : {}),
    });
  } catch (error) {
    if (!(error instanceof ApiError)) tier.onError?.(error, raw);
    return kvShape.error(error, tier.tier);
  }
  return serveParsed(tier, request, raw, kvShape);
}

/**
 * Serves a request a front end has already parsed, writing bodies with its `shape`. Authorizes,
 * plans, executes. Never throws.
 */
export async function serveParsed(
  tier: ReadTier,
  request: ReadRequest,
  raw: Request,
  shape: ReadShape,
): Promise<Response> {
  try {
    tier.authorize?.(request, raw);
    const cache = tier.cache(request.exposedPrefix);
    const plan = planRead(request, tier.tier, factsOf(tier, cache));
    return await execute(tier, cache, plan, request, raw, shape);
  } catch (error) {
    if (!(error instanceof ApiError)) tier.onError?.(error, raw);
    return shape.error(error, tier.tier);
  }
}

function factsOf(tier: ReadTier, cache: WatchCache | undefined): TierFacts {
  const consistentReadsFromCache = tier.consistentReadsFromCache;
  return cache?.ready === true
    ? {
        ready: true,
        revision: cache.revision,
        oldestRevision: cache.history.startRevision,
        consistentReadsFromCache,
      }
    : { ready: false, revision: 0, oldestRevision: 0, consistentReadsFromCache };
}

/** Carries out `plan`; exported for the table test of every plan's execution. */
export async function execute(
  tier: ReadTier,
  cache: WatchCache | undefined,
  plan: ServePlan,
  request: ReadRequest,
  raw: Request,
  shape: ReadShape,
): Promise<Response> {
  switch (plan.serve) {
    case 'reject':
      if (plan.reason === 'notReady') {
        throw new TooManyRequests('the cache is still loading; retry shortly', 1);
      }
      return expired(
        tier,
        request,
        raw,
        shape,
        Expired.tooOld(
          'rv' in request.consistency ? request.consistency.rv : undefined,
          cache?.history.startRevision ?? 0,
        ),
      );
    case 'fallback':
      return fromFallback(tier, cache, request, plan.at, raw, shape);
    case 'local': {
      // A ready plan implies a cache; a tier whose cache vanished in between is still loading.
      if (cache === undefined) throw new TooManyRequests('the cache is still loading; retry shortly', 1);
      if (plan.at === 'current') {
        return respond(tier, cache, request, raw, shape, local(tier, cache.snapshot()));
      }
      const outcome = await reach(tier, cache, request, plan.at);
      if (plan.at === 'latest') {
        countConsistentRead(tier, request, 'start' in outcome, plan.onTimeout === 'fallback');
      }
      if ('start' in outcome) return respond(tier, cache, request, raw, shape, outcome.start);
      if ('timedOut' in outcome) {
        if (plan.onTimeout === 'fallback') return fromFallback(tier, cache, request, plan.at, raw, shape);
        throw outcome.timedOut;
      }
      if (plan.onGone === 'fallback') return fromFallback(tier, cache, request, plan.at, raw, shape);
      return expired(tier, request, raw, shape, outcome.gone);
    }
  }
}

/** 410: for a watch one ERROR event and the end of the stream, as the API server does. */
function expired(
  tier: ReadTier,
  request: ReadRequest,
  raw: Request,
  shape: ReadShape,
  error: Expired,
): Response {
  if (request.verb === 'watch') {
    return watchErrorResponse(tier, error, shape.watchFraming(raw), shape.watchEncoder?.(request, raw));
  }
  throw error;
}

async function fromFallback(
  tier: ReadTier,
  cache: WatchCache | undefined,
  request: ReadRequest,
  at: ReadAt,
  raw: Request,
  shape: ReadShape,
): Promise<Response> {
  const result = await tier.fallback(request, at, raw);
  if (result.kind === 'response') return result.response;
  if (request.verb === 'watch' && cache === undefined) {
    throw new TooManyRequests('the cache is still loading; retry shortly', 1);
  }
  return respond(tier, cache, request, raw, shape, {
    kind: 'snapshot',
    reader: result.reader,
    servedBy: result.servedBy,
    headers: false,
  });
}

/**
 * Where a read starts: a snapshot to read (or to send as initial events), or a revision to watch
 * after. `headers`: whether the tier's extra headers apply (not to a state read elsewhere).
 */
type Start =
  | { kind: 'snapshot'; reader: KeyReader; servedBy: ServedBy; headers: boolean }
  | { kind: 'after'; revision: Revision };

const local = (tier: ReadTier, reader: KeyReader): Start => ({
  kind: 'snapshot',
  reader,
  servedBy: tier.tier,
  headers: true,
});

/** How reaching a state ended: reached, did not get there within the wait, or the state is gone. */
type Outcome =
  | { start: Start }
  | { timedOut: TooLargeResourceVersion | ServiceUnavailable }
  | { gone: Expired };

/**
 * Brings the cache to the state the plan asks for. A watch without initial events never waits
 * for "latest": the changes after etcd's current revision are simply the ones the cache has not
 * seen yet. "Gone": the cache relisted or trimmed while the read waited, and no longer holds the
 * state (or the changes after it) the plan counted on.
 */
async function reach(tier: ReadTier, cache: WatchCache, request: ReadRequest, at: ReadAt): Promise<Outcome> {
  const watchAfter = request.verb === 'watch' && !request.initialEvents;
  try {
    if (at === 'latest') {
      const latest = await tier.latestRevision(request.exposedPrefix);
      if (watchAfter) return after(cache, latest);
      await cache.waitFor(latest, tier.waitTimeoutMs);
      return { start: local(tier, cache.snapshot()) };
    }
    if ('exact' in at) {
      await cache.waitFor(at.exact, tier.waitTimeoutMs);
      if (watchAfter) return after(cache, at.exact);
      const reader = cache.snapshotAt(at.exact);
      // Compacted by etcd: final, whatever the plan's onGone (etcd would answer 410 too).
      await tier.checkExact?.(request.exposedPrefix, at.exact).catch((error: unknown) => {
        throw new Final(error);
      });
      return { start: local(tier, reader) };
    }
    await cache.waitFor(at.notOlderThan, tier.waitTimeoutMs);
    if (watchAfter) return after(cache, at.notOlderThan);
    return { start: local(tier, cache.snapshot()) };
  } catch (error) {
    if (error instanceof Final) throw error.error;
    if (error instanceof TooLargeResourceVersion || error instanceof ServiceUnavailable) {
      return { timedOut: error };
    }
    if (error instanceof Expired) return { gone: error };
    throw error;
  }
}

/** Wraps an error that must reach the client as it is, not be read as a timeout or a gone state. */
class Final {
  constructor(readonly error: unknown) {}
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
    fallback: String(!success && fallback),
  });
}

/**
 * A watch of the changes after `revision`, checked against the window now: the stream subscribes
 * in the same synchronous step (watchStream's `start`), so the window cannot move in between.
 */
function after(cache: WatchCache, revision: Revision): Outcome {
  if (revision < cache.history.startRevision) {
    return {
      gone: Expired.tooOld(revision, cache.history.startRevision),
    };
  }
  return { start: { kind: 'after', revision } };
}

function respond(
  tier: ReadTier,
  cache: WatchCache | undefined,
  request: ReadRequest,
  raw: Request,
  shape: ReadShape,
  start: Start,
): Response {
  const extra = start.kind === 'after' || start.headers ? tier.headers?.(request.exposedPrefix) : undefined;
  if (request.verb === 'watch') {
    if (cache === undefined) throw new TooManyRequests('the cache is still loading; retry shortly', 1);
    const encoder = shape.watchEncoder?.(request, raw);
    return watchResponse(tier, cache, request, start, shape.watchFraming(raw), extra, raw.signal, encoder);
  }
  if (start.kind !== 'snapshot') throw new Error('a get or list needs a snapshot');
  const reader = start.reader;
  const info = { servedBy: start.servedBy, revision: reader.revision, ...(extra ? { headers: extra } : {}) };
  if (request.verb === 'get') return shape.get(request.key, reader.get(request.key), info, raw);
  const { limit, continue: token } = request.pagination;
  // Only this tier's own snapshots are read again; a state fetched from etcd is used once.
  const reuse =
    start.servedBy === tier.tier
      ? { snapshot: reader, shape: `${request.prefix}\u0000${token?.start ?? ''}\u0000${limit ?? ''}` }
      : undefined;
  if (limit === undefined) {
    // No limit, so no continue token to compute: the body streams from a cursor over the
    // snapshot (the whole prefix is never held as one array).
    return shape.list(
      { items: reader.scan(request.prefix, token?.start), revision: reader.revision, reuse },
      info,
    );
  }
  const page = reader.list(request.prefix, { ...(token ? { startKey: token.start } : {}), limit });
  const source: ListSource = {
    ...paginate(
      page.items,
      page.remaining,
      { rv: reader.revision, prefix: request.prefix },
      tier.continueSecret,
    ),
    revision: reader.revision,
    reuse,
  };
  return shape.list(source, info);
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
  encoder: WatchEncoder | undefined,
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
    encoder,
    clock: tier.clock,
    subscribe: (options) => cache.watch(options),
    onEnd: () => tier.onWatch?.(-1),
    signal,
    stallMs: tier.watchStallMs,
  });
  const headers = new Headers({
    'Content-Type': encoder?.contentType ?? watchContentType(framing),
    'Cache-Control': 'no-store',
    'X-Resource-Version': String(revision),
    'X-Served-By': start.kind === 'snapshot' ? start.servedBy : tier.tier,
    'X-Content-Type-Options': 'nosniff',
  });
  for (const [k, v] of Object.entries(extra ?? {})) headers.set(k, v);
  return new Response(body, { status: 200, headers });
}

/** A watch that ends at once with one ERROR event (the rv it asked for left the window). */
function watchErrorResponse(
  tier: ReadTier,
  error: Error,
  framing: WatchFraming,
  encoder: WatchEncoder | undefined,
): Response {
  const body = encoder?.error(error) ?? new TextEncoder().encode(frameEvent(errorEvent(error), framing));
  return new Response(body, {
    status: 200,
    headers: {
      'Content-Type': encoder?.contentType ?? watchContentType(framing),
      'Cache-Control': 'no-store',
      'X-Served-By': tier.tier,
    },
  });
}
