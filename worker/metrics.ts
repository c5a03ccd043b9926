/**
 * An edge replica's metrics: the same families as the relay's (core/metrics.ts), kept in memory
 * per Durable Object and served at `/_replica/metrics/{prefix}` in the Prometheus text format
 * 0.0.4, with `tier="edge"` and `location="<colo>"` on every series.
 *
 * Why not prom-client, as the relay uses: it does not run in workerd. Its entry module requires
 * Node's `util` and `cluster` (and `perf_hooks`, `v8`, `fs` for default metrics); the Worker runs
 * without `nodejs_compat`, and even with it the bundled CommonJS fails at start-up with "Dynamic
 * require of "util" is not supported". The text format is small (HELP, TYPE, one line per
 * sample, `_bucket`/`_sum`/`_count` for histograms), so this writes it; the names, types, help and
 * labels come from the same declarations as the relay's, and a test compares the two
 * expositions sample for sample (worker/metrics.test.ts).
 *
 * State lives in the Durable Object's memory: a restart or eviction starts the counters again,
 * which Prometheus' `rate()` handles as a counter reset.
 */
import type {
  CacheMetrics,
  CounterFamily,
  Family,
  GaugeFamily,
  HistogramFamily,
  Labels,
  MetricsSink,
} from '../core/metrics.ts';
import { FAMILIES, M } from '../core/metrics.ts';
import { Readiness } from '../core/readiness.ts';
import type { Clock } from '../core/types.ts';
import type { WatchCache } from '../core/watch-cache.ts';

interface Series {
  readonly labels: Readonly<Record<string, string>>;
  value: number;
  /** Histograms only: per-bucket counts (not cumulative) and the sum. */
  buckets?: number[];
  sum?: number;
}

export class MemoryMetrics implements MetricsSink {
  /** Family name → label key → series. */
  readonly #series = new Map<string, Map<string, Series>>();
  readonly #collectors: (() => void)[] = [];

  count<L extends string>(family: CounterFamily<L>, labels: Labels<L>, by = 1): void {
    this.#get(family, labels).value += by;
  }

  observe<L extends string>(family: HistogramFamily<L>, labels: Labels<L>, value: number): void {
    const series = this.#get(family, labels);
    series.buckets ??= family.buckets.map(() => 0);
    series.sum = (series.sum ?? 0) + value;
    series.value += 1;
    const i = family.buckets.findIndex((bound) => value <= bound);
    if (i >= 0) series.buckets[i] = (series.buckets[i] ?? 0) + 1;
  }

  set<L extends string>(family: GaugeFamily<L>, labels: Labels<L>, value: number): void {
    this.#get(family, labels).value = value;
  }

  /** Sets a counter to a total kept elsewhere (what a link counted), at scrape time. */
  setTotal<L extends string>(family: CounterFamily<L>, labels: Labels<L>, value: number): void {
    this.#get(family, labels).value = value;
  }

  /** The sum of a counter's series (all label values). */
  total(family: CounterFamily): number {
    let sum = 0;
    for (const series of this.#series.get(family.name)?.values() ?? []) sum += series.value;
    return sum;
  }

  /** Drops every series of a family (before a collector sets the ones that still exist). */
  clear(family: Family): void {
    this.#series.get(family.name)?.clear();
  }

  /** Runs `collect` before every exposition, to set gauges from live state. */
  onCollect(collect: () => void): void {
    this.#collectors.push(collect);
  }

  /** The exposition, with `constant` labels (tier, location) on every sample. */
  text(constant: Readonly<Record<string, string>>): string {
    for (const collect of this.#collectors) collect();
    const out: string[] = [];
    for (const family of FAMILIES) {
      out.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.kind}`);
      const series = [...(this.#series.get(family.name)?.values() ?? [])];
      // As prom-client does: a family without labels has its one sample from the start.
      if (series.length === 0 && family.labels.length === 0 && family.kind !== 'histogram') {
        series.push({ labels: {}, value: 0 });
      }
      for (const s of series) {
        const labels = { ...s.labels, ...constant };
        if (family.kind !== 'histogram') {
          out.push(`${family.name}${labelText(labels)} ${number(s.value)}`);
          continue;
        }
        let cumulative = 0;
        family.buckets.forEach((bound, i) => {
          cumulative += s.buckets?.[i] ?? 0;
          out.push(`${family.name}_bucket${labelText({ le: number(bound), ...labels })} ${cumulative}`);
        });
        out.push(`${family.name}_bucket${labelText({ le: '+Inf', ...labels })} ${number(s.value)}`);
        out.push(`${family.name}_sum${labelText(labels)} ${number(s.sum ?? 0)}`);
        out.push(`${family.name}_count${labelText(labels)} ${number(s.value)}`);
      }
      out.push('');
    }
    return `${out.join('\n')}\n`;
  }

  #get(family: Family, labels: Readonly<Record<string, string>>): Series {
    let byKey = this.#series.get(family.name);
    if (byKey === undefined) {
      byKey = new Map();
      this.#series.set(family.name, byKey);
    }
    const key = family.labels.map((l) => labels[l] ?? '').join('\u0000');
    let series = byKey.get(key);
    if (series === undefined) {
      const own: Record<string, string> = {};
      for (const l of family.labels) own[l] = labels[l] ?? '';
      series = { labels: own, value: 0 };
      byKey.set(key, series);
    }
    return series;
  }
}

/** The content type of the text format, as prom-client sends it. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function labelText(labels: Readonly<Record<string, string>>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function number(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** The watch cache's metrics binding; the replica learns its prefix after the cache is built. */
export class ReplicaCacheMetrics implements CacheMetrics {
  prefix = '';
  constructor(readonly sink: MetricsSink) {}
}

/** What a replica's scrape-time gauges and readiness read. */
export interface ReplicaState {
  readonly prefix: string;
  readonly replica: string;
  readonly cache: WatchCache;
  readonly watchers: () => number;
  /** The replica's RelayLink (structurally: this module is also imported by Node-side tests). */
  readonly link: {
    readonly connected: boolean;
    readonly running: boolean;
    readonly lastContactAt: number;
    readonly received: Readonly<Record<string, number>>;
  };
  readonly clock: Clock;
  readonly hasTokens: () => boolean;
  /** The replica's history identity and self-check (worker/replica-history.ts), structurally. */
  readonly history?: ReplicaHistoryView;
}

/** What the metrics and readiness read of worker/replica-history.ts's `ReplicaHistory`. */
export interface ReplicaHistoryView {
  readonly verified: boolean;
  status(): {
    readonly relayChecks: number;
    readonly relayMismatches: number;
    readonly selfChecks: number;
    readonly selfMismatches: number;
    readonly lastGoodAt: number | undefined;
  };
}

/**
 * The replica's self-check in one word, for its heartbeat report and the relay's dashboard:
 * `ok` once the relay vouched for its state and no check since disagreed, `unverified` while it
 * holds no state or one the relay has not vouched for (it forwards reads meanwhile).
 */
export function selfCheckWord(history: ReplicaHistoryView): string {
  return history.verified ? 'ok' : 'unverified';
}

/**
 * Sets the replica's live gauges at every scrape: revision, objects, watchers, whether its stream
 * is up, messages received by type, and the lag in seconds (since the last message from the relay
 * while the stream is down; 0 while it is up: the relay's own metrics give the lag in revisions).
 */
export function collectReplicaState(metrics: MemoryMetrics, state: ReplicaState, readiness: Readiness): void {
  metrics.onCollect(() => {
    const { prefix, cache, link } = state;
    metrics.set(M.resourceVersion, { prefix }, cache.revision);
    metrics.set(M.objects, { prefix }, cache.size);
    metrics.set(M.watchers, { prefix }, state.watchers());
    metrics.setTotal(M.eventsDispatched, { prefix }, cache.eventsDispatched);
    metrics.set(M.replicaConnections, {}, link.connected ? 1 : 0);
    for (const [type, n] of Object.entries(link.received))
      metrics.setTotal(M.replicationMessages, { type }, n);
    const stale =
      !link.connected && link.lastContactAt > 0 ? (state.clock.now() - link.lastContactAt) / 1000 : 0;
    metrics.set(M.replicationLagSeconds, { replica: state.replica }, stale);
    metrics.set(M.ready, {}, readiness.report().ready ? 1 : 0);
    if (state.history) {
      const h = state.history.status();
      // Comparisons with the relay's digest and recomputations from the objects: both are checks.
      metrics.setTotal(
        M.selfChecks,
        { prefix, result: 'ok' },
        h.relayChecks + h.selfChecks - h.relayMismatches - h.selfMismatches,
      );
      metrics.setTotal(M.selfChecks, { prefix, result: 'mismatch' }, h.relayMismatches + h.selfMismatches);
      metrics.set(M.selfCheckLastSuccess, { prefix }, h.lastGoodAt === undefined ? 0 : h.lastGoodAt / 1000);
    }
  });
}

/**
 * A replica's readiness checks: it holds a state to serve (from SQLite or the stream), its stream
 * to the relay is up unless it closed it for being idle, and it has the client tokens.
 */
export function replicaReadiness(state: ReplicaState): Readiness {
  const readiness = new Readiness();
  readiness.add({
    name: 'loaded',
    check: () => (state.cache.ready ? undefined : 'no snapshot from the relay yet'),
  });
  readiness.add({
    name: 'relay-link',
    check: () => {
      const { link, clock } = state;
      if (!link.running || link.connected) return undefined; // idle replicas close their stream on purpose
      if (link.lastContactAt === 0) return 'never reached the relay';
      return `no stream to the relay for ${Math.round((clock.now() - link.lastContactAt) / 1000)} s`;
    },
  });
  readiness.add({
    name: 'history',
    check: () =>
      state.history === undefined || state.history.verified || !state.cache.ready
        ? undefined
        : 'the stored state is not yet vouched for by the relay (reads are forwarded)',
  });
  readiness.add({
    name: 'tokens',
    check: () => (state.hasTokens() ? undefined : 'no client tokens from the relay yet'),
  });
  return readiness;
}

/** A Workers Analytics Engine data point (the binding's type, structurally: tests run in Node). */
export interface AnalyticsPoint {
  readonly indexes: string[];
  readonly blobs: string[];
  readonly doubles: number[];
}

/** What each double of a replica's Analytics Engine data point is, in order (README "Operating"). */
export const ANALYTICS_DOUBLES = [
  'revision',
  'objects',
  'watchers',
  'events_received_total',
  'events_dispatched_total',
  'responses_total',
  'stale_seconds',
  'ready',
] as const;

/**
 * One data point for the optional `EDGE_METRICS` Analytics Engine binding: the replica's gauges and
 * counter totals, indexed by the replica's name, so every location's replica can be queried in one
 * place (a scrape of `/_replica/metrics` reaches only the location that receives it).
 */
export function analyticsPoint(
  metrics: MemoryMetrics,
  state: ReplicaState,
  readiness: Readiness,
): AnalyticsPoint {
  const { link } = state;
  const stale =
    !link.connected && link.lastContactAt > 0 ? (state.clock.now() - link.lastContactAt) / 1000 : 0;
  const values: Record<(typeof ANALYTICS_DOUBLES)[number], number> = {
    revision: state.cache.revision,
    objects: state.cache.size,
    watchers: state.watchers(),
    events_received_total: metrics.total(M.eventsReceived),
    events_dispatched_total: state.cache.eventsDispatched,
    responses_total: metrics.total(M.responses),
    stale_seconds: stale,
    ready: readiness.report().ready ? 1 : 0,
  };
  return {
    // Analytics Engine takes one index of at most 96 bytes; a replica's name is that in practice.
    indexes: [state.replica.slice(0, 96)],
    blobs: [state.replica.split('|')[0] ?? '', state.prefix],
    doubles: ANALYTICS_DOUBLES.map((name) => values[name]),
  };
}
