/**
 * Per-subscriber fan-out of the cache's changes: every watch stream and every edge replica is a
 * subscriber (the apiserver's cache_watcher.go, etcd's cache package).
 *
 * Each subscriber receives, through synchronous callbacks, every revision after its
 * `fromRevision` that touches its prefix: first the backlog from the EventHistory, then live
 * batches, in revision order, each exactly once, with no gap. A subscriber that cannot keep up
 * (slow socket, large WebSocket bufferedAmount) pauses; while paused, live batches are buffered
 * up to `bufferLimit`, and past that the buffer is dropped and the subscriber later re-reads the
 * history from its position. It is closed with `Expired` only when that position has left the
 * window. The writer never waits on a subscriber and one subscriber never delays another
 * (STYLE.md §7).
 *
 * Subscriber states (any state → closed on close/error/expiry/relist):
 *
 *     subscribe ─► catching up (reads history) ─► live ─── onBatch returns false / pause() ──┐
 *                        ▲                         ▲                                          ▼
 *                        │                         └──── resume(), buffer drained ◄──── paused
 *                        └──── resume() after the buffer overflowed ("lagging") ◄─────────────┘
 */

import { Expired } from './errors.ts';
import type { EventHistory } from './history.ts';
import { isUnder } from './keys.ts';
import type { ChangeEvent, Revision, RevisionBatch } from './types.ts';

/** Default number of live revisions buffered for a paused subscriber before it falls back to history. */
export const DEFAULT_BUFFER_LIMIT = 1024;

/** What a subscriber asks for and how it is told. */
export interface SubscribeOptions {
  /** Deliver the changes with revision > fromRevision (must be >= history.startRevision). */
  readonly fromRevision: Revision;
  /** Only events whose key is under this prefix ('' for all). */
  readonly prefix: string;
  /** Further narrows events (after the prefix). Must be pure and fast; a throw closes the subscriber. */
  readonly filter?: (event: ChangeEvent) => boolean;
  /** Live revisions buffered while paused before falling back to history. Default DEFAULT_BUFFER_LIMIT. */
  readonly bufferLimit?: number;
  /** Start paused (e.g. until response headers are sent); call resume() to get the backlog. */
  readonly paused?: boolean;
  /**
   * One revision's matching events (never empty). Return `false` to pause (backpressure); the
   * subscriber then gets nothing until `resume()`. Must not await; a throw closes the subscriber.
   */
  onBatch(batch: RevisionBatch): boolean | undefined;
  /**
   * The subscriber is now current up to `revision` with nothing to deliver (revisions that did not
   * touch its prefix, or the cache's progress). For bookmarks and replicas' progress marks; called
   * only when caught up and not paused, never with a revision already announced.
   */
  onProgress?(revision: Revision): void;
  /**
   * Called exactly once when the subscription ends: with no error after `close()`, with `Expired`
   * when the position left the window or a relist made it unresumable, or with what a callback threw.
   */
  onClose(error?: Error): void;
}

/** The subscriber's handle. */
export interface Subscription {
  /** Every change with revision <= position has been delivered or did not concern it. */
  readonly position: Revision;
  readonly paused: boolean;
  readonly closed: boolean;
  /** Stop delivery (idempotent); what arrives meanwhile is buffered or re-read later. */
  pause(): void;
  /** Deliver what was missed, synchronously, then continue live (idempotent). */
  resume(): void;
  /** End the subscription; calls onClose(error) once. */
  close(error?: Error): void;
}

/** See the module comment. All methods are synchronous and must not be interleaved with awaits. */
export class Fanout {
  readonly #history: EventHistory;
  readonly #subscribers = new Set<Subscriber>();
  /** The revision every subscriber has been offered everything up to. */
  #revision: Revision;
  /** Work that arrived while offering (a callback wrote or progressed): done after, in order. */
  #pending: (RevisionBatch | Revision)[] = [];
  #offering = false;
  #lastMatch: { batch: RevisionBatch; prefix: string; result: RevisionBatch | undefined } | undefined;

  constructor(history: EventHistory) {
    this.#history = history;
    this.#revision = history.lastRevision;
  }

  /** Number of open subscriptions. */
  get count(): number {
    return this.#subscribers.size;
  }

  /** The newest revision offered to subscribers (published or progressed). */
  get revision(): Revision {
    return this.#revision;
  }

  /**
   * Registers a subscriber and delivers its backlog synchronously (unless `paused`), so callbacks
   * may run before this returns. Throws `Expired` when fromRevision < history.startRevision.
   */
  subscribe(options: SubscribeOptions): Subscription {
    if (options.fromRevision < this.#history.startRevision) {
      throw Expired.tooOld(options.fromRevision, this.#history.startRevision);
    }
    const subscriber = new Subscriber(options, this.#history, {
      remove: (s) => this.#subscribers.delete(s),
      matching: (batch, prefix) => this.#matching(batch, prefix),
      revision: () => this.#revision,
    });
    this.#subscribers.add(subscriber);
    subscriber.drain();
    return subscriber;
  }

  /** Offers one revision to every subscriber. Call right after `history.push(batch)`. */
  publish(batch: RevisionBatch): void {
    this.#enqueue(batch);
  }

  /** The cache is current up to `revision` with no new events (call after publishing them all). */
  progress(revision: Revision): void {
    this.#enqueue(revision);
  }

  /**
   * After a relist at `revision` (history reset): a subscriber exactly at `revision` continues
   * seamlessly; every other one cannot know what it missed and is closed with `Expired` (410), so
   * its client relists too.
   */
  reset(revision: Revision): void {
    this.#pending = [];
    this.#revision = revision;
    for (const subscriber of this.#subscribers) subscriber.reset(revision);
  }

  /** Closes every subscriber with `error` (e.g. on shutdown). */
  closeAll(error?: Error): void {
    for (const subscriber of this.#subscribers) subscriber.close(error);
  }

  /**
   * One batch's events under one prefix, remembered for the next subscriber: every subscriber is
   * offered the same batch in turn, and many watch the same prefix, so the keys are compared once
   * per batch and prefix instead of once per subscriber (profiled: the per-subscriber scan took a
   * tenth of a replica's thread with 100 watchers).
   */
  #matching(batch: RevisionBatch, prefix: string): RevisionBatch | undefined {
    const memo = this.#lastMatch;
    if (memo !== undefined && memo.batch === batch && memo.prefix === prefix) return memo.result;
    const result = matchingEvents(batch, (event) => isUnder(event.object.key, prefix));
    this.#lastMatch = { batch, prefix, result };
    return result;
  }

  /**
   * Offers work to every subscriber, one item at a time. A callback that writes to the cache
   * re-enters here; its work is queued and offered after the current item has reached every
   * subscriber, so no subscriber sees revisions out of order.
   */
  #enqueue(item: RevisionBatch | Revision): void {
    this.#pending.push(item);
    if (this.#offering) return;
    this.#offering = true;
    try {
      for (let i = 0; i < this.#pending.length; i++) {
        const next = this.#pending[i] as RevisionBatch | Revision;
        // #revision moves only after every subscriber was offered the item: one that resumes
        // from inside another's callback must not skip an item it has not been offered yet.
        if (typeof next === 'number') {
          if (next <= this.#revision) continue;
          for (const subscriber of this.#subscribers) subscriber.progress(next);
          this.#revision = next;
        } else {
          for (const subscriber of this.#subscribers) subscriber.offer(next);
          this.#revision = next.revision;
        }
      }
    } finally {
      this.#pending = [];
      this.#offering = false;
    }
  }
}

/** What a subscriber needs from its fan-out. */
interface FanoutLink {
  remove(subscriber: Subscriber): void;
  /** The batch's events under `prefix` (the batch itself when all are); undefined when none. */
  matching(batch: RevisionBatch, prefix: string): RevisionBatch | undefined;
  /** Everything up to this revision has been offered; a caught-up subscriber is current to it. */
  revision(): Revision;
}

class Subscriber implements Subscription {
  position: Revision;
  paused: boolean;
  closed = false;
  readonly #options: SubscribeOptions;
  readonly #history: EventHistory;
  readonly #fanout: FanoutLink;
  readonly #bufferLimit: number;
  /** Highest revision delivered or announced, so progress is never repeated. */
  #announced: Revision;
  /** Batches read from history, delivered before anything in #queue. */
  #backlog: RevisionBatch[] = [];
  #backlogAt = 0;
  /** Live batches that arrived while paused or mid-delivery. */
  #queue: RevisionBatch[] = [];
  #queueAt = 0;
  /** The queue overflowed (or we just subscribed): re-read history from `position` before the queue. */
  #lagging = true;
  /** Inside drain(): re-entrant offers queue instead of delivering out of order. */
  #draining = false;

  constructor(options: SubscribeOptions, history: EventHistory, fanout: FanoutLink) {
    this.#options = options;
    this.#history = history;
    this.#fanout = fanout;
    this.#bufferLimit = options.bufferLimit ?? DEFAULT_BUFFER_LIMIT;
    this.position = options.fromRevision;
    this.#announced = options.fromRevision;
    this.paused = options.paused ?? false;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (this.closed || !this.paused) return;
    this.paused = false;
    this.drain();
  }

  close(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.#backlog = [];
    this.#queue = [];
    this.#fanout.remove(this);
    try {
      this.#options.onClose(error);
    } catch {
      // The subscriber is gone either way; its cleanup failing must not reach the writer.
    }
  }

  offer(batch: RevisionBatch): void {
    if (this.closed || batch.revision <= this.position) return;
    if (this.#lagging) {
      // Expire as soon as the window no longer covers the position rather than on resume.
      if (this.position < this.#history.startRevision) this.close(this.#expired());
      return;
    }
    this.#queue.push(batch);
    if (this.#queue.length - this.#queueAt > this.#bufferLimit) {
      this.#queue = [];
      this.#queueAt = 0;
      this.#lagging = true;
      return;
    }
    this.drain();
  }

  progress(revision: Revision): void {
    if (this.closed || revision <= this.position) return;
    if (this.#lagging || this.#backlogAt < this.#backlog.length || this.#queueAt < this.#queue.length) return;
    this.position = revision;
    if (!this.paused && !this.#draining) this.#announce();
  }

  reset(revision: Revision): void {
    if (this.closed) return;
    if (this.position !== revision) {
      this.close(
        new Expired(
          `the cache relisted at revision ${revision}; resume from ${this.position} is not possible`,
        ),
      );
      return;
    }
    this.#backlog = [];
    this.#backlogAt = 0;
    this.#queue = [];
    this.#queueAt = 0;
    this.#lagging = false;
  }

  /** Delivers everything pending, in order, until paused, closed or caught up. */
  drain(): void {
    if (this.#draining || this.paused || this.closed) return;
    this.#draining = true;
    try {
      while (!this.paused && !this.closed) {
        let batch: RevisionBatch | undefined;
        if (this.#backlogAt < this.#backlog.length) {
          batch = this.#backlog[this.#backlogAt++];
        } else if (this.#lagging) {
          if (this.position < this.#history.startRevision) {
            this.close(this.#expired());
            return;
          }
          // Everything published so far is in history (publish follows push), and offers are
          // ignored while lagging, so the history alone covers (position, head].
          this.#backlog = this.#history.since(this.position);
          this.#backlogAt = 0;
          this.#lagging = false;
          continue;
        } else if (this.#queueAt < this.#queue.length) {
          batch = this.#queue[this.#queueAt++];
        } else {
          break;
        }
        if (batch !== undefined && batch.revision > this.position) this.#deliver(batch);
      }
      if (this.#backlogAt >= this.#backlog.length) {
        this.#backlog = [];
        this.#backlogAt = 0;
      }
      if (this.#queueAt >= this.#queue.length) {
        this.#queue = [];
        this.#queueAt = 0;
      }
      if (!this.paused && !this.closed) {
        // Caught up: nothing pending, so whatever the fan-out has offered, this one has seen.
        const offered = this.#fanout.revision();
        if (offered > this.position) this.position = offered;
        this.#announce();
      }
    } finally {
      this.#draining = false;
    }
  }

  #deliver(batch: RevisionBatch): void {
    try {
      const matching =
        this.#options.filter === undefined
          ? this.#fanout.matching(batch, this.#options.prefix)
          : this.#filtered(batch);
      this.position = batch.revision;
      if (matching === undefined) return;
      this.#announced = batch.revision;
      const more = this.#options.onBatch(matching);
      if (more === false) this.paused = true;
    } catch (error) {
      this.close(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** The batch's events under the prefix that pass the filter; undefined when none do. */
  #filtered(batch: RevisionBatch): RevisionBatch | undefined {
    const { prefix, filter } = this.#options;
    return matchingEvents(
      batch,
      (event) => isUnder(event.object.key, prefix) && (filter === undefined || filter(event)),
    );
  }

  /** Tells a caught-up subscriber how far it is current, if that is news. */
  #announce(): void {
    if (this.position <= this.#announced) return;
    this.#announced = this.position;
    try {
      this.#options.onProgress?.(this.position);
    } catch (error) {
      this.close(error instanceof Error ? error : new Error(String(error)));
    }
  }

  #expired(): Expired {
    return Expired.tooOld(this.position, `${this.#history.startRevision}; the watcher fell behind`);
  }
}

/** The batch with only the events that pass `keep`: itself when all do, undefined when none do. */
function matchingEvents(
  batch: RevisionBatch,
  keep: (event: ChangeEvent) => boolean,
): RevisionBatch | undefined {
  const { events } = batch;
  let kept: ChangeEvent[] | undefined;
  for (let i = 0; i < events.length; i++) {
    const event = events[i] as ChangeEvent;
    const ok = keep(event);
    if (kept !== undefined) {
      if (ok) kept.push(event);
    } else if (!ok) {
      kept = events.slice(0, i);
    }
  }
  if (kept === undefined) return batch;
  return kept.length === 0 ? undefined : { revision: batch.revision, events: kept };
}
