/**
 * An informer: a live local copy of every object under a prefix, kept by list-then-watch, with
 * add/update/delete handlers — client-go's Reflector + Store + handlers, for edgewatch.
 *
 *     start ─► listing ──ok──► watching ──stream ended (clean or cut), 5xx, 429──┐
 *                ▲  │                │  ▲                                        │
 *                │  └─fail: backoff──┘  └── backoff, resume after the last ◄────┘
 *                │                           complete revision
 *                └──────────── 410 Expired (the resume point left the window) ◄── watching
 *     stop() from anywhere ─► stopped
 *
 * Guarantees:
 * - Every change is applied once and in order: the watch resumes after the last revision known
 *   to be complete (a higher event or a bookmark proves a revision whole; a tier writes one
 *   revision's events together, but a cut can split them), and a resumed stream's repeats of a
 *   partly received revision are recognised by key and skipped.
 * - It never goes backwards: a relist asks with `resourceVersion=0` first (cheap, API.md's
 *   "any"), and one older than the revision already held is thrown away and retried as
 *   not-older-than that revision; bookmarks below the held revision are ignored. The one
 *   exception: a 410 whose Status has the cause `HistoryChanged` (etcd was wiped or restored,
 *   API.md "Histories") says the held state belongs to no history etcd has, so the informer
 *   relists the most recent state, whatever its revision. Likewise when a watch is refused with
 *   504 ResourceVersionTooLarge (no tier reached the held revision): it relists the most recent
 *   state, and an answer below the held revision (a linearizable read cannot go back within one
 *   history) is taken as the new history etcd holds.
 * - A `sync` event says the store holds exactly the prefix's state at that revision (every
 *   change up to it, none after): after each list, and whenever a revision is proven complete.
 * - Failures are retried forever with exponential backoff and jitter (at least what a
 *   `Retry-After` asked for); each is reported to `error` handlers.
 *
 * Runs in Node, a Worker and a browser: time and randomness come from an injected clock.
 */
import { Backoff } from '../core/backoff.ts';
import type { Clock, KvObject } from '../core/types.ts';
import { systemClock } from '../core/types.ts';
import type { EdgewatchClient, ListOptions } from './client.ts';
import {
  EdgewatchError,
  isExpired,
  isHistoryChanged,
  isTooLargeResourceVersion,
  StatusError,
} from './errors.ts';
import { LocalStore } from './store.ts';
import type { ChangeEvent, WatchEvent } from './watch.ts';

/** Delays between attempts (core/backoff.ts's `Backoff` has this shape). */
export interface RetryDelays {
  /** Counts one more failure and says how long to wait before the next attempt (ms). */
  nextDelay(): number;
  /** An attempt succeeded. */
  reset(): void;
}

export interface InformerOptions {
  readonly client: EdgewatchClient;
  readonly prefix: string;
  /** The first list: `any` (default, `resourceVersion=0`), `latest`, or not older than a revision. */
  readonly initial?: 'any' | 'latest' | { readonly minRevision: number };
  /** List in pages of this many objects (default: one response). */
  readonly pageSize?: number;
  readonly clock?: Clock;
  /** Default: core/backoff.ts, exponential from 100 ms to 5 s with jitter. */
  readonly backoff?: RetryDelays;
  /** Uniform in [0, 1), for the default backoff's jitter. Default `Math.random`. */
  readonly random?: () => number;
}

export interface InformerHandlers {
  add: (object: KvObject) => void;
  update: (object: KvObject, previous: KvObject) => void;
  /**
   * The key's last state: from a watch, with `modRevision` = the deleting revision; found by a
   * relist, the last state the informer knew.
   */
  delete: (object: KvObject) => void;
  /** The store holds exactly the prefix's state at `revision`. */
  sync: (revision: number) => void;
  /** A failure the informer retries after. */
  error: (error: unknown) => void;
}

type HandlerSets = { [K in keyof InformerHandlers]: Set<InformerHandlers[K]> };

/** Counters, for tests and metrics. */
export interface InformerStats {
  lists: number;
  watches: number;
  /** 410s that made it relist. */
  expired: number;
  /**
   * History changes seen: 410s that said so, and most-recent relists below the held revision
   * after a watch found no tier at it (see the class comment).
   */
  historyChanges: number;
  /** Watches refused with 504 ResourceVersionTooLarge (each makes it relist the most recent state). */
  tooLarge: number;
  /** Change events applied (repeats after a resume are not counted). */
  changes: number;
  errors: number;
}

export class Informer {
  readonly prefix: string;
  readonly stats: InformerStats = {
    lists: 0,
    watches: 0,
    expired: 0,
    historyChanges: 0,
    tooLarge: 0,
    changes: 0,
    errors: 0,
  };
  readonly #client: EdgewatchClient;
  readonly #options: InformerOptions;
  readonly #clock: Clock;
  readonly #backoff: RetryDelays;
  readonly #store = new LocalStore();
  readonly #handlers: HandlerSets = {
    add: new Set(),
    update: new Set(),
    delete: new Set(),
    sync: new Set(),
    error: new Set(),
  };
  #abort = new AbortController();
  #running: Promise<void> | undefined;
  #synced = false;
  /** A tier said etcd's history changed: the next list is most recent, whatever its revision. */
  #newHistory = false;
  /** Set after a watch got 504 ResourceVersionTooLarge: the next list is a most-recent one. */
  #probeHead = false;
  /** Every change up to this revision is in the store. */
  #confirmed = 0;
  /** The newest revision with changes applied but not yet proven complete, and its keys. */
  #pending: { revision: number; keys: Set<string> } | undefined;
  #waiters: { revision: number; resolve: () => void; reject: (error: Error) => void }[] = [];

  constructor(options: InformerOptions) {
    this.#client = options.client;
    this.prefix = options.prefix;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#backoff =
      options.backoff ??
      new Backoff({ clock: this.#clock, ...(options.random ? { random: options.random } : {}) });
  }

  /** Registers a handler; returns its removal. */
  on<K extends keyof InformerHandlers>(event: K, handler: InformerHandlers[K]): () => void {
    const set = this.#handlers[event] as Set<InformerHandlers[K]>;
    set.add(handler);
    return () => set.delete(handler);
  }

  /** Starts listing and watching (once; later calls do nothing). */
  start(): this {
    this.#running ??= this.#run();
    return this;
  }

  /**
   * Stops and resolves once the loop has ended; the store keeps what it held, and pending waits
   * reject. An informer runs once: make a new one to start again.
   */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new EdgewatchError('the informer stopped'));
  }

  /** The first list has been applied. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** The newest revision whose changes the store holds. */
  get revision(): number {
    return this.#pending?.revision ?? this.#confirmed;
  }

  get(key: string): KvObject | undefined {
    return this.#store.get(key);
  }

  /** Every object, in key order. */
  list(): readonly KvObject[] {
    return this.#store.list();
  }

  get size(): number {
    return this.#store.size;
  }

  /** Resolves once the first list is applied. */
  waitForSync(): Promise<void> {
    return this.waitForRevision(1);
  }

  /**
   * Resolves once the store holds `revision` (e.g. a write's): read-your-writes for the informer.
   * A revision with no change under the prefix is reached with the next bookmark (every few
   * seconds). Rejects if the informer stops first.
   */
  waitForRevision(revision: number): Promise<void> {
    if (this.#synced && this.revision >= revision) return Promise.resolve();
    if (this.#abort.signal.aborted) return Promise.reject(new EdgewatchError('the informer stopped'));
    return new Promise((resolve, reject) => this.#waiters.push({ revision, resolve, reject }));
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let mustList = true;
    /** Set after a relist answered older than what is held: ask for not-older-than next. */
    let behind = false;
    while (!signal.aborted) {
      try {
        if (mustList) {
          behind = !(await this.#list(behind));
          if (behind)
            throw new EdgewatchError('the relist answered an older revision than the informer holds');
          mustList = false;
          this.#backoff.reset();
        }
        if (await this.#watch()) {
          this.#backoff.reset();
          continue; // a stream that delivered something and ended: resume at once
        }
        await this.#sleep(this.#backoff.nextDelay());
      } catch (error) {
        if (signal.aborted) break;
        this.stats.errors++;
        if (isExpired(error)) {
          this.stats.expired++;
          mustList = true;
          if (isHistoryChanged(error)) {
            this.stats.historyChanges++;
            this.#newHistory = true;
            behind = false;
          }
        } else if (isTooLargeResourceVersion(error)) {
          // No tier reached the revision held here. One that is merely behind catches up; but if
          // etcd was wiped or restored without --bump-revision while this informer was away, no
          // tier could say so, and the new history may never pass that revision soon. A
          // most-recent list tells: it is linearizable, so an answer below the held revision
          // proves etcd holds another history, and that answer is taken (see #list).
          this.stats.tooLarge++;
          mustList = true;
          this.#probeHead = true;
          behind = false;
        }
        this.#emit('error', error);
        const retryAfter = error instanceof StatusError ? (error.retryAfterSeconds ?? 0) * 1000 : 0;
        await this.#sleep(Math.max(retryAfter, this.#backoff.nextDelay()));
      }
    }
  }

  /** Lists and replaces the store; false when the answer was older than what is held. */
  async #list(behind: boolean): Promise<boolean> {
    this.stats.lists++;
    // After a history change what is held belongs to no history etcd has: any revision will do.
    const held = this.#newHistory ? 0 : this.revision;
    const probeHead = this.#probeHead;
    this.#probeHead = false;
    const initial = this.#options.initial ?? 'any';
    const consistency: ListOptions =
      this.#newHistory || probeHead
        ? {}
        : held > 0
          ? behind
            ? { minRevision: held }
            : { any: true }
          : initial === 'any'
            ? { any: true }
            : initial === 'latest'
              ? {}
              : { minRevision: initial.minRevision };
    const result = await this.#client.list(this.prefix, {
      ...consistency,
      ...(this.#options.pageSize !== undefined ? { pageSize: this.#options.pageSize } : {}),
      signal: this.#abort.signal,
    });
    if (result.revision < held) {
      if (!probeHead) return false;
      // A linearizable answer below a revision etcd once reached: another history (see #run).
      this.stats.historyChanges++;
    }
    this.#newHistory = false;
    this.#replace(result.items, result.revision);
    return true;
  }

  /** The store becomes `items` at `revision`; handlers see the difference. */
  #replace(items: readonly KvObject[], revision: number): void {
    const fresh = new Map(items.map((o) => [o.key, o]));
    for (const key of [...this.#store.keys()]) {
      const old = this.#store.get(key);
      if (old !== undefined && !fresh.has(key)) {
        this.#store.delete(key);
        this.#emit('delete', old);
      }
    }
    for (const object of items) {
      const old = this.#store.get(object.key);
      if (old !== undefined && old.modRevision === object.modRevision) continue;
      this.#store.set(object);
      if (old === undefined) this.#emit('add', object);
      else this.#emit('update', object, old);
    }
    this.#pending = undefined;
    this.#confirmed = revision;
    this.#synced = true;
    this.#emit('sync', revision);
    this.#wake();
  }

  /** One watch session; true when it delivered events and ended cleanly. Throws when it broke. */
  async #watch(): Promise<boolean> {
    const from = this.#pending ? Math.max(this.#confirmed, this.#pending.revision - 1) : this.#confirmed;
    this.stats.watches++;
    const watch = await this.#client.watch(this.prefix, {
      resourceVersion: from,
      allowWatchBookmarks: true,
      signal: this.#abort.signal,
    });
    let delivered = false;
    for await (const events of watch.chunks()) {
      delivered = true;
      for (const event of events) this.#apply(event);
      this.#wake();
    }
    if (this.#abort.signal.aborted) return delivered;
    this.#confirm(); // a clean end: the tier sent everything up to where it stopped
    return delivered;
  }

  #apply(event: WatchEvent): void {
    const r = event.revision;
    if (event.type === 'BOOKMARK') {
      if (r < this.revision) return; // never backwards
      this.#confirm();
      if (r > this.#confirmed) {
        this.#confirmed = r;
        this.#emit('sync', r);
      }
      return;
    }
    if (r <= this.#confirmed) return; // already applied (a tier repeating itself)
    const pending = this.#pending;
    if (pending !== undefined && r < pending.revision) return; // cannot happen in order
    if (pending !== undefined && r === pending.revision) {
      if (pending.keys.has(event.object.key)) return; // repeated after a resume
      pending.keys.add(event.object.key);
    } else {
      this.#confirm();
      this.#pending = { revision: r, keys: new Set([event.object.key]) };
    }
    this.#change(event);
  }

  /** The pending revision is whole: it becomes the confirmed one. */
  #confirm(): void {
    if (this.#pending === undefined) return;
    this.#confirmed = this.#pending.revision;
    this.#pending = undefined;
    this.#emit('sync', this.#confirmed);
  }

  #change(event: ChangeEvent): void {
    this.stats.changes++;
    const { object } = event;
    const previous = this.#store.get(object.key);
    if (event.type === 'DELETED') {
      if (previous === undefined) return;
      this.#store.delete(object.key);
      this.#emit('delete', object);
      return;
    }
    this.#store.set(object);
    if (previous === undefined) this.#emit('add', object);
    else this.#emit('update', object, previous);
  }

  #wake(): void {
    if (!this.#synced) return;
    const now = this.revision;
    const ready = this.#waiters.filter((w) => w.revision <= now);
    if (ready.length === 0) return;
    this.#waiters = this.#waiters.filter((w) => w.revision > now);
    for (const waiter of ready) waiter.resolve();
  }

  #emit<K extends keyof InformerHandlers>(event: K, ...args: Parameters<InformerHandlers[K]>): void {
    for (const handler of this.#handlers[event]) {
      try {
        (handler as (...a: Parameters<InformerHandlers[K]>) => void)(...args);
      } catch (error) {
        // A handler's bug must not stop the informer; it is reported, once, to the others.
        if (event !== 'error') this.#emit('error', error);
      }
    }
  }

  /** Waits `ms` on the injected clock, or until `stop()`. */
  #sleep(ms: number): Promise<void> {
    const signal = this.#abort.signal;
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        signal.removeEventListener('abort', done);
        resolve();
      };
      const cancel = this.#clock.setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
