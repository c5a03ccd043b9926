/**
 * Encoded list bodies, kept per cache for the state they were read from, so that the same list
 * at the same revision — clients relisting a quiet prefix, most-recent reads with no write in
 * between — is answered by sending bytes already built instead of serialising every object
 * again. Serialising is most of a large list's cost (bench/ section 1).
 *
 * A body is only valid for one snapshot: entries are keyed by the snapshot's revision and the
 * request's shape (prefix, start key, limit). Bounded by count and bytes; least recently used
 * first out. The snapshot object itself identifies the state (a relist at the same revision
 * makes a new snapshot), so a stale body can never be served.
 */
import type { KeyReader } from './store.ts';

const MAX_ENTRIES = 8;
const MAX_BYTES = 64 * 1024 * 1024;
/** Lists smaller than this are cheap to build; caching them would only churn the cache. */
const MIN_ITEMS = 64;

interface Entry {
  /**
   * Weak: a kept body must not keep its snapshot's tree alive (the store copies the nodes it
   * writes, so an old snapshot can pin a whole old tree). Once the cache lets go of the
   * snapshot, the body can never be served again and waits to be evicted.
   */
  readonly snapshot: WeakRef<KeyReader>;
  readonly body: Uint8Array;
}

export class ListBodies {
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;

  /**
   * The body for `key` read from `snapshot`, building (and maybe keeping) it on a miss. `build`
   * may return the bytes already encoded (the Kubernetes front end joins per-object bytes).
   */
  get(snapshot: KeyReader, key: string, items: number, build: () => string | Uint8Array): Uint8Array {
    const cacheKey = `${snapshot.revision}\u0000${key}`;
    const hit = this.#entries.get(cacheKey);
    if (hit !== undefined && hit.snapshot.deref() === snapshot) {
      this.#entries.delete(cacheKey);
      this.#entries.set(cacheKey, hit);
      return hit.body;
    }
    const built = build();
    const body = typeof built === 'string' ? new TextEncoder().encode(built) : built;
    if (items < MIN_ITEMS || body.byteLength > MAX_BYTES / 2) return body;
    if (hit !== undefined) this.#remove(cacheKey, hit);
    this.#entries.set(cacheKey, { snapshot: new WeakRef(snapshot), body });
    this.#bytes += body.byteLength;
    for (const [k, e] of this.#entries) {
      if (this.#entries.size <= MAX_ENTRIES && this.#bytes <= MAX_BYTES) break;
      this.#remove(k, e);
    }
    return body;
  }

  #remove(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#bytes -= entry.body.byteLength;
  }
}
