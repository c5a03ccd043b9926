/**
 * The relay's metrics: core/metrics.ts's families, registered in a prom-client Registry of the
 * relay's own (several relays share one process in the tests), exposed at `GET /metrics` with
 * `tier="relay"` on every series, next to prom-client's default process metrics.
 *
 * Counters and histograms are recorded where things happen (through the `MetricsSink`); gauges
 * that mirror live state (revisions, lag, connections, readiness) are read by collectors at scrape
 * time, so nothing is kept up to date between scrapes.
 */
import type { Etcd3 } from 'etcd3';
import type { MiddlewareHandler } from 'hono';
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import {
  type CounterFamily,
  FAMILIES,
  type Family,
  type GaugeFamily,
  type HistogramFamily,
  type Labels,
  M,
  type MetricsSink,
  recordResponse,
  startTimer,
} from '../core/metrics.ts';
import type { Clock, Revision } from '../core/types.ts';
import type { WatchCache } from '../core/watch-cache.ts';
import type { ReplicaInfo } from './replica-stream.ts';

export class RelayMetrics implements MetricsSink {
  readonly registry = new Registry();
  readonly #metrics = new Map<string, Metric>();
  readonly #collectors: (() => void)[] = [];

  constructor(options: { defaultMetrics?: boolean } = {}) {
    this.registry.setDefaultLabels({ tier: 'relay' });
    for (const family of FAMILIES) this.#metrics.set(family.name, toPrometheus(family, this.registry));
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  count<L extends string>(family: CounterFamily<L>, labels: Labels<L>, by = 1): void {
    (this.#metrics.get(family.name) as Counter<L>).inc(labels, by);
  }

  observe<L extends string>(family: HistogramFamily<L>, labels: Labels<L>, value: number): void {
    (this.#metrics.get(family.name) as Histogram<L>).observe(labels, value);
  }

  set<L extends string>(family: GaugeFamily<L>, labels: Labels<L>, value: number): void {
    (this.#metrics.get(family.name) as Gauge<L>).set(labels, value);
  }

  /** Sets a counter to a total kept elsewhere (the self-check's counts), at scrape time. */
  setTotal<L extends string>(family: CounterFamily<L>, labels: Labels<L>, value: number): void {
    const counter = this.#metrics.get(family.name) as Counter<L>;
    counter.remove(labels);
    counter.inc(labels, value);
  }

  /** Drops every series of a gauge (before a collector sets the ones that still exist). */
  clear(family: GaugeFamily): void {
    (this.#metrics.get(family.name) as Gauge).reset();
  }

  /** Runs `collect` before every scrape, to set gauges from live state. */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** The exposition: Prometheus text format 0.0.4, from prom-client. */
  async text(): Promise<string> {
    for (const collect of this.#collectors) collect();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

function toPrometheus(family: Family, registry: Registry): Metric {
  const base = { name: family.name, help: family.help, labelNames: family.labels, registers: [registry] };
  switch (family.kind) {
    case 'counter':
      return new Counter(base);
    case 'gauge':
      return new Gauge(base);
    case 'histogram':
      return new Histogram({ ...base, buckets: [...family.buckets] });
  }
}

/** Counts every response by who served it, route and code, and times lists (core/metrics.ts). */
export function httpMetrics(sink: MetricsSink, clock: Clock, tier: string): MiddlewareHandler {
  return async function httpMetricsMiddleware(c, next) {
    const elapsed = startTimer(clock);
    await next();
    recordResponse(sink, c.req.raw, c.res, tier, elapsed());
  };
}

/**
 * When each revision was first held, per prefix: the replication lag in seconds of a replica at
 * revision r is the age of the first revision above r (0 when it has everything). Advances are
 * kept for `keepMs`; a replica further behind than that reports the oldest age known.
 */
export class RevisionTimes {
  readonly #clock: Clock;
  readonly #keepMs: number;
  #entries: { revision: Revision; at: number }[] = [];

  constructor(clock: Clock, keepMs = 10 * 60_000) {
    this.#clock = clock;
    this.#keepMs = keepMs;
  }

  /** The cache reached `revision` now (call on every advance, in order). */
  advanced(revision: Revision): void {
    const last = this.#entries[this.#entries.length - 1];
    if (last !== undefined && revision <= last.revision) {
      if (revision < last.revision)
        this.#entries = []; // a relist to an older revision: start over
      else return;
    }
    const now = this.#clock.now();
    this.#entries.push({ revision, at: now });
    let drop = 0;
    while (drop < this.#entries.length - 1 && (this.#entries[drop]?.at ?? now) < now - this.#keepMs) drop++;
    if (drop > 64) this.#entries = this.#entries.slice(drop);
  }

  /** Seconds since the cache first held a revision above `revision`; 0 if there is none. */
  lagSeconds(revision: Revision): number {
    let lo = 0;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#entries[mid]?.revision ?? 0) > revision) hi = mid;
      else lo = mid + 1;
    }
    const first = this.#entries[lo];
    return first === undefined ? 0 : (this.#clock.now() - first.at) / 1000;
  }
}

/** What the self-check reports (relay/history-guard.ts `HistoryGuardStatus`, structurally). */
export interface SelfCheckCounts {
  readonly ok: number;
  readonly mismatches: number;
  readonly skipped: number;
  readonly failed: number;
  /** Clock ms (epoch at the relay) of the last check that passed. */
  readonly lastGoodAt: number | undefined;
}

/** What the relay's scrape-time gauges and its replica list read. */
export interface RelayState {
  readonly caches: ReadonlyMap<
    string,
    {
      readonly prefix: string;
      readonly cache: WatchCache;
      /** The self-check's counts and last good time (relay/history-guard.ts). */
      readonly guard?: { status(): SelfCheckCounts };
    }
  >;
  /** The replication endpoint's open replicas (relay/replicate.ts). */
  readonly replicas: () => readonly ReplicaInfo[];
  readonly ready: () => boolean;
  readonly etcdReachable: () => boolean;
}

/** One connected edge replica as `/_relay/status` and the dashboard show it. */
export interface EdgeRow {
  /** `<location>|<prefix>|<shard>`. */
  readonly replica: string;
  readonly location: string;
  readonly prefix: string;
  /** The revision the relay has brought it to (sent; see `appliedRevision`). */
  readonly revision: Revision;
  /** The revision the replica said it serves from, at its last heartbeat (null: no report yet). */
  readonly appliedRevision: Revision | null;
  readonly lagRevisions: number;
  readonly lagSeconds: number;
  /** Its open watches, from its last heartbeat (null: no report yet). */
  readonly watchers: number | null;
  /** Milliseconds since the relay last heard from it. */
  readonly lastMessageMs: number;
  /** Its own last self-check, when it reports one. */
  readonly selfCheck: string | null;
  readonly mode: string | null;
  /** Its stream is paused because it does not read fast enough. */
  readonly paused: boolean;
}

export interface RelayObserver {
  /** The connected replicas (those past their hello), with their lag. */
  edges(): EdgeRow[];
  stop(): void;
}

/**
 * Sets the gauges that mirror live state at every scrape: each cache's revision, size and
 * watchers, the self-check's results, replica connections and each replica's lag (revisions and
 * seconds), readiness. Also answers the replica list for `/_relay/status` from the same numbers.
 */
export function observeRelay(metrics: RelayMetrics, clock: Clock, state: RelayState): RelayObserver {
  const times = new Map<string, RevisionTimes>();
  const unsubscribe: (() => void)[] = [];
  for (const { prefix, cache } of state.caches.values()) {
    const t = new RevisionTimes(clock);
    times.set(prefix, t);
    unsubscribe.push(cache.onRevision((revision) => t.advanced(revision)));
  }
  const edges = (): EdgeRow[] => {
    const now = clock.now();
    return state.replicas().flatMap((r) => {
      const source = r.prefix === undefined ? undefined : state.caches.get(r.prefix);
      if (source === undefined || r.replica === undefined) return []; // still in its hello
      return [
        {
          replica: r.replica,
          location: r.replica.split('|')[0] ?? '',
          prefix: source.prefix,
          revision: r.revision,
          appliedRevision: r.report?.revision ?? null,
          lagRevisions: Math.max(0, source.cache.revision - r.revision),
          lagSeconds: times.get(source.prefix)?.lagSeconds(r.revision) ?? 0,
          watchers: r.report?.watchers ?? null,
          lastMessageMs: Math.max(0, now - r.lastHeardAt),
          selfCheck: r.report?.selfCheck ?? null,
          mode: r.mode ?? null,
          paused: r.paused,
        },
      ];
    });
  };
  metrics.onCollect(() => {
    for (const { prefix, cache } of state.caches.values()) {
      metrics.set(M.resourceVersion, { prefix }, cache.revision);
      metrics.set(M.objects, { prefix }, cache.size);
      metrics.set(M.watchers, { prefix }, cache.fanout.count);
      metrics.setTotal(M.eventsDispatched, { prefix }, cache.eventsDispatched);
    }
    for (const { prefix, guard } of state.caches.values()) {
      if (guard === undefined) continue;
      const s = guard.status();
      metrics.setTotal(M.selfChecks, { prefix, result: 'ok' }, s.ok);
      metrics.setTotal(M.selfChecks, { prefix, result: 'mismatch' }, s.mismatches);
      metrics.setTotal(M.selfChecks, { prefix, result: 'skipped' }, s.skipped);
      metrics.setTotal(M.selfChecks, { prefix, result: 'failed' }, s.failed);
      metrics.set(M.selfCheckLastSuccess, { prefix }, s.lastGoodAt === undefined ? 0 : s.lastGoodAt / 1000);
    }
    metrics.set(M.replicaConnections, {}, state.replicas().length);
    metrics.clear(M.replicationLagRevisions);
    metrics.clear(M.replicationLagSeconds);
    for (const edge of edges()) {
      metrics.set(M.replicationLagRevisions, { replica: edge.replica }, edge.lagRevisions);
      metrics.set(M.replicationLagSeconds, { replica: edge.replica }, edge.lagSeconds);
    }
    metrics.set(M.ready, {}, state.ready() ? 1 : 0);
    metrics.set(M.etcdReachable, {}, state.etcdReachable() ? 1 : 0);
  });
  return {
    edges,
    stop: () => {
      for (const u of unsubscribe) u();
    },
  };
}

/**
 * Times every key-value request the relay's shared etcd client makes (edgewatch_etcd_request_
 * duration_seconds{operation}): quorum reads, lists, the self-check's ranges, the readiness
 * probe and writes all go through `client.kv`. The watch has a channel of its own and is not a
 * request. The operation label is etcd's RPC name, a fixed set.
 */
export function instrumentEtcd(client: Etcd3, sink: MetricsSink, clock: Clock): void {
  const kv = client.kv;
  const timed =
    <A extends unknown[], R>(operation: string, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const elapsed = startTimer(clock);
      try {
        return await call(...args);
      } finally {
        sink.observe(M.etcdRequestDuration, { operation }, elapsed());
      }
    };
  kv.range = timed('range', kv.range.bind(kv));
  kv.txn = timed('txn', kv.txn.bind(kv));
  kv.put = timed('put', kv.put.bind(kv));
  kv.deleteRange = timed('delete_range', kv.deleteRange.bind(kv));
}
