/**
 * The relay process: one watch cache per exposed prefix, served over HTTP.
 *
 * `startRelay` is what `relay/main.ts` runs and what the tests start in-process; it resolves once
 * the server listens. Each prefix's cache loads in the background: until it has, `/readyz` says
 * so, gets and lists go to etcd and watches get 429 (core/rules.ts).
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { Backoff } from '../core/backoff.ts';
import { NotFound } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';
import { relistReason } from '../core/metrics.ts';
import { serveRead } from '../core/read-api.ts';
import { Readiness } from '../core/readiness.ts';
import { type Cancel, systemClock } from '../core/types.ts';
import type { RelayConfig } from './config.ts';
import { serveDashboard } from './dashboard/serve.ts';
import { createEtcdClient, etcdVersion, supportsConsistentCacheReads } from './etcd/client.ts';
import { currentRevision } from './etcd/lister.ts';
import { k8sRoutes } from './k8s.ts';
import { jsonLogger, type Logger } from './log.ts';
import { httpMetrics, instrumentEtcd, observeRelay, RelayMetrics, type RelayObserver } from './metrics.ts';
import { PrefixCache } from './prefix-cache.ts';
import { relayTier } from './read-tier.ts';
import { EtcdProbe } from './readiness.ts';
import { attachReplication } from './replicate.ts';
import { TokenStore } from './tokens.ts';
import { serveWrite } from './writes.ts';

export interface RunningRelay {
  readonly url: string;
  readonly port: number;
  readonly caches: ReadonlyMap<string, PrefixCache>;
  /** The relay's metrics (served at /metrics); core code records through it as a MetricsSink. */
  readonly metrics: RelayMetrics;
  /** `/readyz`'s named checks; add one with `readiness.add({ name, check })`. */
  readonly readiness: Readiness;
  /** Open watch streams (for leak checks). */
  readonly watchers: number;
  /** Resolves once every prefix's cache has loaded its first list. */
  ready(): Promise<void>;
  /** Re-reads the tokens file now. */
  reloadTokens(): void;
  stop(): Promise<void>;
}

export async function startRelay(
  config: RelayConfig,
  log: Logger = jsonLogger('relay'),
): Promise<RunningRelay> {
  const clock = systemClock;
  const security = { tls: config.etcdTls, auth: config.etcdAuth };
  const client = createEtcdClient({ endpoints: config.etcdEndpoints, ...security });
  const metrics = new RelayMetrics();
  instrumentEtcd(client, metrics, clock);
  const caches = new Map<string, PrefixCache>();
  for (const prefix of config.prefixes) {
    caches.set(
      prefix,
      new PrefixCache({
        prefix,
        client,
        endpoints: config.etcdEndpoints,
        security,
        clock,
        log,
        metrics,
        ...(config.selfCheckIntervalMs !== undefined
          ? { selfCheckIntervalMs: config.selfCheckIntervalMs }
          : {}),
      }),
    );
  }
  const etcdProbe = new EtcdProbe({
    clock,
    probe: () => currentRevision(client, config.prefixes[0] ?? '/'),
    intervalMs: 1000,
    unreachableAfterMs: config.readyEtcdTimeoutMs ?? 10_000,
  });
  const readiness = new Readiness();
  readiness.add({
    name: 'caches',
    check: () => {
      const loading = [...caches.values()].filter((p) => !p.ready).map((p) => p.prefix);
      return loading.length === 0 ? undefined : `loading ${loading.join(', ')}`;
    },
  });
  readiness.add({ name: 'etcd', check: () => etcdProbe.check() });
  // A cache whose state may be another etcd history's (a self-check mismatch, a history change
  // found after a broken watch, a compaction past it) is relisting: not ready until it is done.
  readiness.add({
    name: 'history',
    check: () => {
      const relisting = [...caches.values()].flatMap((p) => {
        const reason = p.relistingAfterHistoryChange;
        return reason === undefined ? [] : [`${p.prefix} relisting (${relistReason(reason)})`];
      });
      return relisting.length === 0 ? undefined : relisting.join(', ');
    },
  });

  // Consistent reads from cache need etcd >= 3.5.13; until the version is known, assume not.
  let consistentReads = false;
  const versionBackoff = new Backoff({ clock });
  let cancelVersionRetry: Cancel = () => {};
  const detectVersion = async () => {
    try {
      const version = await etcdVersion(client);
      consistentReads = supportsConsistentCacheReads(version);
      log.info('etcd version', { version, consistentReadsFromCache: consistentReads });
    } catch (error) {
      if (stopped) return;
      if (versionBackoff.failures === 0) log.warn('etcd version unknown, retrying', { error: String(error) });
      cancelVersionRetry = versionBackoff.retry(() => void detectVersion());
    }
  };
  let stopped = false;
  void detectVersion();
  etcdProbe.start();
  for (const cache of caches.values()) cache.start();

  const tokens = new TokenStore({
    file: config.tokensFile,
    json: config.tokensJson,
    insecure: config.insecureNoAuth,
    log,
    metrics,
  });
  let watchers = 0;
  /** Set once the replication endpoint is attached to the listening server. */
  let replicaConnections = () => 0;
  /** Set with the replication endpoint: the replica list and the scrape-time gauges. */
  let observer: RelayObserver = { edges: () => [], stop: () => {} };
  const tier = relayTier({
    authorizer: () => tokens.authorizer,
    client,
    caches,
    clock,
    waitTimeoutMs: config.waitTimeoutMs,
    continueSecret: config.continueSecret,
    consistentReadsFromCache: () => consistentReads,
    log,
    metrics,
    onWatch: (delta) => {
      watchers += delta;
    },
  });

  const app = new Hono();
  app.use(httpMetrics(metrics, clock, 'relay'));
  app.get('/healthz', (c) => c.text('ok'));
  app.get('/readyz', (c) => readiness.response(c.req.query('verbose') !== undefined));
  serveDashboard(app);
  app.get('/metrics', async (c) =>
    c.body(await metrics.text(), 200, { 'Content-Type': metrics.contentType }),
  );
  // What each cache holds: the revision it is current to and the oldest one its window can
  // still serve (a watch or Exact read below it gets 410 or goes to etcd). For operators, the
  // robustness checker and the future dashboard; it carries no keys or values.
  app.get('/_relay/status', (c) =>
    c.json({
      watchers,
      replicas: replicaConnections(),
      // Each connected replica: location, prefix, revision, lag, watchers, last message (the dashboard).
      edges: observer.edges(),
      readiness: readiness.report(),
      prefixes: [...caches.values()].map((p) => ({
        prefix: p.prefix,
        ready: p.ready,
        revision: p.cache.revision,
        historyStart: p.cache.history.startRevision,
        objects: p.cache.size,
        subscribers: p.cache.fanout.count,
        // History identity and the self-check against etcd (relay/history-guard.ts).
        history: p.guard.status(),
      })),
    }),
  );
  app.get('/v1/*', (c) => serveRead(tier, c.req.raw));
  k8sRoutes(app, tier, config.k8sResources);
  const writes = {
    client,
    exposedPrefixes: config.prefixes,
    authorizer: () => tokens.authorizer,
    log,
    metrics,
    clock,
  };
  app.on(['PUT', 'DELETE', 'POST', 'PATCH'], '/v1/*', (c) => serveWrite(writes, c.req.raw));
  app.notFound((c) => errorResponse(new NotFound(`no endpoint at ${c.req.method} ${c.req.path}`), 'relay'));
  app.onError((error, c) => {
    log.error('unhandled error', { path: c.req.path, error: String(error) });
    return errorResponse(error, 'relay');
  });

  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, () => resolve(s));
  });
  const replication = attachReplication(server, {
    caches,
    secrets: config.replicationSecrets,
    scopes: tokens,
    log,
    clock,
    waitTimeoutMs: config.waitTimeoutMs,
  });
  replicaConnections = () => replication.connections;
  observer = observeRelay(metrics, clock, {
    caches,
    replicas: () => replication.replicas(),
    ready: () => readiness.report().ready,
    etcdReachable: () => etcdProbe.reachable,
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host}:${port}`;
  log.info('listening', { url, prefixes: config.prefixes.join(',') });
  return {
    url,
    port,
    caches,
    metrics,
    readiness,
    get watchers() {
      return watchers;
    },
    reloadTokens: () => tokens.reload(),
    ready: async () => {
      await Promise.all([...caches.values()].map((c) => c.whenReady));
    },
    async stop() {
      stopped = true;
      cancelVersionRetry();
      etcdProbe.stop();
      observer.stop();
      tokens.stop();
      await replication.close();
      await Promise.all([...caches.values()].map((c) => c.stop()));
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeAllConnections' in server) server.closeAllConnections();
      });
      client.close();
    },
  };
}
