/**
 * The list-then-watch loop that keeps a cache equal to etcd (client-go `tools/cache/reflector.go`).
 *
 * ```
 *            ┌──────────── list fails: backoff ───────────┐
 *            ▼                                            │
 *  start ─► list ─► sink.replace(rev) ─► watch from rev+1 ─► batches / progress ─► sink
 *            ▲                            ▲          │
 *            │                            │          ├─ stream broken or silent: backoff,
 *            │                            └──────────┘  watch again from (last revision seen)+1
 *            └── compacted past our revision, or an inconsistent stream: relist ──┘
 * ```
 *
 * History identity: a broken watch may mean that etcd was wiped or restored from a backup, and
 * a watch resumed "from revision r" in another history would silently mix two histories. So
 * after every break, before watching again, `verifyHistory(r)` asks etcd whether the cache's
 * state at r is etcd's state at r (relay/history-guard.ts):
 *
 * ```
 *  watch broken ─► backoff ─► verify(r) ─┬─ same ──────────────► watch from r+1
 *                               ▲        ├─ other / compacted ─► relist, newHistory (every
 *                               │        │                       subscriber ends with 410)
 *                               └─failed─┘  (etcd unreachable: backoff, verify again)
 * ```
 *
 * `resync(reason)` (a failed self-check) ends the current attempt and relists the same way.
 *
 * The resume point is always the last revision the sink accepted (an event's or a progress
 * notification's), never a response header's: a header revision can run ahead of the events
 * delivered, and resuming from it silently loses them (what etcd3's own watcher does).
 *
 * Concurrency: everything runs on the one JS thread; the sink is called synchronously from the
 * watch's callbacks, and `generation` discards callbacks from a watch that was already abandoned.
 */
import { Backoff } from '../core/backoff.ts';
import { HistoryChanged } from '../core/errors.ts';
import type { CacheSink, Cancel, Clock, KvObject, Revision, RevisionBatch } from '../core/types.ts';
import { systemClock } from '../core/types.ts';
import { type Logger, silentLogger } from './log.ts';

/** Why a watch ended without its owner closing it. The reflector decides what to do per subclass. */
export abstract class WatchEnded extends Error {
  override get name() {
    return this.constructor.name;
  }
}

/** etcd compacted the history the watch needed: only a fresh list can resynchronise. */
export class Compacted extends WatchEnded {
  constructor(
    readonly compactRevision: Revision,
    message = `etcd compacted the history up to revision ${compactRevision}`,
  ) {
    super(message);
  }
}

/** The stream failed, ended, was cancelled by etcd or went silent: watching again resumes it. */
export class WatchBroken extends WatchEnded {}

/** The stream broke an ordering rule (or the sink refused a batch): the cache must be rebuilt. */
export class WatchInconsistent extends WatchEnded {}

/** The owner asked for a fresh list: the cache's state was found wrong (`Reflector.resync`). */
class ResyncRequested extends WatchEnded {}

/**
 * What etcd says of the cache's state at its revision r: `same` (etcd held exactly it at r),
 * `other` (etcd's history is another one: its head is below r, or its state at r differs), or
 * `compacted` (etcd can no longer say: assume nothing and relist).
 */
export type HistoryVerdict =
  | { readonly kind: 'same' }
  | { readonly kind: 'other'; readonly reason: string }
  | { readonly kind: 'compacted' };

/** Counters for the status page and tests; they only grow. */
export interface ReflectorStats {
  lists: number;
  /** History verifications after a broken watch, and how many found another history. */
  verifications: number;
  historyChanges: number;
}

/** Callbacks of one watch, called in stream order and never after `ended` or `close()`. */
export interface WatchHandlers {
  /** One whole revision's events; revisions strictly increase along the stream. */
  batch(batch: RevisionBatch): void;
  /** Nothing under the prefix changed up to `revision` beyond what was delivered. */
  progress(revision: Revision): void;
  /** The watch is over (called at most once). */
  ended(reason: WatchEnded): void;
}

/** An open watch. */
export interface Watch {
  /** Asks the source to send a progress notification as soon as it is current. */
  requestProgress(): void;
  /** Stops the watch; no handler is called afterwards. Idempotent. */
  close(): void;
}

/**
 * The seam between the reflector and etcd (client-go `ListerWatcher`), so that the loop can be
 * tested with injected failures. `watch` resolves once the source has accepted the watch, and
 * rejects if it could not be opened; handlers may already run before the promise settles.
 */
export interface ListerWatcher {
  list(): Promise<{ readonly revision: Revision; readonly objects: readonly KvObject[] }>;
  watch(startRevision: Revision, handlers: WatchHandlers): Promise<Watch>;
}

export interface ReflectorOptions {
  readonly listerWatcher: ListerWatcher;
  readonly sink: CacheSink;
  readonly clock?: Clock;
  readonly log?: Logger;
  /** First retry delay; doubles per failure up to `maxBackoffMs`. Default 100 ms. */
  readonly initialBackoffMs?: number;
  /** Default 5 s. */
  readonly maxBackoffMs?: number;
  /** Uniform in [0, 1); for deterministic jitter in tests. */
  readonly random?: () => number;
  /** After this much silence on the watch, ask etcd for a progress notification. Default 5 s. */
  readonly progressIntervalMs?: number;
  /** After this much silence (or this long waiting for a watch to open) the stream is declared dead. Default 15 s. */
  readonly silenceTimeoutMs?: number;
  /** Called after each list replaced the sink's state, with why it relisted (for metrics). */
  readonly onRelisted?: (reason: string) => void;
  /** Called when a list starts; `newHistory` when the cache's state may be another history's (readiness). */
  readonly onRelisting?: (reason: string, newHistory: boolean) => void;
  /**
   * Asked after every broken watch, before watching again from revision+1: is the cache's state
   * at `revision` etcd's? Rejects when etcd cannot be asked (then: backoff, ask again). Without
   * it, a watch resumes by revision alone.
   */
  readonly verifyHistory?: (revision: Revision) => Promise<HistoryVerdict>;
  /** The watch reported that etcd compacted every revision below `revision`. */
  readonly onCompacted?: (revision: Revision) => void;
}

/** Returned by `ready` when the reflector is stopped before its first list completed. */
export class ReflectorStopped extends Error {}

export class Reflector {
  /** Resolves after the first `sink.replace`; rejects with `ReflectorStopped` if stopped before. */
  readonly ready: Promise<void>;
  private readyResolve: () => void = () => {};
  private readyReject: (err: Error) => void = () => {};
  private readyFlag = false;

  private readonly lw: ListerWatcher;
  private readonly sink: CacheSink;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly progressIntervalMs: number;
  private readonly silenceTimeoutMs: number;
  private readonly onRelisted: (reason: string) => void;
  private readonly onRelisting: (reason: string, newHistory: boolean) => void;
  private readonly verifyHistory: ((revision: Revision) => Promise<HistoryVerdict>) | undefined;
  private readonly onCompacted: ((revision: Revision) => void) | undefined;
  readonly stats: ReflectorStats = { lists: 0, verifications: 0, historyChanges: 0 };
  /** Set by `resync`: relist (as from another history) at the next turn of the loop. */
  private resyncReason: string | undefined;

  private currentRevision: Revision = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  /** Incremented per watch attempt; callbacks of older attempts are ignored. */
  private generation = 0;
  private current: Watch | undefined;
  /** Ends the running watch attempt (resolves `watchOnce`). */
  private endCurrent: ((reason: WatchEnded | 'stopped') => void) | undefined;
  private wakeSleep: (() => void) | undefined;
  /** Resolves on `stop()`: what the loop awaits of etcd is raced with it, so stopping never waits on etcd. */
  private readonly stopSignal: Promise<'stopped'>;
  private signalStop: () => void = () => {};

  constructor(options: ReflectorOptions) {
    this.lw = options.listerWatcher;
    this.sink = options.sink;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLogger;
    this.backoff = new Backoff({
      clock: this.clock,
      ...(options.random ? { random: options.random } : {}),
      ...(options.initialBackoffMs !== undefined ? { initialMs: options.initialBackoffMs } : {}),
      ...(options.maxBackoffMs !== undefined ? { maxMs: options.maxBackoffMs } : {}),
    });
    this.progressIntervalMs = options.progressIntervalMs ?? 5_000;
    this.silenceTimeoutMs = options.silenceTimeoutMs ?? 15_000;
    this.onRelisted = options.onRelisted ?? (() => {});
    this.onRelisting = options.onRelisting ?? (() => {});
    this.verifyHistory = options.verifyHistory;
    this.onCompacted = options.onCompacted;
    this.stopSignal = new Promise((resolve) => {
      this.signalStop = () => resolve('stopped');
    });
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    // A caller that never awaits `ready` must not see an unhandled rejection on stop().
    this.ready.catch(() => {});
  }

  /** Whether the sink has been filled by a first list. */
  get isReady(): boolean {
    return this.readyFlag;
  }

  /** The last revision the sink accepted (0 before the first list). */
  get revision(): Revision {
    return this.currentRevision;
  }

  /** Starts the loop; idempotent. */
  start(): void {
    if (this.loop || this.stopped) return;
    this.loop = this.run();
  }

  /** Asks etcd for a progress notification on the open watch; false when no watch is open. */
  requestProgress(): boolean {
    if (!this.current) return false;
    this.current.requestProgress();
    return true;
  }

  /**
   * Drops the cache's state and relists as soon as possible, ending every subscriber with 410:
   * for an owner that found the state wrong (a failed self-check). Logged with `reason`.
   */
  resync(reason: string): void {
    if (this.stopped) return;
    this.resyncReason = reason;
    this.endCurrent?.(new ResyncRequested(reason));
    this.wakeSleep?.();
  }

  /** Stops watching and waits for the loop to finish. The sink is not called afterwards. */
  async stop(): Promise<void> {
    if (this.stopped) return this.loop;
    this.stopped = true;
    this.signalStop();
    this.readyReject(new ReflectorStopped('the reflector was stopped before its first list'));
    this.generation++;
    this.current?.close();
    this.current = undefined;
    this.endCurrent?.('stopped');
    this.wakeSleep?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let listReason: string | undefined = 'initial';
    /** The next relist replaces a state from another history (or a wrong one). */
    let newHistory = false;
    /** The last watch broke: prove the history before resuming it. */
    let verify = false;
    while (!this.stopped) {
      if (this.resyncReason !== undefined) {
        listReason = this.resyncReason;
        newHistory = true;
        this.resyncReason = undefined;
      }
      if (listReason === undefined && verify && this.verifyHistory) {
        const verdict = await this.verify();
        if (this.stopped) return;
        if (verdict === undefined) {
          await this.sleep(this.backoff.nextDelay());
          continue;
        }
        verify = false;
        if (verdict.kind === 'other') {
          this.stats.historyChanges++;
          this.log.error('etcd history changed, dropping the cache and relisting', {
            revision: this.currentRevision,
            reason: verdict.reason,
          });
          listReason = 'history changed';
          newHistory = true;
        } else if (verdict.kind === 'compacted') {
          this.log.warn('etcd compacted the revision to verify, relisting', {
            revision: this.currentRevision,
          });
          // Nothing is known, so nothing is assumed: the relist replaces the state, and only a
          // subscriber exactly at the new revision whose state there is the same continues
          // (WatchCache.replace compares the digests).
          listReason = 'compacted';
        }
        continue;
      }
      if (listReason !== undefined) {
        if (!(await this.relist(listReason, newHistory))) {
          await this.sleep(this.backoff.nextDelay());
          continue;
        }
        listReason = undefined;
        newHistory = false;
        verify = false;
      }
      const from = this.currentRevision + 1;
      const reason = await this.watchOnce(from);
      if (reason === 'stopped') return;
      if (reason instanceof ResyncRequested) continue;
      if (reason instanceof Compacted) {
        this.onCompacted?.(reason.compactRevision);
        this.log.warn('watch compacted, relisting', {
          revision: this.currentRevision,
          fromRevision: from,
          compactRevision: reason.compactRevision,
        });
        listReason = 'compacted';
      } else if (reason instanceof WatchInconsistent) {
        this.log.error('watch inconsistent, relisting', {
          revision: this.currentRevision,
          error: reason.message,
        });
        listReason = 'inconsistent';
      } else {
        verify = true;
        const delay = this.backoff.nextDelay();
        this.log.warn('watch broken, reconnecting', {
          revision: this.currentRevision,
          resumeFromRevision: this.currentRevision + 1,
          error: reason.message,
          retryInMs: Math.round(delay),
        });
        await this.sleep(delay);
      }
    }
  }

  /** Asks `verifyHistory` about the current revision; undefined (logged) when etcd could not say. */
  private async verify(): Promise<HistoryVerdict | undefined> {
    const verifyHistory = this.verifyHistory;
    if (!verifyHistory) return { kind: 'same' };
    this.stats.verifications++;
    try {
      const verdict = await Promise.race([verifyHistory(this.currentRevision), this.stopSignal]);
      return verdict === 'stopped' ? undefined : verdict;
    } catch (err) {
      if (!this.stopped)
        this.log.warn('history check failed', { revision: this.currentRevision, error: String(err) });
      return undefined;
    }
  }

  /** Lists and replaces the sink's state; false (logged) when the list failed. */
  private async relist(reason: string, newHistory = false): Promise<boolean> {
    let result: Awaited<ReturnType<ListerWatcher['list']>>;
    this.onRelisting(reason, newHistory);
    try {
      const listed = await Promise.race([this.lw.list(), this.stopSignal]);
      if (listed === 'stopped') return false;
      result = listed;
    } catch (err) {
      if (this.stopped) return false;
      this.log.warn('list failed', { reason, revision: this.currentRevision, error: String(err) });
      return false;
    }
    if (this.stopped) return false;
    const previous = this.currentRevision;
    this.sink.replace(
      result.revision,
      result.objects,
      newHistory ? { newHistory: new HistoryChanged(`the relay relisted: ${reason}`) } : {},
    );
    this.stats.lists++;
    // Any list that completes satisfies a pending resync: it is etcd's own state at its revision.
    this.resyncReason = undefined;
    this.currentRevision = result.revision;
    this.onRelisted(reason);
    this.log.info('listed', {
      reason,
      revision: result.revision,
      previousRevision: previous,
      objects: result.objects.length,
    });
    if (!this.readyFlag) {
      this.readyFlag = true;
      this.readyResolve();
    }
    return true;
  }

  /** Runs one watch from `from` until it ends; resolves with why. */
  private watchOnce(from: Revision): Promise<WatchEnded | 'stopped'> {
    if (this.stopped) return Promise.resolve('stopped');
    const generation = ++this.generation;
    const live = () => generation === this.generation && !this.stopped;
    return new Promise((resolve) => {
      let lastMessageAt = this.clock.now();
      let cancelTimer: Cancel | undefined;
      let opened = false;
      const finish = (reason: WatchEnded | 'stopped') => {
        if (this.endCurrent !== finish) return;
        this.endCurrent = undefined;
        cancelTimer?.();
        if (generation === this.generation) this.generation++;
        this.current?.close();
        this.current = undefined;
        resolve(reason);
      };
      this.endCurrent = finish;

      const handlers: WatchHandlers = {
        batch: (batch) => {
          if (!live()) return;
          lastMessageAt = this.clock.now();
          if (batch.revision <= this.currentRevision) {
            finish(new WatchInconsistent(`batch at ${batch.revision} is not after ${this.currentRevision}`));
            return;
          }
          try {
            this.sink.apply(batch);
          } catch (err) {
            finish(new WatchInconsistent(`the sink refused the batch at ${batch.revision}: ${String(err)}`));
            return;
          }
          this.currentRevision = batch.revision;
        },
        progress: (revision) => {
          if (!live()) return;
          lastMessageAt = this.clock.now();
          if (revision < this.currentRevision) return;
          this.sink.progress(revision);
          this.currentRevision = revision;
        },
        ended: (reason) => {
          if (live()) finish(reason);
        },
      };

      // The watchdog: a black-holed connection delivers neither data nor an error, so silence is
      // broken by progress requests, and silence past the timeout ends the attempt. Until the
      // watch opens, the same timeout bounds the wait for it.
      const tick = () => {
        if (!live()) return;
        const silentFor = this.clock.now() - lastMessageAt;
        if (silentFor >= this.silenceTimeoutMs) {
          finish(
            new WatchBroken(
              opened ? `no message for ${silentFor} ms` : `watch not opened after ${silentFor} ms`,
            ),
          );
          return;
        }
        if (opened && silentFor >= this.progressIntervalMs) this.current?.requestProgress();
        cancelTimer = this.clock.setTimeout(tick, Math.min(this.progressIntervalMs, this.silenceTimeoutMs));
      };
      cancelTimer = this.clock.setTimeout(tick, Math.min(this.progressIntervalMs, this.silenceTimeoutMs));

      this.lw.watch(from, handlers).then(
        (watch) => {
          if (!live()) {
            watch.close();
            return;
          }
          opened = true;
          this.current = watch;
          lastMessageAt = Math.max(lastMessageAt, this.clock.now());
          this.log.info('watching', { fromRevision: from, afterFailures: this.backoff.failures });
          this.backoff.reset();
        },
        (err: unknown) => {
          if (live())
            finish(err instanceof WatchEnded ? err : new WatchBroken(`watch failed to open: ${String(err)}`));
        },
      );
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.stopped) return resolve();
      const cancel = this.clock.setTimeout(() => {
        this.wakeSleep = undefined;
        resolve();
      }, ms);
      this.wakeSleep = () => {
        cancel();
        this.wakeSleep = undefined;
        resolve();
      };
    });
  }
}
