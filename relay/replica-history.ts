/**
 * History identity on the replication stream, the relay's side (core/protocol.ts "History
 * identity"): whether a replica's stored state, named in its hello by a revision and the digest
 * at it, belongs to the history the relay's cache holds, and the digest the relay attaches to
 * what it sends.
 *
 *   hello {fromRevision r, digest d}
 *     ├─ r > cache revision ── etcd's head < r ─► snapshot, newHistory (etcd never reached r)
 *     │                     └─ else wait for the cache to reach r (else plain snapshot) ─┐
 *     ├─ r below the window ─► plain snapshot (newer than r: the replica replaces its state) │
 *     └─ cache digest at r ≠ d ─► snapshot, newHistory ◄────────────────────────────────────┘
 *                         = d ─► resume after r
 *
 * Within one history a restarted relay lists at etcd's head, never behind what any replica
 * received, so a replica ahead of the relay's cache is either about to be passed or from
 * another history; etcd's head tells which.
 */
import { type Digest, formatDigest } from '../core/digest.ts';
import { ServiceUnavailable, TooLargeResourceVersion } from '../core/errors.ts';
import type { HelloMessage } from '../core/protocol.ts';
import type { Revision } from '../core/types.ts';
import type { ReplicationSource } from './replica-stream.ts';

export type ReplicaStart =
  | { readonly mode: 'resume'; readonly from: Revision }
  | { readonly mode: 'snapshot'; readonly newHistory: boolean };

/** How the stream for `hello` starts (see the module comment). */
export async function replicaStart(
  source: ReplicationSource,
  hello: HelloMessage,
  waitTimeoutMs: number,
): Promise<ReplicaStart> {
  const from = hello.fromRevision;
  const cache = source.cache;
  if (from === undefined) return { mode: 'snapshot', newHistory: false };
  if (from > cache.revision) {
    let head: Revision;
    try {
      head = await source.latestRevision();
    } catch (error) {
      // The relay's own cache is being replaced (its etcd changed history) or etcd is away.
      throw new ServiceUnavailable(`the relay cannot check the replica's history now: ${String(error)}`);
    }
    if (head < from) return { mode: 'snapshot', newHistory: true };
    try {
      await cache.waitFor(from, waitTimeoutMs);
    } catch (error) {
      if (error instanceof TooLargeResourceVersion) return { mode: 'snapshot', newHistory: false };
      throw error;
    }
  }
  if (from < cache.history.startRevision) return { mode: 'snapshot', newHistory: false };
  const mine = cache.digestAt(from);
  if (hello.digest !== undefined && mine !== undefined && formatDigest(mine) !== hello.digest)
    return { mode: 'snapshot', newHistory: true };
  return { mode: 'resume', from };
}

/** `{ digest }` of the source's cache at `revision` when the window still knows it, else `{}`. */
export function digestField(source: ReplicationSource | undefined, revision: Revision): { digest?: string } {
  const digest: Digest | undefined = source?.cache.digestAt(revision);
  return digest === undefined ? {} : { digest: formatDigest(digest) };
}
