import { describe, expect, it } from 'vitest';
import { makeObject } from './object.ts';
import { type ReadTier, serveRead } from './read-api.ts';
import { FetchedPage } from './store.ts';
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

/** etcd's state as the fake fallback reads it. */
const etcdRevision = 15;
const etcdState = [obj('/registry/a', 10), obj('/registry/e', 15)];

function tierWith(cache: WatchCache, fromEtcd: string[], proof = true): ReadTier {
  return {
    tier: 'relay',
    exposedPrefixes: ['/registry/'],
    clock: systemClock,
    waitTimeoutMs: 1_000,
    cache: () => cache,
    latestRevision: async () => cache.revision,
    consistentReadsFromCache: proof,
    fallback: async (request) => {
      fromEtcd.push(request.verb);
      return { kind: 'state', servedBy: 'etcd', reader: new FetchedPage(etcdRevision, etcdState, 0) };
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

  // Issue #11: planned {fallback} at a relay without proof (etcd < 3.5.13, or before the version
  // is known), a legacy watch with rv unset got 429 "no etcd at this tier".
  it('serves a legacy watch with rv unset at a relay without proof: initial state from etcd, then the changes from the cache', async () => {
    const cache = new WatchCache({ clock: systemClock });
    cache.replace(12, [obj('/registry/a', 10)]);
    const etcdReads: string[] = [];
    const res = await serveRead(
      tierWith(cache, etcdReads, false),
      new Request('http://relay/v1/list/registry/?watch=true'),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('X-Served-By')).toBe('etcd');
    expect(res.headers.get('X-Resource-Version')).toBe(String(etcdRevision));
    expect(etcdReads).toEqual(['watch']);
    // The cache catches up past etcd's read: only the change after revision 15 follows.
    cache.apply({ revision: 15, events: [{ type: 'PUT', object: obj('/registry/e', 15) }] });
    cache.apply({ revision: 16, events: [{ type: 'PUT', object: obj('/registry/f', 16) }] });
    const reader = res.body?.getReader();
    if (!reader) throw new Error('no body');
    let text = '';
    const decoder = new TextDecoder();
    while (text.split('\n').length < 4) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    await reader.cancel();
    const lines = text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { type: string; object: { key: string } });
    expect(lines.map((l) => `${l.type} ${l.object.key}`)).toEqual([
      'ADDED /registry/a',
      'ADDED /registry/e',
      'ADDED /registry/f',
    ]);
  });
});
