/**
 * The bounded window of recent changes: what lets a watch resume from an older revision, a
 * paused subscriber catch up, and the cache rewind its store to serve an Exact read.
 *
 * Like the apiserver's watch_cache_history, it holds whole revisions (`RevisionBatch`es) in a
 * ring, oldest first, and forgets the oldest when the window exceeds its bounds.
 *
 * Invariant: every change with revision in (startRevision, last held revision] is held, and
 * nothing at or below startRevision is. A watch "from n" (the changes with revision > n) is
 * servable from here iff n >= startRevision.
 */
import { Expired } from './errors.ts';
import { objectSize } from './object.ts';
import type { Clock, Revision, RevisionBatch } from './types.ts';

/** Bounds of the window; whichever is hit first trims the oldest revisions. */
export interface HistoryLimits {
  /**
   * Maximum number of events held. Default 100_000: the apiserver's watch cache grows to
   * 100 × 1024 events per resource when its 75 s window needs it; a relay caching one prefix plays
   * the same role. An event references objects that are shared with the store and responses, so
   * it costs roughly one superseded value (tens of MB for typical Kubernetes objects). A Durable
   * Object (128 MB) should pass a smaller limit and/or `maxBytes`.
   */
  readonly maxEvents?: number;
  /**
   * Revisions older than this (by arrival time) are dropped, default 75_000 ms (Kubernetes'
   * eventFreshDuration). A watcher or continue token older than that relists, as it would
   * against the apiserver. Infinity disables the age bound.
   */
  readonly maxAgeMs?: number;
  /** Maximum `objectSize` total of the events' objects and prevs. Default: unbounded. */
  readonly maxBytes?: number;
}

export const DEFAULT_MAX_EVENTS = 100_000;
export const DEFAULT_MAX_AGE_MS = 75_000;

interface Entry {
  readonly batch: RevisionBatch;
  readonly at: number;
  readonly bytes: number;
}

/** See the module comment. Synchronous; must not be used across awaits while mutated. */
export class EventHistory {
  readonly #clock: Clock;
  readonly #maxEvents: number;
  readonly #maxAgeMs: number;
  readonly #maxBytes: number;
  /** entries[head..] are the held revisions, oldest first; the dead prefix is compacted lazily. */
  #entries: Entry[] = [];
  #head = 0;
  #startRevision: Revision;
  #events = 0;
  #bytes = 0;

  constructor(clock: Clock, limits: HistoryLimits = {}, startRevision: Revision = 0) {
    this.#clock = clock;
    this.#maxEvents = limits.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.#maxAgeMs = limits.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.#maxBytes = limits.maxBytes ?? Number.POSITIVE_INFINITY;
    this.#startRevision = startRevision;
  }

  /** The oldest revision n from which every later change is held (see the invariant). */
  get startRevision(): Revision {
    return this.#startRevision;
  }

  /** The newest held revision, or startRevision when the window is empty. */
  get lastRevision(): Revision {
    const last = this.#entries[this.#entries.length - 1];
    return this.#head < this.#entries.length && last !== undefined
      ? last.batch.revision
      : this.#startRevision;
  }

  /** Number of revisions (batches) held. */
  get length(): number {
    return this.#entries.length - this.#head;
  }

  /** Number of events held (the `maxEvents` measure). */
  get eventCount(): number {
    return this.#events;
  }

  /** Estimated bytes held (the `maxBytes` measure). */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Appends one revision, then trims to the bounds. Throws (a bug in the caller) unless
   * `batch.revision` is above every revision already held and above startRevision.
   */
  push(batch: RevisionBatch): void {
    if (batch.revision <= this.lastRevision) {
      throw new Error(`history: revision ${batch.revision} is not after ${this.lastRevision}`);
    }
    let bytes = 0;
    for (const event of batch.events) {
      bytes += objectSize(event.object);
      if (event.prev !== undefined) bytes += objectSize(event.prev);
    }
    this.#entries.push({ batch, at: this.#clock.now(), bytes });
    this.#events += batch.events.length;
    this.#bytes += bytes;
    this.trim();
  }

  /**
   * Drops the oldest revisions while a bound is exceeded. `push` calls it; owners also call it
   * when time passes without writes (e.g. on progress) so the age bound holds in quiet periods.
   * The newest revision is kept even if it alone exceeds a count or size bound, so that a
   * single huge transaction does not empty the window.
   */
  trim(): void {
    const oldestAllowed = this.#clock.now() - this.#maxAgeMs;
    while (this.length > 0) {
      const oldest = this.#entries[this.#head] as Entry;
      const tooOld = oldest.at < oldestAllowed;
      const tooBig = this.length > 1 && (this.#events > this.#maxEvents || this.#bytes > this.#maxBytes);
      if (!tooOld && !tooBig) break;
      this.#head++;
      this.#events -= oldest.batch.events.length;
      this.#bytes -= oldest.bytes;
      this.#startRevision = oldest.batch.revision;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /**
   * The held revisions with revision > n, oldest first (a fresh array; the batches are shared).
   * Throws `Expired` when n < startRevision: some change after n has been forgotten.
   */
  since(n: Revision): RevisionBatch[] {
    if (n < this.#startRevision) {
      throw Expired.tooOld(n, this.#startRevision);
    }
    const out: RevisionBatch[] = [];
    for (let i = this.#indexAfter(n); i < this.#entries.length; i++) {
      out.push((this.#entries[i] as Entry).batch);
    }
    return out;
  }

  /**
   * The held revisions with revision > n, newest first: what to undo, in order, to rewind the
   * current state to revision n. Throws `Expired` like `since`.
   */
  newestFirst(n: Revision): RevisionBatch[] {
    return this.since(n).reverse();
  }

  /** Empties the window after a relist: changes after `revision` will be pushed next. */
  reset(revision: Revision): void {
    this.#entries = [];
    this.#head = 0;
    this.#events = 0;
    this.#bytes = 0;
    this.#startRevision = revision;
  }

  /** Index of the first held entry with revision > n (binary search). */
  #indexAfter(n: Revision): number {
    let lo = this.#head;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#entries[mid] as Entry).batch.revision <= n) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
