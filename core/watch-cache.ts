/**
 * The watch cache: the current state, the recent changes and the subscribers of one cached
 * prefix, fed through `CacheSink`. The relay feeds it from etcd, an edge replica from the
 * relay's stream; both serve reads and watches from it (the apiserver's watch_cache.go).
 *
 * Invariants:
 * - `revision` never goes backwards except through `replace` (a relist), and the store's
 *   contents are exactly etcd's state at `revision` for the prefix.
 * - Every change in (history.startRevision, revision] is in the history, so the state at any
 *   revision in [history.startRevision, revision] can be rebuilt by undoing batches.
 * - Every batch is applied to the store, pushed to the history and published to the fan-out in
 *   one synchronous step; a reader never sees one without the others.
 *
 *     new ──replace──► ready ──apply/progress──► ready (revision grows)
 *                        ▲                          │
 *                        └────────replace───────────┘   (subscribers not at the new revision get 410)
 */
import { addEntry, type Digest, DigestTimeline, digestOf, EMPTY_DIGEST, removeEntry } from './digest.ts';
import { Expired, HistoryChanged, TooLargeResourceVersion } from './errors.ts';
import { Fanout, type SubscribeOptions, type Subscription } from './fanout.ts';
import { EventHistory, type HistoryLimits } from './history.ts';
import { type CacheMetrics, M, noMetrics, startTimer, terminationReason } from './metrics.ts';
import { encoded } from './object.ts';
import { KeyStore, type StoreSnapshot } from './store.ts';
import type { CacheSink, Cancel, ChangeEvent, Clock, KvObject, Revision, RevisionBatch } from './types.ts';

export interface WatchCacheOptions extends HistoryLimits {
  readonly clock: Clock;
  /** Materialised past snapshots kept for repeated Exact reads (paginated lists). Default 4. */
  readonly snapshotCacheSize?: number;
  /** Where events received, dispatched, waits and terminated watchers are counted. */
  readonly metrics?: CacheMetrics;
}

interface Waiter {
  readonly target: Revision;
  readonly resolve: () => void;
  readonly cancelTimer: Cancel;
}

/** See the module comment. Synchronous apart from `waitFor`; callers must not await mid-apply. */
export class WatchCache implements CacheSink {
  readonly history: EventHistory;
  readonly fanout: Fanout;
  readonly #clock: Clock;
  readonly #snapshotCacheSize: number;
  readonly #metrics: CacheMetrics;
  /**
   * Events handed to watchers, one per event per watcher. A plain count, read at scrape time
   * (edgewatch_watch_cache_events_dispatched_total): a metrics call per delivery would cost a
   * label lookup per event per watcher, which is most of the fan-out's work at 100+ watchers.
   */
  #dispatched = 0;
  #store = new KeyStore();
  #ready = false;
  /** The snapshot at the current revision, shared by readers until the next write. */
  #current: StoreSnapshot | undefined;
  /** Past snapshots by revision, least recently used first (Map keeps insertion order). */
  #past = new Map<Revision, StoreSnapshot>();
  #waiters = new Set<Waiter>();
  #revisionListeners = new Set<(revision: Revision) => void>();
  #waitListeners = new Set<(target: Revision) => void>();
  /** Digest of the store's contents (core/digest.ts), kept as events apply; O(1) per event. */
  #digest: Digest = EMPTY_DIGEST;
  readonly #digests = new DigestTimeline();

  constructor(options: WatchCacheOptions) {
    this.#clock = options.clock;
    this.#snapshotCacheSize = options.snapshotCacheSize ?? 4;
    this.#metrics = options.metrics ?? { sink: noMetrics, prefix: '' };
    this.history = new EventHistory(options.clock, options);
    this.fanout = new Fanout(this.history);
  }

  /** The revision the cache is current to (0 until the first `replace`). */
  get revision(): Revision {
    return this.#store.revision;
  }

  /** False until the first `replace`: before that, the cache must not answer reads. */
  get ready(): boolean {
    return this.#ready;
  }

  /** Events handed to watchers so far, one per event per watcher (counted only with metrics). */
  get eventsDispatched(): number {
    return this.#dispatched;
  }

  /** Number of keys held now. */
  get size(): number {
    return this.#store.size;
  }

  /** Number of pending `waitFor` calls (the relay asks etcd for progress while this is > 0). */
  get waiting(): number {
    return this.#waiters.size;
  }

  /** The digest of the state at `revision` (core/digest.ts). */
  get digest(): Digest {
    return this.#digest;
  }

  /**
   * The digest of the state at `n`, for n in [history.startRevision, revision]; undefined
   * outside (not ready, too old, or not reached yet).
   */
  digestAt(n: Revision): Digest | undefined {
    if (!this.#ready || n > this.revision || n < this.history.startRevision) return undefined;
    return this.#digests.at(n);
  }

  /**
   * The digest recomputed from the stored objects themselves, O(n): what the periodic self-check
   * compares, so that a store changed behind the cache's back (a bug, bad memory) is caught too.
   */
  recomputeDigest(): Digest {
    return digestOf(this.snapshot().list('').items);
  }

  // --- CacheSink ---

  /**
   * `options.newHistory`: the new state belongs to another etcd history (etcd was wiped or
   * restored, or a self-check found the old state wrong). Every subscriber is then closed with
   * `error` (a 410), even one at `revision`: what it was sent is not part of this history.
   */
  replace(revision: Revision, objects: readonly KvObject[], options: { newHistory?: Error } = {}): void {
    // A subscriber exactly at `revision` may continue only if the old state there is the new one:
    // a relist that lands on a revision the cache held with other contents is another history.
    const before = this.digestAt(revision);
    this.#store = new KeyStore(objects, revision);
    this.#ready = true;
    this.#current = undefined;
    this.#past.clear();
    this.#digest = digestOf(objects);
    this.#digests.reset(revision, this.#digest);
    this.history.reset(revision);
    const other =
      options.newHistory ??
      (before !== undefined && before !== this.#digest
        ? new HistoryChanged(`the state at revision ${revision} changed: etcd holds another history`)
        : undefined);
    if (other) this.fanout.closeAll(other);
    this.fanout.reset(revision);
    this.#advanced();
  }

  /**
   * Drops the state (it belongs to another history, or was found corrupt) until the next
   * `replace`: the cache is not ready, so nothing is served from it, and every subscriber is
   * closed with `error` (a 410) so that its client relists.
   */
  invalidate(error: Expired): void {
    this.#store = new KeyStore();
    this.#ready = false;
    this.#current = undefined;
    this.#past.clear();
    this.#digest = EMPTY_DIGEST;
    this.#digests.reset(0, EMPTY_DIGEST);
    this.history.reset(0);
    this.fanout.closeAll(error);
    this.fanout.reset(0);
  }

  /**
   * Test hook for the self-checks: replaces one stored object behind the cache's back (no event,
   * no digest update), as memory corruption or a bug would. Never called outside tests.
   */
  corruptForTest(object: KvObject): void {
    this.#store.set(object);
    this.#current = undefined;
    this.#past.clear();
  }

  apply(batch: RevisionBatch): void {
    if (!this.#ready) throw new Error('watch cache: apply before the first replace');
    if (batch.revision <= this.revision) {
      throw new Error(`watch cache: batch at ${batch.revision} is not after ${this.revision}`);
    }
    const events = batch.events.map((event) => this.#applyEvent(event));
    const normalised: RevisionBatch = events.every((e, i) => e === batch.events[i])
      ? batch
      : { revision: batch.revision, events };
    this.#store.revision = batch.revision;
    this.#current = undefined;
    this.history.push(normalised);
    this.#digests.push(batch.revision, this.#digest);
    this.#digests.trim(this.history.startRevision);
    this.#metrics.sink.count(M.eventsReceived, { prefix: this.#metrics.prefix }, events.length);
    this.fanout.publish(normalised);
    this.#advanced();
  }

  progress(revision: Revision): void {
    if (!this.#ready || revision <= this.revision) return;
    this.#store.revision = revision;
    this.#current = this.#current?.at(revision);
    this.history.trim();
    this.#digests.trim(this.history.startRevision);
    this.fanout.progress(revision);
    this.#advanced();
  }

  // --- reads ---

  /** The state at the current revision; O(1), immutable, safe to hold across awaits. */
  snapshot(): StoreSnapshot {
    this.#current ??= this.#store.snapshot();
    return this.#current;
  }

  /**
   * The state exactly at revision n, for n in [history.startRevision, revision]: the current
   * store, cloned, with the batches after n undone through their `prev`s. Cost O(changes after n
   * · log size) on a miss; the last few are kept, because paginated lists re-read one revision.
   * A kept snapshot is served even after n left the window (it is still exactly etcd's state).
   *
   * Throws `Expired` when n < history.startRevision (and not kept), and
   * `TooLargeResourceVersion` when n > revision (the caller should `waitFor(n)` first).
   */
  snapshotAt(n: Revision): StoreSnapshot {
    if (n === this.revision) return this.snapshot();
    if (n > this.revision) throw new TooLargeResourceVersion(n, this.revision);
    const kept = this.#past.get(n);
    if (kept !== undefined) {
      this.#past.delete(n);
      this.#past.set(n, kept);
      return kept;
    }
    if (n < this.history.startRevision) {
      throw Expired.tooOld(n, this.history.startRevision);
    }
    const rewound = this.#store.clone();
    for (const batch of this.history.newestFirst(n)) {
      for (let i = batch.events.length - 1; i >= 0; i--) {
        const event = batch.events[i] as ChangeEvent;
        if (event.prev !== undefined) rewound.set(event.prev);
        else rewound.delete(event.object.key);
      }
    }
    rewound.revision = n;
    const snapshot = rewound.snapshot();
    this.#past.set(n, snapshot);
    if (this.#past.size > this.#snapshotCacheSize) {
      const oldest = this.#past.keys().next();
      if (!oldest.done) this.#past.delete(oldest.value);
    }
    return snapshot;
  }

  /**
   * Resolves once revision >= n; rejects with `TooLargeResourceVersion` after `timeoutMs`.
   * Tells `onWait` listeners synchronously, so the relay can ask etcd for a progress notify.
   */
  waitFor(n: Revision, timeoutMs: number): Promise<void> {
    if (this.revision >= n) return Promise.resolve();
    const waited = startTimer(this.#clock);
    const observe = () => this.#metrics.sink.observe(M.readWait, { prefix: this.#metrics.prefix }, waited());
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        target: n,
        resolve: () => {
          observe();
          resolve();
        },
        cancelTimer: this.#clock.setTimeout(() => {
          this.#waiters.delete(waiter);
          observe();
          reject(new TooLargeResourceVersion(n, this.revision));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
      for (const listener of this.#waitListeners) listener(n);
    });
  }

  /** Calls `listener(target)` whenever a `waitFor` starts waiting. */
  onWait(listener: (target: Revision) => void): Cancel {
    this.#waitListeners.add(listener);
    return () => this.#waitListeners.delete(listener);
  }

  /** Calls `listener(revision)` after every advance (apply, progress, replace). */
  onRevision(listener: (revision: Revision) => void): Cancel {
    this.#revisionListeners.add(listener);
    return () => this.#revisionListeners.delete(listener);
  }

  /**
   * Subscribes to changes after `options.fromRevision` (see Fanout.subscribe). Throws `Expired`
   * when that revision has left the window. For "initial state then changes", read
   * `snapshot()` and subscribe from its revision in the same synchronous step.
   */
  watch(options: SubscribeOptions): Subscription {
    const { sink, prefix } = this.#metrics;
    if (sink === noMetrics) return this.fanout.subscribe(options);
    return this.fanout.subscribe({
      ...options,
      onBatch: (batch) => {
        this.#dispatched += batch.events.length;
        return options.onBatch(batch);
      },
      onClose: (error) => {
        if (error) sink.count(M.terminatedWatchers, { prefix, reason: terminationReason(error) });
        options.onClose(error);
      },
    });
  }

  /**
   * Applies one event to the store and returns it with `prev` set to what the store held: undo
   * (snapshotAt) must restore exactly the state before, so the store, not the feed, is the
   * authority. Feeds that send etcd's prevKv agree and pass through without a copy.
   */
  #applyEvent(event: ChangeEvent): ChangeEvent {
    // Encoded once here (core/object.ts): the store, the history and every watcher's frame share it.
    const object = encoded(event.object);
    const key = object.key;
    const before = this.#store.get(key);
    if (event.type === 'PUT') this.#store.set(object);
    else this.#store.delete(key);
    if (before !== undefined) this.#digest = removeEntry(this.#digest, before);
    if (event.type === 'PUT') this.#digest = addEntry(this.#digest, object);
    const prev = event.prev;
    if (before === undefined) {
      return prev === undefined && object === event.object ? event : { type: event.type, object };
    }
    if (prev !== undefined && prev.modRevision === before.modRevision && object === event.object)
      return event;
    return { type: event.type, object, prev: before };
  }

  #advanced(): void {
    const revision = this.revision;
    for (const waiter of this.#waiters) {
      if (waiter.target <= revision) {
        this.#waiters.delete(waiter);
        waiter.cancelTimer();
        waiter.resolve();
      }
    }
    for (const listener of this.#revisionListeners) listener(revision);
  }
}
