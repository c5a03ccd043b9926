/**
 * Reading a prefix out of etcd: the consistent paginated list a cache starts from, and the cheap
 * quorum read that tells a most-recent read which revision it must reach.
 */
import type { Etcd3, IKeyValue } from 'etcd3';
import { Expired } from '../../core/errors.ts';
import { keyAfterBytes } from '../../core/keys.ts';
import { makeObject } from '../../core/object.ts';
import type { KvObject, Revision } from '../../core/types.ts';

/** A whole prefix exactly as etcd held it at `revision`. */
export interface ListResult {
  readonly revision: Revision;
  /** In etcd's key order. */
  readonly objects: KvObject[];
}

export interface ListOptions {
  /** Keys per range request; bounds each response's size. Default 1,000. */
  readonly pageSize?: number;
  /** List at this revision instead of the current one (etcd answers 410 if it was compacted). */
  readonly revision?: Revision;
}

/**
 * Lists `prefix` page by page, every page pinned to the revision of the first, so the result is
 * one snapshot however many writes land while it is read (a plain paginated range would mix
 * revisions). Throws `Expired` when etcd compacts that revision before the last page is read;
 * the caller lists again.
 */
export async function listAt(client: Etcd3, prefix: string, options: ListOptions = {}): Promise<ListResult> {
  const objects: KvObject[] = [];
  const revision = await forEachPage(client, prefix, options, (page) => {
    for (const kv of page) objects.push(kvToObject(kv));
  });
  return { revision, objects };
}

/**
 * Reads `prefix` page by page at one revision (the first page's, or `options.revision`) and hands
 * each page to `onPage` before reading the next, so a caller that only folds the objects (a
 * digest) holds one page at a time. Resolves with the revision. Throws `Expired` when etcd has
 * compacted the revision and `FutureRevision` when etcd has not reached it.
 */
export async function forEachPage(
  client: Etcd3,
  prefix: string,
  options: ListOptions,
  onPage: (kvs: readonly IKeyValue[]) => void,
): Promise<Revision> {
  const pageSize = options.pageSize ?? 1_000;
  const rangeEnd = prefixEnd(Buffer.from(prefix, 'utf8'));
  let revision = options.revision ?? 0;
  let from = Buffer.from(prefix, 'utf8');
  for (;;) {
    const page = await rangeOrExpired(client, from, rangeEnd, pageSize, revision);
    if (revision === 0) revision = Number(page.header.revision);
    onPage(page.kvs);
    const last = page.kvs[page.kvs.length - 1];
    if (!page.more || last === undefined) return revision;
    from = Buffer.from(keyAfterBytes(last.key));
  }
}

/** etcd has not reached the revision asked for: in one history that cannot be, for a revision a cache saw. */
export class FutureRevision extends Error {
  override readonly name = 'FutureRevision';
}

/**
 * The revision a linearizable read sees now: everything etcd acknowledged before the call is at
 * or below it. It reads one key, keys-only, because the header revision is global (the same for
 * every key) and a count or a range over the prefix would walk the prefix's index in etcd.
 */
export async function currentRevision(client: Etcd3, prefix: string): Promise<Revision> {
  const res = await client.kv.range({ key: Buffer.from(prefix, 'utf8'), keys_only: true, limit: 1 });
  return Number(res.header.revision);
}

/** The API object for an etcd key-value pair (the key decoded as UTF-8). */
export function kvToObject(kv: IKeyValue): KvObject {
  return makeObject({
    key: kv.key.toString('utf8'),
    value: kv.value,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    lease: kv.lease,
  });
}

/**
 * The `range_end` that makes a range cover every key starting with `prefix`: the prefix with its
 * last byte below 0xff incremented and the rest dropped; `\0` (everything) for an empty or all-0xff
 * prefix, as etcd's `clientv3.GetPrefixRangeEnd`.
 */
export function prefixEnd(prefix: Uint8Array): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i];
    if (byte !== undefined && byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** Whether an etcd error says the requested revision was compacted away. */
export function isCompactedError(err: unknown): boolean {
  return err instanceof Error && err.message.includes('required revision has been compacted');
}

/** Whether an etcd error says the requested revision is above its current one. */
export function isFutureRevisionError(err: unknown): boolean {
  return err instanceof Error && err.message.includes('required revision is a future revision');
}

async function rangeOrExpired(
  client: Etcd3,
  key: Buffer,
  rangeEnd: Buffer,
  limit: number,
  revision: Revision,
) {
  try {
    return await client.kv.range({ key, range_end: rangeEnd, limit, revision });
  } catch (err) {
    if (isCompactedError(err)) throw new Expired(`revision ${revision} of the list was compacted by etcd`);
    if (isFutureRevisionError(err)) throw new FutureRevision(`etcd has not reached revision ${revision}`);
    throw err;
  }
}
