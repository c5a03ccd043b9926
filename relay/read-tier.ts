/**
 * The relay as a `ReadTier` (core/read-api.ts): its caches are the PrefixCaches, "latest" is a
 * quorum read, and its fallback is etcd: it reads etcd's state and serves it like the cache's.
 */
import type { Etcd3 } from 'etcd3';
import type { Authorizer } from '../core/auth.ts';
import type { MetricsSink } from '../core/metrics.ts';
import type { ReadTier } from '../core/read-api.ts';
import type { ReadRequest } from '../core/request.ts';
import type { ReadAt } from '../core/rules.ts';
import { FetchedPage, type KeyReader } from '../core/store.ts';
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
    fallback: async (request, at) => ({
      kind: 'state',
      servedBy: 'etcd',
      reader: await readFromEtcd(client, request, at),
    }),
    onError: (error, request) =>
      log.error('unexpected error serving a read', {
        path: new URL(request.url).pathname,
        error: error instanceof Error ? error.message : String(error),
      }),
    ...(options.onWatch ? { onWatch: options.onWatch } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
  };
}

/**
 * etcd's state at `at` for `request`: the key of a get, the page of a list, the whole prefix for
 * a watch's initial events. etcd answers 410 for a compacted Exact revision.
 */
async function readFromEtcd(client: Etcd3, request: ReadRequest, at: ReadAt): Promise<KeyReader> {
  const minRevision = at !== 'latest' && 'notOlderThan' in at ? at.notOlderThan : 0;
  if (request.verb === 'get') {
    const { object, revision } = await etcdGet(client, request.key, minRevision);
    return new FetchedPage(revision, object ? [object] : [], 0);
  }
  const exact = at !== 'latest' && 'exact' in at ? at.exact : 0;
  const pagination = request.verb === 'list' ? request.pagination : {};
  const { items, remaining, revision } = await etcdList(client, {
    prefix: request.prefix,
    revision: exact,
    minRevision,
    limit: pagination.limit,
    startKey: pagination.continue?.start,
  });
  return new FetchedPage(revision, items, remaining);
}
