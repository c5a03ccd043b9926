/**
 * Who may answer a read, by core/rules.ts: the contract checks each 200's `X-Served-By` against
 * the plan for its request, not against "any tier", so an edge that forwarded everything (or a
 * relay that sent everything to etcd) fails it.
 *
 * The suite's tiers are ready and current (the edge's link is up, the relay knows etcd supports
 * consistent reads from cache), but how long a wait takes, and so whether a plan's timeout
 * fallback runs, is up to the machine; and the suite does not know where the relay's window
 * starts. So the answer is every server the plan allows: the tier itself for a local plan, plus
 * the chain behind it where the plan falls back on a timeout, a state gone from the window or
 * an rv older than the window.
 */
import { parseReadRequest, type ReadRequest } from '../../core/request.ts';
import { planRead, type Tier, type TierFacts } from '../../core/rules.ts';

/** The servers a 200 for `url` may come from when read at `tier`. */
export function allowedServers(tier: Tier, url: URL, exposedPrefixes: readonly string[]): string[] {
  const request = parseReadRequest(url.pathname, url.searchParams, { exposedPrefixes });
  return [...serversFor(tier, request)];
}

function serversFor(tier: Tier, request: ReadRequest): Set<string> {
  const servers = new Set<string>();
  // The window's start is unknown to the suite: plan with the rv inside it and outside it.
  for (const oldestRevision of [0, Number.MAX_SAFE_INTEGER]) {
    const facts: TierFacts = { ready: true, revision: 0, oldestRevision, consistentReadsFromCache: true };
    const plan = planRead(request, tier, facts);
    const behind = () => (tier === 'edge' ? serversFor('relay', request) : new Set(['etcd']));
    if (plan.serve === 'fallback') {
      for (const s of behind()) servers.add(s);
    } else if (plan.serve === 'local') {
      servers.add(tier);
      if (plan.at !== 'current' && (plan.onTimeout === 'fallback' || plan.onGone === 'fallback')) {
        for (const s of behind()) servers.add(s);
      }
    }
  }
  return servers;
}
