/**
 * The relay as a `ReadTier` (core/read-api.ts): its caches are the PrefixCaches, "latest" is a
 * quorum read, and the plan's `etcd` reads go straight to etcd.
 */
import type { Etcd3 } from 'etcd3';
import type { Authorizer } from '../core/auth.ts';
import { getResponse, listResponse } from '../core/format.ts';
import type { MetricsSink } from '../core/metrics.ts';
import type { ReadTier } from '../core/read-api.ts';
import type { GetRequest, ListRequest } from '../core/request.ts';
import type { ReadAt } from '../core/rules.ts';
import type { Clock } from '../core/types.ts';
import { etcdGet, etcdList } from './etcd/reads.ts';
import type { Logger } from './log.ts';
import type { PrefixCache } from './prefix-cache.ts';

export interface RelayTierOptions {
  client: Etcd3;
  caches: ReadonlyMap<string, PrefixCache>;
  clock: Clock;
  waitTimeoutMs: number;
  consistentReadsFromCache: () => boolean;
  continueSecret?: string | undefined;
  /** The current client tokens (reloaded in place). */
  authorizer: () => Authorizer;
  log: Logger;
  onWatch?: (delta: 1 | -1) => void;
  metrics?: MetricsSink;
}

export function relayTier(options: RelayTierOptions): ReadTier {
  const { client, caches, log } = options;
  return {
    tier: 'relay',
    exposedPrefixes: [...caches.keys()],
    clock: options.clock,
    waitTimeoutMs: options.waitTimeoutMs,
    continueSecret: options.continueSecret,
    get consistentReadsFromCache() {
      return options.consistentReadsFromCache();
    },
    cache: (prefix) => caches.get(prefix)?.cache,
    latestRevision: async (prefix) => {
      const cache = caches.get(prefix);
      if (!cache) throw new Error(`no cache for ${prefix}`);
      return cache.latestRevision();
    },
    checkExact: async (prefix, revision) => caches.get(prefix)?.checkExact(revision),
    authorize: (request, raw) => {
      options.authorizer().check(raw.headers.get('Authorization'), request);
    },
    fromEtcd: (request, at, raw) => readFromEtcd(client, request, at, raw, options.continueSecret),
    onError: (error, request) =>
      log.error('unexpected error serving a read', {
        path: new URL(request.url).pathname,
        error: error instanceof Error ? error.message : String(error),
      }),
    ...(options.onWatch ? { onWatch: options.onWatch } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
  };
}

async function readFromEtcd(
  client: Etcd3,
  request: GetRequest | ListRequest,
  at: ReadAt,
  raw: Request,
  continueSecret: string | undefined,
): Promise<Response> {
  const minRevision = at !== 'latest' && 'notOlderThan' in at ? at.notOlderThan : 0;
  if (request.verb === 'get') {
    const { object, revision } = await etcdGet(client, request.key, minRevision);
    return getResponse(request.key, object, { servedBy: 'etcd', revision }, raw.headers.get('If-None-Match'));
  }
  const exact = at !== 'latest' && 'exact' in at ? at.exact : 0;
  const { page, revision } = await etcdList(client, {
    prefix: request.prefix,
    revision: exact,
    minRevision,
    limit: request.pagination.limit,
    startKey: request.pagination.continue?.start,
    continueSecret,
  });
  return listResponse(page, { servedBy: 'etcd', revision });
}
