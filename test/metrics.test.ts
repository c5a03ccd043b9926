/**
 * Metrics at both tiers against a real etcd, relay and workerd: the series move with what really
 * happens (a write is an event received, a watcher's delivery is an event dispatched, a
 * most-recent list is a consistent read), the gauges equal what the status endpoints say, no key
 * reaches a label, and the edge's hand-written exposition has the relay's families exactly.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { M } from '../core/metrics.ts';
import { makeObject } from '../core/object.ts';
import { WatchCache } from '../core/watch-cache.ts';
import { silentLogger } from '../relay/log.ts';
import { RelayMetrics } from '../relay/metrics.ts';
import { TokenStore } from '../relay/tokens.ts';
import { ANALYTICS_DOUBLES, analyticsPoint, MemoryMetrics, replicaReadiness } from '../worker/metrics.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { type Exposition, parseExposition, scrape } from './helpers/prometheus.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const P = { prefix: '/registry/' };

describe('metrics at both tiers', () => {
  let stack: Stack;
  const metrics = () => scrape(`${stack.relay.url}/metrics`);
  const edgeUrl = () => stack.worker?.url ?? '';
  const edgeMetrics = () => scrape(`${edgeUrl()}/_replica/metrics/registry/`);
  beforeAll(async () => {
    stack = await startStack({
      relayArgs: ['--ready-etcd-timeout-ms', '1000', '--self-check-interval-ms', '300'],
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('is Prometheus text from prom-client with tier="relay" on every edgewatch series', async () => {
    const res = await fetch(`${stack.relay.url}/metrics`);
    expect(res.headers.get('Content-Type')).toContain('text/plain; version=0.0.4');
    const m = await metrics();
    expect(m.types.get('edgewatch_watch_cache_events_received_total')).toBe('counter');
    expect(m.types.get('edgewatch_watch_cache_read_wait_seconds')).toBe('histogram');
    expect(m.types.get('edgewatch_replication_lag_seconds')).toBe('gauge');
    const ours = m.samples.filter((s) => s.name.startsWith('edgewatch_'));
    expect(ours.length).toBeGreaterThan(0);
    for (const s of ours) expect(s.labels.tier, s.name).toBe('relay');
    expect(m.value('edgewatch_relists_total', { ...P, reason: 'initial' })).toBe(1);
  });

  it('counts each written key as an event received and sets the resource version to the status revision', async () => {
    const before = (await metrics()).valueOr0('edgewatch_watch_cache_events_received_total', P);
    const put = await stack.client.put('/registry/metrics/a').value('1').exec();
    const revision = Number(put.header.revision);
    await stack.relay.caches.get('/registry/')?.cache.waitFor(revision, 5_000);
    const m = await metrics();
    expect(m.value('edgewatch_watch_cache_events_received_total', P)).toBe(before + 1);
    const status = (await (await fetch(`${stack.relay.url}/_relay/status`)).json()) as {
      prefixes: { prefix: string; revision: number; objects: number }[];
    };
    const registry = status.prefixes.find((p) => p.prefix === '/registry/');
    expect(m.value('edgewatch_watch_cache_resource_version', P)).toBe(registry?.revision);
    expect(m.value('edgewatch_watch_cache_objects', P)).toBe(registry?.objects);
  });

  it('counts events dispatched to a watcher, the watcher itself, and responses by route and code', async () => {
    const before = await metrics();
    const controller = new AbortController();
    const watch = await fetch(`${stack.relay.url}/v1/list/registry/metrics/?watch=true&resourceVersion=0`, {
      signal: controller.signal,
    });
    const reader = watch.body?.getReader();
    await expect
      .poll(async () => (await metrics()).value('edgewatch_watchers', P), { message: 'a watcher counted' })
      .toBe(1);
    const dispatchedBefore = before.valueOr0('edgewatch_watch_cache_events_dispatched_total', P);
    await stack.client.put('/registry/metrics/b').value('2');
    const m = await vi.waitFor(async () => {
      const x = await metrics();
      expect(x.valueOr0('edgewatch_watch_cache_events_dispatched_total', P), 'the event dispatched').toBe(
        dispatchedBefore + 1,
      );
      return x;
    }, 10_000);
    expect(m.value('edgewatch_responses_total', { served_by: 'relay', route: 'watch', code: '200' })).toBe(
      before.valueOr0('edgewatch_responses_total', { served_by: 'relay', route: 'watch', code: '200' }) + 1,
    );
    controller.abort();
    await reader?.cancel().catch(() => {});
    await expect
      .poll(async () => (await metrics()).value('edgewatch_watchers', P), { message: 'the watcher gone' })
      .toBe(0);
  });

  it('counts a most-recent list as a consistent read and times it, without keys in any label', async () => {
    const before = await metrics();
    const range = (x: Exposition) =>
      x.valueOr0('edgewatch_etcd_request_duration_seconds_count', { operation: 'range' });
    const consistent = { ...P, success: 'true', fallback: 'false' };
    const res = await fetch(`${stack.relay.url}/v1/list/registry/metrics/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('X-Served-By')).toBe('relay');
    const m = await metrics();
    expect(m.value('edgewatch_watch_cache_consistent_read_total', consistent)).toBe(
      before.valueOr0('edgewatch_watch_cache_consistent_read_total', consistent) + 1,
    );
    const count = (x: Exposition) =>
      x.valueOr0('edgewatch_list_duration_seconds_count', { served_by: 'relay' });
    expect(count(m)).toBe(count(before) + 1);
    // Its quorum read for etcd's current revision is a range request, timed.
    expect(range(m)).toBeGreaterThan(range(before));
    const notFound = await fetch(`${stack.relay.url}/v1/kv/registry/metrics/absent`);
    expect(notFound.status).toBe(404);
    const after = await metrics();
    expect(after.value('edgewatch_responses_total', { served_by: 'relay', route: 'get', code: '404' })).toBe(
      before.valueOr0('edgewatch_responses_total', { served_by: 'relay', route: 'get', code: '404' }) + 1,
    );
    for (const s of after.samples) {
      for (const v of Object.values(s.labels)) expect(v, s.name).not.toContain('/registry/metrics');
    }
  });

  it('is ready with every check passing, and says which checks it ran', async () => {
    const res = await fetch(`${stack.relay.url}/readyz?verbose`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('[+]caches ok');
    expect(text).toContain('[+]etcd ok');
    expect((await metrics()).value('edgewatch_ready')).toBe(1);
  });

  it('serves the same families at each edge replica with tier="edge" and its location', async () => {
    const put = await stack.client.put('/registry/metrics/edge').value('e').exec();
    const revision = Number(put.header.revision);
    await expect
      .poll(
        async () =>
          ((await (await fetch(`${edgeUrl()}/_replica/status/registry/`)).json()) as { revision: number })
            .revision,
        { message: 'the replica at the write' },
      )
      .toBeGreaterThanOrEqual(revision);
    const got = await fetch(`${edgeUrl()}/v1/kv/registry/metrics/edge?resourceVersion=${revision}`);
    expect(got.status).toBe(200);
    expect(got.headers.get('X-Served-By')).toBe('edge');
    const m = await edgeMetrics();
    for (const family of Object.values(M)) expect(m.types.get(family.name), family.name).toBe(family.kind);
    const ours = m.samples.filter((s) => s.name.startsWith('edgewatch_'));
    // The replica's name is `<location>|<prefix>|<shard>`; the location is the request's colo.
    const location = got.headers.get('X-Edge-Replica')?.split('|')[0];
    expect(location).toBeTruthy();
    for (const s of ours) expect(s.labels, s.name).toMatchObject({ tier: 'edge', location });
    expect(
      m.value('edgewatch_responses_total', { served_by: 'edge', route: 'get', code: '200' }),
    ).toBeGreaterThan(0);
    const status = (await (await fetch(`${edgeUrl()}/_replica/status/registry/`)).json()) as {
      revision: number;
      objects: number;
    };
    expect(m.value('edgewatch_watch_cache_resource_version', P)).toBe(status.revision);
    expect(m.value('edgewatch_watch_cache_objects', P)).toBe(status.objects);
    expect(m.value('edgewatch_replica_connections')).toBe(1);
    // The replica compared its digest with the relay's on every message: checks that passed.
    expect(m.value('edgewatch_self_checks_total', { ...P, result: 'ok' })).toBeGreaterThan(0);
    expect(m.value('edgewatch_self_checks_total', { ...P, result: 'mismatch' })).toBe(0);
    expect(m.value('edgewatch_self_check_last_success_timestamp_seconds', P)).toBeGreaterThan(0);
  });

  it('counts at the edge the events the replica receives from the relay', async () => {
    const before = (await edgeMetrics()).valueOr0('edgewatch_watch_cache_events_received_total', P);
    const put = await stack.client.put('/registry/metrics/edge2').value('e').exec();
    const revision = Number(put.header.revision);
    const m = await vi.waitFor(async () => {
      const x = await edgeMetrics();
      expect(
        x.value('edgewatch_watch_cache_resource_version', P),
        'the replica at the write',
      ).toBeGreaterThanOrEqual(revision);
      return x;
    }, 10_000);
    expect(m.value('edgewatch_watch_cache_events_received_total', P)).toBe(before + 1);
  });

  it('reports at the relay each connected replica and its lag, which reaches 0', async () => {
    const name = (await fetch(`${edgeUrl()}/v1/kv/registry/metrics/edge?resourceVersion=0`)).headers.get(
      'X-Edge-Replica',
    );
    const replica = { replica: name ?? '' };
    const m = await vi.waitFor(async () => {
      const x = await metrics();
      expect(x.samples.some((s) => s.name === 'edgewatch_replication_lag_revisions')).toBe(true);
      expect(x.valueOr0('edgewatch_replication_lag_revisions', replica), 'the replica caught up').toBe(0);
      return x;
    }, 10_000);
    expect(m.value('edgewatch_replica_connections')).toBe(1);
    expect(m.value('edgewatch_replication_lag_seconds', replica)).toBe(0);
  });

  it('answers readiness per replica', async () => {
    const res = await fetch(`${edgeUrl()}/_replica/readyz/registry/?verbose`);
    expect(res.status).toBe(200);
    const text = await res.text();
    for (const check of ['loaded', 'relay-link', 'history', 'tokens'])
      expect(text).toContain(`[+]${check} ok`);
    expect((await edgeMetrics()).value('edgewatch_ready')).toBe(1);
    expect((await fetch(`${edgeUrl()}/_replica/readyz/elsewhere/`)).status).toBe(403);
  });

  it('exposes the self-check results and the time of the last good check that /_relay/status shows', async () => {
    const status = await vi.waitFor(async () => {
      const body = (await (await fetch(`${stack.relay.url}/_relay/status`)).json()) as {
        prefixes: { prefix: string; history: { ok: number; lastGoodAt?: number } }[];
      };
      expect(body.prefixes[0]?.history.ok ?? 0, 'a self-check passed').toBeGreaterThanOrEqual(1);
      return body;
    }, 10_000);
    const m = await metrics();
    const history = status.prefixes.find((p) => p.prefix === '/registry/')?.history;
    // Checks keep running between the two requests: the scrape sees at least what status saw.
    expect(m.value('edgewatch_self_checks_total', { ...P, result: 'ok' })).toBeGreaterThanOrEqual(
      history?.ok ?? 1,
    );
    expect(m.value('edgewatch_self_checks_total', { ...P, result: 'mismatch' })).toBe(0);
    expect(m.value('edgewatch_self_check_last_success_timestamp_seconds', P) * 1000).toBeGreaterThanOrEqual(
      history?.lastGoodAt ?? Number.POSITIVE_INFINITY,
    );
  });

  // Last: it takes etcd away.
  it('is not ready once etcd has been unreachable longer than --ready-etcd-timeout-ms, yet alive, and ready when etcd is back', async () => {
    await stack.etcd.kill();
    const down = await vi.waitFor(async () => {
      const res = await fetch(`${stack.relay.url}/readyz`);
      expect(res.status, 'not ready without etcd').toBe(503);
      return { text: await res.text() };
    }, 10_000);
    expect(down.text).toMatch(/\[-\]etcd: etcd unreachable for \d+ s/);
    expect((await fetch(`${stack.relay.url}/healthz`)).status).toBe(200);
    const m = await metrics();
    expect(m.value('edgewatch_etcd_reachable')).toBe(0);
    expect(m.value('edgewatch_ready')).toBe(0);
    await stack.etcd.restart();
    await expect
      .poll(async () => (await fetch(`${stack.relay.url}/readyz`)).status, {
        message: 'ready again with etcd back',
        timeout: 30_000,
      })
      .toBe(200);
    expect((await metrics()).value('edgewatch_etcd_reachable')).toBe(1);
  });
});

describe('token reloads', () => {
  it('are counted by result, a file that does not parse as an error', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-tokens-'));
    const file = path.join(dir, 'tokens.json');
    writeFileSync(file, JSON.stringify({ tokens: [] }));
    const metrics = new RelayMetrics({ defaultMetrics: false });
    const store = new TokenStore({ file, insecure: false, log: silentLogger, metrics, pollMs: 60_000 });
    try {
      store.reload();
      writeFileSync(file, '{ not json');
      store.reload();
      store.reload();
    } finally {
      store.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    const m = parseExposition(await metrics.text());
    expect(m.value('edgewatch_token_reloads_total', { result: 'ok' })).toBe(1);
    expect(m.value('edgewatch_token_reloads_total', { result: 'error' })).toBe(2);
  });
});

describe('the Analytics Engine data point', () => {
  it('names the replica and carries its gauges and counter totals in the documented order', () => {
    const clock = new ManualClock(1_000_000);
    const metrics = new MemoryMetrics();
    const cache = new WatchCache({ clock, metrics: { sink: metrics, prefix: '/r/' } });
    cache.replace(5, []);
    cache.apply({
      revision: 6,
      events: [
        {
          type: 'PUT',
          object: makeObject({
            key: '/r/a',
            value: new TextEncoder().encode('x'),
            createRevision: 6,
            modRevision: 6,
            version: 1,
          }),
        },
      ],
    });
    metrics.count(M.responses, { served_by: 'edge', route: 'get', code: '200' }, 3);
    metrics.count(M.responses, { served_by: 'relay', route: 'list', code: '200' });
    const link = { connected: false, running: true, lastContactAt: 1_000_000 - 2_500, received: {} };
    const state = {
      prefix: '/r/',
      replica: 'AMS|/r/|0',
      cache,
      watchers: () => 2,
      link,
      clock,
      hasTokens: () => true,
    };
    const point = analyticsPoint(metrics, state, replicaReadiness(state));
    expect(point.indexes).toEqual(['AMS|/r/|0']);
    expect(point.blobs).toEqual(['AMS', '/r/']);
    const named = Object.fromEntries(ANALYTICS_DOUBLES.map((name, i) => [name, point.doubles[i]]));
    expect(named).toEqual({
      revision: 6,
      objects: 1,
      watchers: 2,
      events_received_total: 1,
      events_dispatched_total: 0,
      responses_total: 4,
      stale_seconds: 2.5,
      ready: 0, // its running stream is down
    });
  });
});

describe('the edge exposition', () => {
  it('has the same samples as prom-client gives for the same recordings', async () => {
    const relay = new RelayMetrics({ defaultMetrics: false });
    const edge = new MemoryMetrics();
    for (const sink of [relay, edge]) {
      sink.count(M.eventsReceived, { prefix: '/a/' }, 3);
      sink.count(M.terminatedWatchers, { prefix: '/a/', reason: 'expired' });
      sink.count(M.responses, { served_by: 'edge', route: 'get', code: '200' }, 2);
      sink.observe(M.readWait, { prefix: '/a"\\\n/' }, 0.003);
      sink.observe(M.readWait, { prefix: '/a"\\\n/' }, 42);
      sink.observe(M.listDuration, { served_by: 'edge' }, 0.0005);
      sink.set(M.resourceVersion, { prefix: '/a/' }, 17);
      sink.set(M.replicationLagSeconds, { replica: 'x|/a/|0' }, 1.5);
    }
    const fromProm = parseExposition(await relay.text());
    const fromEdge = parseExposition(edge.text({ tier: 'relay' }));
    const key = (s: { name: string; labels: Record<string, string>; value: number }) =>
      `${s.name}${JSON.stringify(Object.entries(s.labels).sort())} ${s.value}`;
    expect(fromEdge.samples.map(key).sort()).toEqual(fromProm.samples.map(key).sort());
    expect([...fromEdge.types].sort()).toEqual([...fromProm.types].sort());
  });
});
