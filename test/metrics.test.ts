/**
 * The relay's /metrics against a real etcd: the series move with what really happens (a write
 * is an event received, a watcher's delivery is an event dispatched, a most-recent list is a
 * consistent read), the gauges equal what /_relay/status says, and no key reaches a label.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './helpers/eventually.ts';
import { type Exposition, scrape } from './helpers/prometheus.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const P = { prefix: '/registry/' };

describe('relay /metrics', () => {
  let stack: Stack;
  const metrics = () => scrape(`${stack.relay.url}/metrics`);
  beforeAll(async () => {
    stack = await startStack({ worker: false });
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
    await eventually(metrics, (m) => m.value('edgewatch_watchers', P) === 1, 'a watcher counted');
    const dispatchedBefore = before.valueOr0('edgewatch_watch_cache_events_dispatched_total', P);
    await stack.client.put('/registry/metrics/b').value('2');
    const m = await eventually(
      metrics,
      (x) => x.valueOr0('edgewatch_watch_cache_events_dispatched_total', P) === dispatchedBefore + 1,
      'the event dispatched to the watcher',
    );
    expect(m.value('edgewatch_responses_total', { served_by: 'relay', route: 'watch', code: '200' })).toBe(
      before.valueOr0('edgewatch_responses_total', { served_by: 'relay', route: 'watch', code: '200' }) + 1,
    );
    controller.abort();
    await reader?.cancel().catch(() => {});
    await eventually(metrics, (x) => x.value('edgewatch_watchers', P) === 0, 'the watcher gone');
  });

  it('counts a most-recent list as a consistent read and times it, without keys in any label', async () => {
    const before = await metrics();
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
});
