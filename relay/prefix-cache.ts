/**
 * One exposed prefix's authoritative cache at the relay: a WatchCache kept equal to etcd by a
 * Reflector over the prefix's own watch stream, plus what a most-recent read needs from etcd.
 *
 * Most-recent (linearizable) reads from the cache, as Kubernetes' consistent list from cache:
 * learn etcd's current revision with a cheap quorum read, then wait for the cache to reach it.
 * A quiet prefix gets no events to push its revision forward, so while anyone waits the cache
 * asks etcd for a progress notification every `progressRequestMs` (etcd answers once the watch
 * is synced, with the current revision). Only etcd >= 3.5.13 (3.4.31) may be trusted for this
 * (etcd#15220); older ones serve those reads from etcd.
 */
import type { Etcd3 } from 'etcd3';
import { TooLargeResourceVersion } from '../core/errors.ts';
import { M, type MetricsSink, noMetrics, relistReason } from '../core/metrics.ts';
import type { Cancel, Clock, Revision } from '../core/types.ts';
import { WatchCache } from '../core/watch-cache.ts';
import type { EtcdSecurity } from './etcd/client.ts';
import { etcdListerWatcher } from './etcd/list-watch.ts';
import { currentRevision } from './etcd/lister.ts';
import { WatchStream } from './etcd/watch-stream.ts';
import { HistoryGuard } from './history-guard.ts';
import type { Logger } from './log.ts';
import { Reflector } from './reflector.ts';

export interface PrefixCacheOptions {
  prefix: string;
  /** Shared client for lists and quorum reads. */
  client: Etcd3;
  /** The endpoints again: the watch gets a dedicated channel (see watch-stream.ts). */
  endpoints: string[];
  /** TLS and auth for those channels: the same as the shared client's. */
  security?: EtcdSecurity | undefined;
  clock: Clock;
  log: Logger;
  /** How often to ask etcd for progress while a read waits. Default 100 ms. */
  progressRequestMs?: number;
  maxHistoryEvents?: number;
  maxHistoryAgeMs?: number;
  /** Where the cache's and the reflector's metrics go (relay/metrics.ts). */
  metrics?: MetricsSink;
  /** Mean time between self-checks against etcd (relay/history-guard.ts); 0 = off. Default 60 s. */
  selfCheckIntervalMs?: number;
}

export class PrefixCache {
  readonly prefix: string;
  readonly cache: WatchCache;
  readonly #client: Etcd3;
  readonly #stream: WatchStream;
  readonly #reflector: Reflector;
  /** History identity, self-check and compaction knowledge (relay/history-guard.ts). */
  readonly guard: HistoryGuard;
  readonly #clock: Clock;
  readonly #progressRequestMs: number;
  #progressTimer: Cancel | undefined;
  readonly #unsubscribe: Cancel;
  /** Why the cache is relisting because its state may be another history's; undefined when not. */
  #historyRelist: string | undefined;

  constructor(options: PrefixCacheOptions) {
    this.prefix = options.prefix;
    this.#client = options.client;
    this.#clock = options.clock;
    this.#progressRequestMs = options.progressRequestMs ?? 100;
    const metrics = options.metrics ?? noMetrics;
    this.cache = new WatchCache({
      clock: options.clock,
      metrics: { sink: metrics, prefix: options.prefix },
      ...(options.maxHistoryEvents !== undefined ? { maxEvents: options.maxHistoryEvents } : {}),
      ...(options.maxHistoryAgeMs !== undefined ? { maxAgeMs: options.maxHistoryAgeMs } : {}),
    });
    this.#stream = new WatchStream({ ...options.security, endpoints: options.endpoints });
    const log: Logger = {
      info: (msg, fields) => options.log.info(msg, { prefix: options.prefix, ...fields }),
      warn: (msg, fields) => options.log.warn(msg, { prefix: options.prefix, ...fields }),
      error: (msg, fields) => options.log.error(msg, { prefix: options.prefix, ...fields }),
    };
    this.guard = new HistoryGuard({
      prefix: options.prefix,
      client: options.client,
      cache: this.cache,
      clock: options.clock,
      log,
      intervalMs: options.selfCheckIntervalMs ?? 60_000,
      resync: (reason) => this.#reflector.resync(reason),
      lists: () => this.#reflector.stats.lists,
    });
    this.#reflector = new Reflector({
      listerWatcher: etcdListerWatcher({
        client: options.client,
        watchStream: this.#stream,
        prefix: options.prefix,
      }),
      sink: this.cache,
      clock: options.clock,
      onRelisting: (reason, newHistory) => {
        if (newHistory) this.#historyRelist ??= reason;
      },
      onRelisted: (reason) => {
        this.#historyRelist = undefined;
        metrics.count(M.relists, { prefix: options.prefix, reason: relistReason(reason) });
      },
      log,
      verifyHistory: (revision) => this.guard.verify(revision),
      onCompacted: (revision) => this.guard.noteCompacted(revision),
    });
    this.#unsubscribe = this.cache.onWait(() => this.#requestProgressWhileWaiting());
  }

  /** Starts listing and watching; `ready` resolves after the first list is loaded. */
  start(): void {
    this.#reflector.start();
    this.guard.start();
  }

  get ready(): boolean {
    return this.cache.ready;
  }

  /** Set while a relist after a (possible) history change runs: `/readyz` is not ready meanwhile. */
  get relistingAfterHistoryChange(): string | undefined {
    return this.#historyRelist;
  }

  get whenReady(): Promise<void> {
    return this.#reflector.ready;
  }

  /**
   * etcd's current revision, by a quorum read (everything acknowledged before is at or below it).
   * A head below the cache's revision means etcd holds another history: the cache relists, and
   * this rejects with `TooLargeResourceVersion` so that the read is served from etcd instead.
   */
  async latestRevision(): Promise<Revision> {
    const before = this.guard.beforeHead();
    const head = await currentRevision(this.#client, this.prefix);
    if (!this.guard.noteHead(head, before)) throw new TooLargeResourceVersion(before.revision, head);
    return head;
  }

  /** Throws `Expired` when etcd has compacted `revision` (Exact reads and continue tokens). */
  checkExact(revision: Revision): Promise<void> {
    return this.guard.checkExact(revision);
  }

  async stop(): Promise<void> {
    this.#unsubscribe();
    this.guard.stop();
    this.#progressTimer?.();
    this.#progressTimer = undefined;
    await this.#reflector.stop();
    this.cache.fanout.closeAll();
    this.#stream.close();
  }

  /** Asks etcd for progress now and every `progressRequestMs` while any read still waits. */
  #requestProgressWhileWaiting(): void {
    if (this.#progressTimer) return;
    this.#reflector.requestProgress();
    const tick = () => {
      if (this.cache.waiting === 0) {
        this.#progressTimer = undefined;
        return;
      }
      this.#reflector.requestProgress();
      this.#progressTimer = this.#clock.setTimeout(tick, this.#progressRequestMs);
    };
    this.#progressTimer = this.#clock.setTimeout(tick, this.#progressRequestMs);
  }
}
