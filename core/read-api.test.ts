import { describe, expect, it } from 'vitest';
import { makeObject } from './object.ts';
import { type ReadTier, serveRead } from './read-api.ts';
import { systemClock } from './types.ts';
import { WatchCache } from './watch-cache.ts';

const obj = (key: string, rev: number) =>
  makeObject({
    key,
    value: new TextEncoder().encode(`v${rev}`),
    createRevision: rev,
    modRevision: rev,
    version: 1,
  });

function tierWith(cache: WatchCache, fromEtcd: string[]): ReadTier {
  return {
    tier: 'relay',
    exposedPrefixes: ['/registry/'],
    clock: systemClock,
    waitTimeoutMs: 1_000,
    consistentReadsFromCache: true,
    cache: () => cache,
    latestRevision: async () => cache.revision,
    fromEtcd: async (request) => {
      fromEtcd.push(request.verb);
      return new Response('{"from":"etcd"}', { status: 200, headers: { 'X-Served-By': 'etcd' } });
    },
  };
}

describe('serveRead', () => {
  // Found by the robustness suite (seed 20251127): an Exact list waiting for rv=15 while the
  // cache relisted at 20 answered 410 although etcd still held revision 15.
  it('falls back to etcd when the cache relists past an Exact revision it was waiting for (relist-during-exact-wait)', async () => {
    const cache = new WatchCache({ clock: systemClock });
    cache.replace(10, [obj('/registry/a', 10)]);
    const etcdReads: string[] = [];
    const pending = serveRead(
      tierWith(cache, etcdReads),
      new Request('http://relay/v1/list/registry/?resourceVersion=15&resourceVersionMatch=Exact'),
    );
    cache.replace(20, [obj('/registry/a', 10), obj('/registry/b', 20)]);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.headers.get('X-Served-By')).toBe('etcd');
    expect(etcdReads).toEqual(['list']);
  });

  it('serves an Exact revision inside the window from the cache without asking etcd', async () => {
    const cache = new WatchCache({ clock: systemClock });
    cache.replace(10, [obj('/registry/a', 10)]);
    cache.apply({ revision: 11, events: [{ type: 'PUT', object: obj('/registry/b', 11) }] });
    const etcdReads: string[] = [];
    const res = await serveRead(
      tierWith(cache, etcdReads),
      new Request('http://relay/v1/list/registry/?resourceVersion=10&resourceVersionMatch=Exact'),
    );
    expect(res.headers.get('X-Served-By')).toBe('relay');
    expect(((await res.json()) as { items: unknown[] }).items).toHaveLength(1);
    expect(etcdReads).toEqual([]);
  });
});
