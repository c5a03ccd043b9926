/**
 * Reads served straight from etcd: what the relay falls back to when its cache cannot prove it
 * holds the requested state (not loaded yet, an Exact revision older than its window, a
 * most-recent read on an etcd too old for consistent reads from cache, or a cache that did not
 * catch up in time). The responses are the same shape as the cache's, marked `X-Served-By: etcd`.
 */
import type { Etcd3 } from 'etcd3';
import { Expired, ServiceUnavailable, TooLargeResourceVersion } from '../../core/errors.ts';
import type { KvObject, Revision } from '../../core/types.ts';
import { isCompactedError, kvToObject, prefixEnd } from './lister.ts';

/** A consistent (linearizable) get of one key; `minRevision` is a NotOlderThan bound to check. */
export async function etcdGet(
  client: Etcd3,
  key: string,
  minRevision = 0,
): Promise<{ object: KvObject | undefined; revision: Revision }> {
  const res = await call(0, () => client.kv.range({ key: Buffer.from(key, 'utf8') }));
  const revision = Number(res.header.revision);
  if (revision < minRevision) throw new TooLargeResourceVersion(minRevision, revision);
  const kv = res.kvs[0];
  return { object: kv ? kvToObject(kv) : undefined, revision };
}

export interface EtcdListOptions {
  prefix: string;
  /** Read exactly at this revision; 0 = the current one (linearizable). */
  revision: Revision;
  /** With revision 0: fail with 504 when etcd is not yet at this revision. */
  minRevision?: Revision;
  limit?: number | undefined;
  /** Inclusive first key (from a continue token). */
  startKey?: string | undefined;
}

/**
 * One page of a list read from etcd at one revision: the items and how many keys follow them
 * (the read path pages it like a cache's snapshot, core/continue.ts).
 */
export async function etcdList(
  client: Etcd3,
  options: EtcdListOptions,
): Promise<{ items: KvObject[]; remaining: number; revision: Revision }> {
  const { prefix, limit } = options;
  const rangeEnd = prefixEnd(Buffer.from(prefix, 'utf8'));
  const from = Buffer.from(options.startKey ?? prefix, 'utf8');
  const res = await call(options.revision, () =>
    client.kv.range({
      key: from,
      range_end: rangeEnd,
      revision: options.revision,
      ...(limit ? { limit } : {}),
    }),
  );
  const revision = options.revision || Number(res.header.revision);
  if (options.minRevision !== undefined && revision < options.minRevision) {
    throw new TooLargeResourceVersion(options.minRevision, revision);
  }
  const items = res.kvs.map(kvToObject);
  const remaining = res.more ? Number(res.count) - items.length : 0;
  return { items, remaining, revision };
}

/** Maps etcd's failures to the API's: compacted → 410, anything else (unreachable) → 503. */
async function call<T>(requested: Revision, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isCompactedError(err)) throw new Expired('the requested revision has been compacted by etcd');
    if (err instanceof Error && /future revision/.test(err.message)) {
      throw new TooLargeResourceVersion(requested, requested - 1);
    }
    throw new ServiceUnavailable(`etcd is unavailable: ${err instanceof Error ? err.message : String(err)}`);
  }
}
