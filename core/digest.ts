/**
 * An order-independent digest of a prefix's state: what lets every tier prove, cheaply and
 * continuously, that it holds exactly what etcd (or the tier above) holds at a revision.
 *
 * The digest of a set of objects is the sum, modulo 2^64, of one 64-bit hash per object, taken
 * over every field the API serves (key, createRevision, modRevision, version, value, lease).
 * Because addition commutes, the digest does not depend on the order the objects are seen in:
 * the relay computes it over etcd's paginated range, a replica over its SQLite rows, the watch
 * cache incrementally as events apply — and all agree exactly when the states agree. One event
 * costs O(1): subtract the old entry's hash, add the new one's.
 *
 * Why a sum and not XOR: with XOR two equal entries cancel, so any corruption that duplicated
 * an entry into two places would vanish; a sum keeps counting it. Why 64 bits: a random
 * mismatch goes unnoticed with probability 2^-64 per check, and the digest fits in 16 hex chars
 * on the wire. The per-entry hash is SHA-256 (@noble/hashes, the same code in Node and workerd)
 * over an unambiguous encoding (a JSON array), truncated to its first 8 bytes.
 *
 * Pure: no I/O, no clock; the relay, the replica and their tests run this very code.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { keyAfter } from './keys.ts';
import { encoded, keyJson } from './object.ts';
import type { KeyReader } from './store.ts';
import type { KvObject, Revision } from './types.ts';

/** A digest: an unsigned 64-bit integer. */
export type Digest = bigint;

/** The digest of the empty state. */
export const EMPTY_DIGEST: Digest = 0n;

const MASK = (1n << 64n) - 1n;

/**
 * Entry hashes of frozen objects, computed once: every event hashes the object it adds and the
 * one it replaces, and the replaced one was hashed when it was added. Profiled in workerd at
 * etcd's max write rate, hashing was a third of a replica's thread before this. A frozen object
 * cannot change, so its hash cannot either; the entry dies with the object.
 */
const entryHashes = new WeakMap<KvObject, Digest>();

/** The 64-bit hash of one object (memoized for frozen objects, which every tier's objects are). */
export function entryHash(o: KvObject): Digest {
  const known = entryHashes.get(o);
  if (known !== undefined) return known;
  const hash = hashEntry(o);
  if (Object.isFrozen(o)) entryHashes.set(o, hash);
  return hash;
}

/**
 * SHA-256 of `JSON.stringify([key, createRevision, modRevision, version, value ?? null,
 * valueBase64 ?? null, lease ?? null])`, unambiguous for any key or value; the text is written
 * from the object's kept JSON (core/object.ts), without decoding the value.
 */
function hashEntry(o: KvObject): Digest {
  const e = encoded(o);
  const value = e.base64 ? `null,${e.valueJson}` : `${e.valueJson},null`;
  const lease = e.lease === undefined ? 'null' : JSON.stringify(e.lease);
  const text = `[${keyJson(e.key)},${e.createRevision},${e.modRevision},${e.version},${value},${lease}]`;
  const h = sha256(utf8ToBytes(text));
  return new DataView(h.buffer, h.byteOffset, 8).getBigUint64(0);
}

/** `digest` with `object` added. */
export function addEntry(digest: Digest, object: KvObject): Digest {
  return (digest + entryHash(object)) & MASK;
}

/** `digest` with `object` (which it must contain) taken out. */
export function removeEntry(digest: Digest, object: KvObject): Digest {
  return (digest - entryHash(object)) & MASK;
}

/** The digest of a whole state, in any order. O(n). */
export function digestOf(objects: Iterable<KvObject>): Digest {
  let digest = EMPTY_DIGEST;
  for (const object of objects) digest = (digest + entryHash(object)) & MASK;
  return digest;
}

/**
 * The digest of everything `reader` (an immutable snapshot) holds, `slice` objects at a time with
 * `pause()` awaited between slices, so that hashing a large state (a self-check) never holds the
 * thread for long: other work runs between the slices, and the snapshot does not change meanwhile.
 */
export async function digestInSlices(
  reader: KeyReader,
  pause: () => Promise<void>,
  slice = 2_000,
): Promise<Digest> {
  let digest = EMPTY_DIGEST;
  let startKey: string | undefined;
  for (;;) {
    const page = reader.list('', { ...(startKey !== undefined ? { startKey } : {}), limit: slice });
    for (const object of page.items) digest = (digest + entryHash(object)) & MASK;
    const last = page.items.at(-1);
    if (last === undefined || page.remaining === 0) return digest;
    startKey = keyAfter(last.key);
    await pause();
  }
}

/** The wire form: 16 lowercase hex digits. */
export function formatDigest(digest: Digest): string {
  return digest.toString(16).padStart(16, '0');
}

const HEX16 = /^[0-9a-f]{16}$/;

/** Parses the wire form; undefined when it is not 16 lowercase hex digits. */
export function parseDigest(text: string): Digest | undefined {
  return HEX16.test(text) ? BigInt(`0x${text}`) : undefined;
}

/**
 * The digest after each revision that changed the state, for the revisions a cache's window
 * still covers, so that "what was the digest at R?" is answered for any R in the window: the
 * digest after the last change at or before R.
 *
 * Invariant: revisions strictly increase; entries below `startRevision` (set by `trim`) are
 * dropped, except the newest of them, which still describes every R from it up to the next one.
 */
export class DigestTimeline {
  #revisions: Revision[] = [];
  #digests: Digest[] = [];
  #head = 0;

  /** Forgets everything: the state at `revision` has `digest`. */
  reset(revision: Revision, digest: Digest): void {
    this.#revisions = [revision];
    this.#digests = [digest];
    this.#head = 0;
  }

  /** After a change at `revision` (above every one recorded), the state has `digest`. */
  push(revision: Revision, digest: Digest): void {
    const last = this.#revisions[this.#revisions.length - 1];
    if (last !== undefined && revision <= last) {
      throw new Error(`digest timeline: revision ${revision} is not after ${last}`);
    }
    this.#revisions.push(revision);
    this.#digests.push(digest);
  }

  /** Drops what no revision >= `startRevision` needs. */
  trim(startRevision: Revision): void {
    while (
      this.#head + 1 < this.#revisions.length &&
      (this.#revisions[this.#head + 1] ?? 0) <= startRevision
    ) {
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#revisions.length) {
      this.#revisions = this.#revisions.slice(this.#head);
      this.#digests = this.#digests.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The digest at `revision`, or undefined when it is before the oldest recorded change. */
  at(revision: Revision): Digest | undefined {
    let lo = this.#head;
    let hi = this.#revisions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#revisions[mid] ?? 0) <= revision) lo = mid + 1;
      else hi = mid;
    }
    return lo === this.#head ? undefined : this.#digests[lo - 1];
  }
}
