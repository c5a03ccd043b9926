/**
 * Sending a snapshot on a replica link: the state of one prefix at one revision, read page by
 * page from an O(1) snapshot of the cache (so the cache moves on meanwhile) and packed into
 * `snapshotChunk` messages of about TARGET_MESSAGE_BYTES, between `snapshotStart` and
 * `snapshotEnd`. After each chunk it waits until the socket has taken what was sent, so a slow
 * replica holds one chunk's worth in the relay's memory, not the whole prefix.
 *
 *     snapshotStart {revision, total[, newHistory]} ─► snapshotChunk × n ─► snapshotEnd {revision, digest}
 *                        (stops quietly, without snapshotEnd, when `current()` turns false)
 */
import { formatDigest } from '../core/digest.ts';
import { keyAfter } from '../core/keys.ts';
import { objectSize } from '../core/object.ts';
import { type RelayMessage, TARGET_MESSAGE_BYTES } from '../core/protocol.ts';
import type { KvObject, Revision } from '../core/types.ts';
import type { ReplicationSource } from './replica-types.ts';

/** Objects read from the snapshot per page while packing chunks. */
const SNAPSHOT_PAGE = 512;

export interface SnapshotLink {
  send(message: RelayMessage): void;
  /** Resolves when the socket has taken what was sent (or the link closed). */
  drained(): Promise<void>;
  /** False once the link closed or a newer snapshot started: stop sending this one. */
  current(): boolean;
}

/**
 * Sends the state at the cache's revision now; `begin(revision)` runs synchronously first (the
 * caller subscribes to the live tail from that revision in the same step, so nothing falls in
 * between). Resolves with the revision when `snapshotEnd` was sent, or undefined when stopped.
 */
export async function sendSnapshot(
  source: ReplicationSource,
  link: SnapshotLink,
  newHistory: boolean,
  begin: (revision: Revision) => void,
): Promise<Revision | undefined> {
  const snapshot = source.cache.snapshot();
  const revision = snapshot.revision;
  const digest = formatDigest(source.cache.digest);
  begin(revision);
  const head = snapshot.list(source.prefix, { limit: 1 });
  link.send({
    v: 1,
    type: 'snapshotStart',
    revision,
    total: head.items.length + head.remaining,
    ...(newHistory ? { newHistory: true } : {}),
  });
  let chunk: KvObject[] = [];
  let bytes = 0;
  let startKey: string | undefined;
  for (;;) {
    const page = snapshot.list(source.prefix, { ...(startKey ? { startKey } : {}), limit: SNAPSHOT_PAGE });
    for (const object of page.items) {
      chunk.push(object);
      bytes += objectSize(object);
      if (bytes < TARGET_MESSAGE_BYTES) continue;
      link.send({ v: 1, type: 'snapshotChunk', objects: chunk });
      chunk = [];
      bytes = 0;
      await link.drained();
      if (!link.current()) return undefined;
    }
    const last = page.items.at(-1);
    if (last === undefined || page.remaining === 0) break;
    startKey = keyAfter(last.key);
  }
  if (chunk.length > 0) link.send({ v: 1, type: 'snapshotChunk', objects: chunk });
  link.send({ v: 1, type: 'snapshotEnd', revision, digest });
  return revision;
}
