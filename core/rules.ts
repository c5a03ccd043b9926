/**
 * The serving rules: for one parsed read, which tier answers it and at which state. This is the
 * one place that encodes API.md "Who serves what" (STYLE.md §5; the apiserver's
 * `shouldDelegateList` plays this role), so the relay's HTTP layer and the edge's Durable Object
 * execute a plan instead of re-deciding.
 *
 * Get and list (`consistency` from core/request.ts):
 *
 *   consistency    | relay, ready                          | edge, ready
 *   ---------------+---------------------------------------+------------------------------------
 *   any            | local current                         | local current
 *   notOlderThan n | local ≥n, else 504 TooLarge           | local ≥n, else forward to relay
 *   mostRecent     | proof ? local latest, else etcd       | proof ? local latest, else forward
 *                  |       : etcd latest                   |       : relay
 *   exact n        | n ≥ oldest ? local exact n, else 504  | relay
 *   (continue)     |           : etcd exact n (etcd may    |
 *                  |             410 it if compacted)      |
 *   not ready      | etcd (any → latest)                   | relay
 *
 * Watch (`initialEvents` from core/request.ts):
 *
 *   start                      | relay, ready                    | edge, ready
 *   ---------------------------+---------------------------------+---------------------------------
 *   initial events, any        | local current                   | local current
 *   initial events, ≥n         | local ≥n, else 504              | local ≥n, else forward
 *   initial events, mostRecent | proof ? local latest, else 504  | proof ? local latest, else fwd
 *                              |       : etcd latest (*)         |       : relay
 *   changes after any          | local current                   | local current
 *   changes after mostRecent   | local latest (no wait needed)   | local latest (no wait needed)
 *   changes after n            | n ≥ oldest ? local exact n      | n ≥ oldest ? local exact n
 *                              |            : 410 Expired        |            : relay
 *   not ready                  | 429 (Kubernetes' cacher too)    | 429
 *
 * "proof" is `facts.consistentReadsFromCache`: the tier can make its state reach etcd's current
 * revision on demand (the relay requests a watch progress notification, reliable from etcd
 * 3.5.13; the edge asks the relay with `revisionRequest`). Without it a cache with no writes in
 * its prefix might never learn that it is current, so it cannot serve "most recent".
 * (*) The initial state comes from an etcd read; the changes after its revision from the cache.
 *
 * An edge forwards a too-old watch to the relay instead of answering 410: Durable Objects are
 * evicted and restart with a short history, and a 410 would make every client relist.
 */

import type { ReadRequest } from './request.ts';
import type { Revision } from './types.ts';

/** Where a plan is executed: the Node relay in front of etcd, or an edge replica. */
export type Tier = 'relay' | 'edge';

/**
 * What the serving tier knows about its own state when the request arrives. Taken once; the
 * facts only improve over time (a cache never moves backwards), so a plan stays valid.
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
 * needs to know the revision to start after — it never waits for its state to reach it.
 */
export type ReadAt = 'latest' | { readonly notOlderThan: Revision } | { readonly exact: Revision };

/** What to do when the tier does not reach the required revision within the wait (3 s). */
export type OnTimeout =
  /** Edge: send the request on to the relay. */
  | 'forward'
  /** Relay: read from etcd instead (as Kubernetes does for consistent reads from cache). */
  | 'etcd'
  /** 504 Timeout with cause ResourceVersionTooLarge (`TooLargeResourceVersion`). */
  | 'tooLarge';

/**
 * The plan for one read. Invariants: `etcd` only at the relay, `relay` only at the edge.
 * - `local` `current`: serve the tier's state now, no waiting.
 * - `local` with `at`: reach `at` (waiting at most the configured time), then serve locally.
 * - `etcd`: read from etcd at `at` (relay only); etcd answers 410 if `exact` was compacted.
 * - `relay`: forward the request unchanged to the relay (edge only).
 * - `reject`: `expired` → 410 `Expired`; `notReady` → 429 `TooManyRequests` with Retry-After.
 */
export type ServePlan =
  | { readonly serve: 'local'; readonly at: 'current' }
  | { readonly serve: 'local'; readonly at: ReadAt; readonly onTimeout: OnTimeout }
  | { readonly serve: 'etcd'; readonly at: ReadAt }
  | { readonly serve: 'relay' }
  | { readonly serve: 'reject'; readonly reason: 'expired' | 'notReady' };

const CURRENT: ServePlan = { serve: 'local', at: 'current' };
const RELAY: ServePlan = { serve: 'relay' };

/** Decides who serves `request` at `tier`, given the tier's `facts`. Pure; see the tables above. */
export function planRead(request: ReadRequest, tier: Tier, facts: TierFacts): ServePlan {
  return request.verb === 'watch' ? planWatch(request, tier, facts) : planGetOrList(request, tier, facts);
}

function planGetOrList(
  request: Exclude<ReadRequest, { verb: 'watch' }>,
  tier: Tier,
  facts: TierFacts,
): ServePlan {
  const c = request.consistency;
  const onTimeout: OnTimeout = tier === 'edge' ? 'forward' : 'tooLarge';
  if (!facts.ready) {
    if (tier === 'edge') return RELAY;
    return {
      serve: 'etcd',
      at:
        c.kind === 'notOlderThan' ? { notOlderThan: c.rv } : c.kind === 'exact' ? { exact: c.rv } : 'latest',
    };
  }
  switch (c.kind) {
    case 'any':
      return CURRENT;
    case 'notOlderThan':
      return { serve: 'local', at: { notOlderThan: c.rv }, onTimeout };
    case 'mostRecent':
      if (!facts.consistentReadsFromCache) return tier === 'edge' ? RELAY : { serve: 'etcd', at: 'latest' };
      return { serve: 'local', at: 'latest', onTimeout: tier === 'edge' ? 'forward' : 'etcd' };
    case 'exact':
      if (tier === 'edge') return RELAY;
      if (c.rv < facts.oldestRevision) return { serve: 'etcd', at: { exact: c.rv } };
      return { serve: 'local', at: { exact: c.rv }, onTimeout };
  }
}

function planWatch(
  request: Extract<ReadRequest, { verb: 'watch' }>,
  tier: Tier,
  facts: TierFacts,
): ServePlan {
  if (!facts.ready) return { serve: 'reject', reason: 'notReady' };
  const c = request.consistency;
  const onTimeout: OnTimeout = tier === 'edge' ? 'forward' : 'tooLarge';
  switch (c.kind) {
    case 'any':
      return CURRENT;
    case 'notOlderThan':
      return { serve: 'local', at: { notOlderThan: c.rv }, onTimeout };
    case 'mostRecent':
      if (request.initialEvents && !facts.consistentReadsFromCache) {
        return tier === 'edge' ? RELAY : { serve: 'etcd', at: 'latest' };
      }
      return { serve: 'local', at: 'latest', onTimeout };
    case 'exact':
      if (c.rv < facts.oldestRevision)
        return tier === 'edge' ? RELAY : { serve: 'reject', reason: 'expired' };
      return { serve: 'local', at: { exact: c.rv }, onTimeout };
  }
}
