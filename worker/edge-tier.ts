/**
 * The edge replica as a `ReadTier` (core/read-api.ts): its cache is the replica's, "latest" is
 * a `revisionRequest` over the replication stream (a few bytes, instead of forwarding the whole
 * read), and its fallback is the relay: what the plan sends there is forwarded unchanged.
 */
import type { Authorizer } from '../core/auth.ts';
import { ServiceUnavailable } from '../core/errors.ts';
import type { MetricsSink } from '../core/metrics.ts';
import type { ReadTier } from '../core/read-api.ts';
import type { Clock } from '../core/types.ts';
import type { WatchCache } from '../core/watch-cache.ts';
import type { EdgeSettings } from './env.ts';
import { forwardToRelay } from './forward.ts';
import { edgeLog } from './log.ts';
import { authorizeAndLimit, type RateLimiter } from './rate-limit.ts';
import type { RelayLink } from './relay-link.ts';

export interface EdgeTierOptions {
  settings: EdgeSettings;
  clock: Clock;
  cache: WatchCache;
  /**
   * Whether the cache may serve (worker/replica-history.ts): false while a state loaded from
   * SQLite is not yet vouched for by the relay; reads are then forwarded, as for a cold replica.
   */
  serving?: () => boolean;
  link: RelayLink | undefined;
  replica: string;
  /** The client tokens from the relay (the replica forwards everything until it has them). */
  authorizer: () => Authorizer | undefined;
  /** Counts each request once it is authenticated (worker/rate-limit.ts). */
  limiter: RateLimiter;
  onWatch(delta: 1 | -1): void;
  metrics?: MetricsSink;
}

/** Headers from the client that are passed on when a read is forwarded to the relay. */
const FORWARDED_HEADERS = ['accept', 'if-none-match', 'authorization'];

export function edgeTier(options: EdgeTierOptions): ReadTier {
  const { settings, cache, link, clock } = options;
  const { waitMs: waitTimeoutMs, relayUrl } = settings;
  return {
    tier: 'edge',
    exposedPrefixes: settings.prefixes,
    clock,
    waitTimeoutMs,
    continueSecret: settings.continueSecret,
    watchStallMs: settings.watchStallMs,
    // Without a live stream the replica cannot prove it is current: most-recent reads go to the relay.
    get consistentReadsFromCache() {
      return link?.connected ?? false;
    },
    cache: () => (options.serving?.() === false ? undefined : cache),
    authorize: (request, raw) => {
      const authorizer = options.authorizer();
      if (!authorizer) throw new ServiceUnavailable('the edge has not received its client tokens yet');
      authorizeAndLimit(options.limiter, authorizer, request, raw);
    },
    latestRevision: () => {
      if (!link) return Promise.reject(new ServiceUnavailable('no relay link'));
      return link.requestRevision(waitTimeoutMs);
    },
    // The relay gets the request unchanged and applies the rules itself (core/rules.ts).
    fallback: async (_request, _at, raw) => ({ kind: 'response', response: await forward(relayUrl, raw) }),
    headers: () => {
      const headers: Record<string, string> = { 'X-Edge-Replica': options.replica };
      if (link && !link.connected) {
        const since = link.lastContactAt > 0 ? clock.now() - link.lastContactAt : -1;
        headers['X-Edge-Stale-Ms'] = String(since);
      }
      return headers;
    },
    onError: (error) => edgeLog.error('unexpected error', { replica: options.replica, error: String(error) }),
    onWatch: options.onWatch,
    ...(options.metrics ? { metrics: options.metrics } : {}),
  };
}

/** Sends `raw` on to the relay with the client's headers that matter; 503 if it is unreachable. */
function forward(relayUrl: string, raw: Request): Promise<Response> {
  return forwardToRelay(relayUrl, raw, {
    headers: FORWARDED_HEADERS,
    unreachable: 'the relay is unreachable from the edge',
  });
}
