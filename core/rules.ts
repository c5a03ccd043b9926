/**
 * The serving rules: for one parsed read, which tier answers it, at which state, and what happens
 * when that fails. This is the one place that encodes API.md "Who serves what" (STYLE.md §5; the
 * apiserver's `shouldDelegateList` plays this role): core/read-api.ts carries a plan out and
 * decides nothing of its own, so the relay, the edge and every front end (the kv API, the
 * Kubernetes-shaped API) serve alike.
 *
 * Each tier has exactly one fallback, the tier behind it: the relay's is etcd, the edge's is the
 * relay. "fallback" below means that.
 *
 * Get and list (`consistency` from core/request.ts). "wait ≥n" = wait (API.md: 3 s by default)
 * for the local state to reach n; "t/o" = what happens when the wait runs out; "gone" = what
 * happens when the state the plan counted on left the window meanwhile (the cache relisted or
 * trimmed while the read waited):
 *
 *   consistency    | relay, ready                            | edge, ready
 *   ---------------+-----------------------------------------+----------------------------------
 *   any            | local current                           | local current
 *   notOlderThan n | wait ≥n, local; t/o 504 TooLarge        | wait ≥n, local; t/o fallback
 *   mostRecent     | proof ? wait ≥latest, local;            | proof ? wait ≥latest, local;
 *                  |         t/o fallback (etcd latest)      |         t/o fallback
 *                  |       : fallback (etcd latest)          |       : fallback
 *   exact n        | n ≥ oldest ? wait ≥n, local exact n;    | fallback
 *   (continue)     |     t/o 504; gone → fallback (etcd n)   |
 *                  |   : fallback (etcd exact n; etcd 410s   |
 *                  |     it once compacted)                  |
 *   not ready      | fallback (etcd; any → latest)           | fallback
 *
 * Watch (`initialEvents` from core/request.ts). At the relay, "fallback" for a watch with initial
 * events means: the initial state from an etcd read, then the changes after its revision from the
 * cache (a cache that has not reached that revision yet simply sends them when it does):
 *
 *   start                      | relay, ready                     | edge, ready
 *   ---------------------------+----------------------------------+------------------------------
 *   initial events, any        | local current                    | local current
 *   initial events, ≥n         | wait ≥n, local; t/o 504          | wait ≥n, local; t/o fallback
 *   initial events, mostRecent | proof ? wait ≥latest, local;     | proof ? wait ≥latest, local;
 *                              |         t/o fallback (etcd)      |         t/o fallback
 *                              |       : fallback (etcd latest)   |       : fallback
 *   changes after any          | local current                    | local current
 *   changes after mostRecent   | local after latest (no wait)     | local after latest (no wait)
 *   changes after n            | n ≥ oldest ? wait ≥n, local      | n ≥ oldest ? wait ≥n, local
 *                              |   after n; t/o 504; gone → 410   |   after n; t/o, gone → fallback
 *                              |   : ERROR 410 Expired            |   : fallback
 *   not ready                  | 429 (Kubernetes' cacher too)     | 429
 *
 * "proof" is `facts.consistentReadsFromCache`: the tier can make its state reach etcd's current
 * revision on demand (the relay requests a watch progress notification, reliable from etcd
 * 3.5.13; the edge asks the relay with `revisionRequest`). Without it a cache with no writes in
 * its prefix might never learn that it is current, so it cannot serve "most recent" itself.
 *
 * An edge sends a too-old watch to the relay instead of answering 410: Durable Objects are
 * evicted and restart with a short history, and a 410 would make every client relist. The relay
 * answers 410 for a watch from before its window, as the apiserver does (etcd keeps no event
 * history the relay could replay).
 */

import type { ReadRequest } from './request.ts';
import type { Revision } from './types.ts';

/** Where a plan is executed: the Node relay in front of etcd, or an edge replica. */
export type Tier = 'relay' | 'edge';

/**
 * What the serving tier knows about its own state when the request arrives, taken once.
 * `revision` never decreases, but the window's start (`oldestRevision`) moves forward as history
 * is trimmed, and a relist resets it to the relist's revision: so the state a plan counts on can
 * be gone by the time a wait for it ends. Plans say what to do then (`onGone`) rather than
 * assuming the facts only improve.
 */
export interface TierFacts {
  /** The cache (relay) or replica (edge) holds a full snapshot and follows its stream. */
  readonly ready: boolean;
  /** The revision the tier's state is current to. */
  readonly revision: Revision;
  /**
   * The oldest revision r such that the tier can reproduce the state at r and holds every change
   * after r. Equal to `revision` for a tier that keeps no past states.
   */
  readonly oldestRevision: Revision;
  /** The tier can prove on demand that it reached etcd's current revision (see above). */
  readonly consistentReadsFromCache: boolean;
}

/**
 * A state to serve: `latest` = learn etcd's current revision R (relay: a quorum read; edge: a
 * `revisionRequest`), reach R, serve at R; `notOlderThan` = reach rv, serve the current state;
 * `exact` = serve the state at exactly rv. For a watch without initial events, the tier only
 * needs to know the revision to start after — it never waits for its state to reach "latest".
 */
export type ReadAt = 'latest' | { readonly notOlderThan: Revision } | { readonly exact: Revision };

/** What to do when the tier does not reach the required revision within the wait. */
export type OnTimeout =
  /** Ask the tier's fallback (relay: etcd, as Kubernetes does for consistent reads; edge: relay). */
  | 'fallback'
  /** 504 Timeout with cause ResourceVersionTooLarge (`TooLargeResourceVersion`). */
  | 'tooLarge';

/** What to do when the state the plan counted on left the window while the read waited. */
export type OnGone =
  /** Ask the tier's fallback: it may still hold that state (etcd until it compacts). */
  | 'fallback'
  /** 410 Expired (for a watch: one ERROR event, then the stream ends). */
  | 'expired';

/**
 * The plan for one read.
 * - `local` `current`: serve the tier's state now, no waiting.
 * - `local` with `at`: reach `at` (waiting at most the configured time), then serve locally;
 *   `onTimeout` and `onGone` say what happens when that does not work out.
 * - `fallback`: the tier behind this one serves it at `at` (relay: etcd; edge: the relay, which
 *   gets the request unchanged and applies these rules itself).
 * - `reject`: `expired` → 410 `Expired`; `notReady` → 429 `TooManyRequests` with Retry-After.
 */
export type ServePlan =
  | { readonly serve: 'local'; readonly at: 'current' }
  | {
      readonly serve: 'local';
      readonly at: ReadAt;
      readonly onTimeout: OnTimeout;
      readonly onGone: OnGone;
    }
  | { readonly serve: 'fallback'; readonly at: ReadAt }
  | { readonly serve: 'reject'; readonly reason: 'expired' | 'notReady' };

const CURRENT: ServePlan = { serve: 'local', at: 'current' };

/** Decides who serves `request` at `tier`, given the tier's `facts`. Pure; see the tables above. */
export function planRead(request: ReadRequest, tier: Tier, facts: TierFacts): ServePlan {
  return request.verb === 'watch' ? planWatch(request, tier, facts) : planGetOrList(request, tier, facts);
}

/** The state a consistency asks for, as the fallback reads it. */
function stateOf(c: ReadRequest['consistency']): ReadAt {
  return c.kind === 'notOlderThan' ? { notOlderThan: c.rv } : c.kind === 'exact' ? { exact: c.rv } : 'latest';
}

function planGetOrList(
  request: Exclude<ReadRequest, { verb: 'watch' }>,
  tier: Tier,
  facts: TierFacts,
): ServePlan {
  const c = request.consistency;
  const at = stateOf(c);
  if (!facts.ready) return { serve: 'fallback', at };
  // The edge falls back whenever its own state does not work out; the relay does so only where
  // etcd can answer what its cache could not (for "not older than n" etcd is no further on).
  const edge = tier === 'edge';
  switch (c.kind) {
    case 'any':
      return CURRENT;
    case 'notOlderThan':
      return { serve: 'local', at, onTimeout: edge ? 'fallback' : 'tooLarge', onGone: 'fallback' };
    case 'mostRecent':
      if (!facts.consistentReadsFromCache) return { serve: 'fallback', at };
      return { serve: 'local', at, onTimeout: 'fallback', onGone: 'fallback' };
    case 'exact':
      if (edge || c.rv < facts.oldestRevision) return { serve: 'fallback', at };
      return { serve: 'local', at, onTimeout: 'tooLarge', onGone: 'fallback' };
  }
}

function planWatch(
  request: Extract<ReadRequest, { verb: 'watch' }>,
  tier: Tier,
  facts: TierFacts,
): ServePlan {
  if (!facts.ready) return { serve: 'reject', reason: 'notReady' };
  const c = request.consistency;
  const at = stateOf(c);
  const edge = tier === 'edge';
  switch (c.kind) {
    case 'any':
      return CURRENT;
    case 'notOlderThan':
      return { serve: 'local', at, onTimeout: edge ? 'fallback' : 'tooLarge', onGone: 'fallback' };
    case 'mostRecent':
      if (request.initialEvents && !facts.consistentReadsFromCache) return { serve: 'fallback', at };
      return { serve: 'local', at, onTimeout: 'fallback', onGone: 'fallback' };
    case 'exact':
      if (c.rv < facts.oldestRevision) {
        return edge ? { serve: 'fallback', at } : { serve: 'reject', reason: 'expired' };
      }
      return edge
        ? { serve: 'local', at, onTimeout: 'fallback', onGone: 'fallback' }
        : { serve: 'local', at, onTimeout: 'tooLarge', onGone: 'expired' };
  }
}
