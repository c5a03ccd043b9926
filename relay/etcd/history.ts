/**
 * What etcd can say about its own history, for the relay's history checks (relay/history-guard.ts):
 * the digest of a prefix at a past revision, and whether a revision has been compacted.
 *
 * Both are reads etcd serves from its MVCC store at a pinned revision, so they answer for exactly
 * that revision however many writes land meanwhile; neither writes anything.
 */
import type { Etcd3 } from 'etcd3';
import { addEntry, type Digest, EMPTY_DIGEST } from '../../core/digest.ts';
import type { Revision } from '../../core/types.ts';
import { forEachPage, isCompactedError, kvToObject } from './lister.ts';

/** The digest of `prefix` at `revision`, with what reading it cost. */
export interface EtcdDigest {
  readonly digest: Digest;
  readonly objects: number;
  /** Range requests made (pages of `pageSize`). */
  readonly pages: number;
  /** Key and value bytes etcd sent. */
  readonly bytes: number;
}

/**
 * The digest (core/digest.ts) of every key under `prefix` as etcd held it at `revision`: a
 * revision-pinned, paginated range, folded page by page (one page in memory at a time). Throws
 * `Expired` when the revision is compacted and `FutureRevision` when etcd has not reached it.
 */
export async function etcdDigestAt(
  client: Etcd3,
  prefix: string,
  revision: Revision,
  pageSize = 1_000,
): Promise<EtcdDigest> {
  let digest = EMPTY_DIGEST;
  let objects = 0;
  let pages = 0;
  let bytes = 0;
  await forEachPage(client, prefix, { revision, pageSize }, (kvs) => {
    pages++;
    for (const kv of kvs) {
      digest = addEntry(digest, kvToObject(kv));
      bytes += kv.key.length + kv.value.length;
      objects++;
    }
  });
  return { digest, objects, pages, bytes };
}

/**
 * Whether etcd has compacted `revision`: a one-key, keys-only range pinned to it, which etcd
 * refuses once the revision is compacted (the cheapest question that gets etcd to say so).
 * Resolves `false` for a revision etcd still serves; rejects when etcd cannot be asked.
 */
export async function isCompacted(client: Etcd3, prefix: string, revision: Revision): Promise<boolean> {
  try {
    await client.kv.range({ key: Buffer.from(prefix, 'utf8'), revision, limit: 1, keys_only: true });
    return false;
  } catch (error) {
    if (isCompactedError(error)) return true;
    throw error;
  }
}
