/**
 * Metrics, as an injected sink: core code (read path, fan-out, watch cache) records what happens
 * through a `MetricsSink` and never knows how it is exposed. The relay implements the sink with
 * prom-client (relay/metrics.ts); an edge replica with `MemoryMetrics` below, whose text
 * exposition is the same families under the same names (prom-client cannot run in workerd: it
 * needs Node's `util` and `cluster`, see worker/metrics.ts).
 *
 * Every family is declared once, here, with its help text and label names, so both tiers expose
 * identical series. Names follow the Kubernetes API server's watch cache where they mean the same
 * (`apiserver_watch_cache_events_received_total` → `edgewatch_watch_cache_events_received_total`).
 *
 * Label values must come from small, fixed sets: an exposed prefix, a reason, a route name, a
 * status code, a replica name (location × prefix). Never a key, a token or a URL.
 *
 * Recording is cheap (a map update); a sink must never throw. `noMetrics` drops everything, so
 * code paths take the sink as an optional dependency and tests need not provide one.
 */
import { Expired } from './errors.ts';
import type { Clock } from './types.ts';

export interface FamilyShape<K extends string, L extends string> {
  readonly kind: K;
  /** The full series name, `edgewatch_…`. */
  readonly name: string;
  readonly help: string;
  readonly labels: readonly L[];
}
export type CounterFamily<L extends string = string> = FamilyShape<'counter', L>;
export type GaugeFamily<L extends string = string> = FamilyShape<'gauge', L>;
export interface HistogramFamily<L extends string = string> extends FamilyShape<'histogram', L> {
  /** Upper bounds in the family's unit (seconds), ascending; `+Inf` is implied. */
  readonly buckets: readonly number[];
}
export type Family = CounterFamily | GaugeFamily | HistogramFamily;

/** Label values for a family: exactly its label names. */
export type Labels<L extends string> = { readonly [K in L]: string };

export interface MetricsSink {
  /** Adds `by` (default 1) to a counter. */
  count<L extends string>(family: CounterFamily<L>, labels: Labels<L>, by?: number): void;
  /** Records one observation (seconds, for the duration histograms). */
  observe<L extends string>(family: HistogramFamily<L>, labels: Labels<L>, value: number): void;
  /** Sets a gauge. Gauges that mirror live state are better read at scrape time (see the tiers). */
  set<L extends string>(family: GaugeFamily<L>, labels: Labels<L>, value: number): void;
}

/** A sink that records nothing. */
export const noMetrics: MetricsSink = { count() {}, observe() {}, set() {} };

/** Starts a timer on `clock`; the returned function gives the seconds elapsed. */
export function startTimer(clock: Clock): () => number {
  const start = clock.now();
  return () => (clock.now() - start) / 1000;
}

const counter = <L extends string>(name: string, help: string, labels: readonly L[]): CounterFamily<L> => ({
  kind: 'counter',
  name,
  help,
  labels,
});
const gauge = <L extends string>(name: string, help: string, labels: readonly L[]): GaugeFamily<L> => ({
  kind: 'gauge',
  name,
  help,
  labels,
});
const histogram = <L extends string>(
  name: string,
  help: string,
  labels: readonly L[],
  buckets: readonly number[],
): HistogramFamily<L> => ({ kind: 'histogram', name, help, labels, buckets });

/** Latency buckets from 0.5 ms to 10 s: cache reads sit at the bottom, etcd and waits higher. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Every family both tiers expose. A tier may leave a family empty (the edge has no etcd). */
export const M = {
  // --- the watch cache (Kubernetes names) ---
  eventsReceived: counter(
    'edgewatch_watch_cache_events_received_total',
    'Events (one per changed key) applied to the watch cache.',
    ['prefix'],
  ),
  eventsDispatched: counter(
    'edgewatch_watch_cache_events_dispatched_total',
    'Events handed to watchers: one per event per watcher that received it.',
    ['prefix'],
  ),
  terminatedWatchers: counter(
    'edgewatch_terminated_watchers_total',
    'Watchers ended by the tier, by reason (expired: fell out of the window or the cache relisted; error).',
    ['prefix', 'reason'],
  ),
  consistentReads: counter(
    'edgewatch_watch_cache_consistent_read_total',
    'Most-recent reads the cache tried to serve: success=true when it reached the latest revision in time, fallback=true when the read went to etcd or the relay instead.',
    ['prefix', 'success', 'fallback'],
  ),
  readWait: histogram(
    'edgewatch_watch_cache_read_wait_seconds',
    'Time a read waited for the cache to reach the revision it needs.',
    ['prefix'],
    LATENCY_BUCKETS,
  ),
  resourceVersion: gauge(
    'edgewatch_watch_cache_resource_version',
    'The revision the watch cache is current to.',
    ['prefix'],
  ),
  objects: gauge('edgewatch_watch_cache_objects', 'Keys held in the watch cache.', ['prefix']),
  watchers: gauge('edgewatch_watchers', 'Open watchers of the watch cache.', ['prefix']),
  listDuration: histogram(
    'edgewatch_list_duration_seconds',
    'Time to answer a list, by who served it (edge, relay, etcd).',
    ['served_by'],
    LATENCY_BUCKETS,
  ),
  // --- ours ---
  relists: counter(
    'edgewatch_relists_total',
    'Times the cache replaced its whole state, by reason (initial, compacted, history_changed, error).',
    ['prefix', 'reason'],
  ),
  etcdRequestDuration: histogram(
    'edgewatch_etcd_request_duration_seconds',
    'Latency of the relay’s key-value requests to etcd, by RPC (range, txn, put, delete_range).',
    ['operation'],
    LATENCY_BUCKETS,
  ),
  etcdReachable: gauge('edgewatch_etcd_reachable', '1 while the relay reaches etcd, else 0.', []),
  replicaConnections: gauge(
    'edgewatch_replica_connections',
    'Edge replicas connected to the relay (relay), or 1 while this replica’s stream is up (edge).',
    [],
  ),
  replicationLagRevisions: gauge(
    'edgewatch_replication_lag_revisions',
    'How many revisions a replica is behind the relay’s cache.',
    ['replica'],
  ),
  replicationLagSeconds: gauge(
    'edgewatch_replication_lag_seconds',
    'How long ago the relay’s cache first held a revision the replica has not been sent (0 when current).',
    ['replica'],
  ),
  replicationMessages: counter(
    'edgewatch_replication_messages_total',
    'Replication messages sent (relay) or received (edge), by type.',
    ['type'],
  ),
  selfChecks: counter(
    'edgewatch_self_checks_total',
    'Self-checks of the cache against etcd, by result (ok, mismatch, skipped, failed: etcd unreachable).',
    ['prefix', 'result'],
  ),
  selfCheckLastSuccess: gauge(
    'edgewatch_self_check_last_success_timestamp_seconds',
    'Unix time of the last self-check that passed (0: none yet).',
    ['prefix'],
  ),
  tokenReloads: counter(
    'edgewatch_token_reloads_total',
    'Client token table reloads, by result (ok, error).',
    ['result'],
  ),
  responses: counter(
    'edgewatch_responses_total',
    'HTTP responses, by who served them (edge, relay, etcd), route (get, list, watch, k8s, write, status, metrics, other) and code.',
    ['served_by', 'route', 'code'],
  ),
  k8sLeftOut: counter(
    'edgewatch_k8s_left_out_total',
    'Stored values a Kubernetes list left out whole because they are not JSON Kubernetes objects, counted per list served, by reason (protobuf, encrypted, notJson, notAnObject).',
    ['reason'],
  ),
  ready: gauge('edgewatch_ready', '1 while the tier answers ready at its readiness endpoint, else 0.', []),
} as const;

/** All families, in exposition order. */
export const FAMILIES: readonly Family[] = Object.values(M);

/**
 * The route label of a request path: a small fixed set, never the path itself (that would carry
 * keys). Both tiers label responses with it.
 */
export function routeOf(method: string, pathname: string, search: string): string {
  if (method !== 'GET' && method !== 'HEAD') return pathname.startsWith('/v1/kv/') ? 'write' : 'other';
  if (pathname.startsWith('/v1/kv/')) return 'get';
  if (pathname.startsWith('/v1/list/')) return /(^|[?&])watch=(true|1)(&|$)/.test(search) ? 'watch' : 'list';
  if (pathname.startsWith('/api') || pathname === '/version') return 'k8s';
  if (pathname.includes('metrics')) return 'metrics';
  if (pathname.startsWith('/_') || pathname === '/readyz' || pathname === '/healthz') return 'status';
  return 'other';
}

/** A sink bound to one cached prefix (the watch cache does not know its prefix otherwise). */
export interface CacheMetrics {
  readonly sink: MetricsSink;
  readonly prefix: string;
}

/** The `reason` label of a watcher the tier ended with `error`. */
export function terminationReason(error: Error): string {
  return error instanceof Expired ? 'expired' : 'error';
}

/**
 * Counts one response by who served it, route and code, and times it when it is a list (to its
 * headers: a list's body is built before the response is returned). Both tiers call this.
 */
export function recordResponse(
  sink: MetricsSink,
  request: { readonly method: string; readonly url: string },
  response: { readonly status: number; readonly headers: { get(name: string): string | null } },
  tier: string,
  seconds: number,
): void {
  const url = new URL(request.url);
  const route = routeOf(request.method, url.pathname, url.search);
  const servedBy = response.headers.get('X-Served-By') ?? tier;
  sink.count(M.responses, { served_by: servedBy, route, code: String(response.status) });
  if (route === 'list' && response.status === 200)
    sink.observe(M.listDuration, { served_by: servedBy }, seconds);
}

/**
 * The `reason` label of a relist: the reflector's reasons are sentences (a failed self-check
 * carries digests), so they are reduced to a fixed set.
 */
export function relistReason(reason: string): string {
  if (reason === 'initial' || reason === 'compacted' || reason === 'inconsistent') return reason;
  if (reason.startsWith('self-check')) return 'self_check';
  if (reason.includes('history') || reason.includes('head')) return 'history_changed';
  return 'other';
}
