import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import {
  addEntry,
  DigestTimeline,
  digestInSlices,
  digestOf,
  EMPTY_DIGEST,
  entryHash,
  formatDigest,
  parseDigest,
  removeEntry,
} from './digest.ts';
import { Expired, HistoryChanged, toStatus } from './errors.ts';
import { deletedObject, makeObject } from './object.ts';
import type { ChangeEvent, KvObject, RevisionBatch } from './types.ts';
import { WatchCache } from './watch-cache.ts';

const utf8 = new TextEncoder();
const obj = (key: string, value: string, mod: number, create = mod, version = 1): KvObject =>
  makeObject({ key, value: utf8.encode(value), createRevision: create, modRevision: mod, version });
const bytes = (key: string, value: Uint8Array, mod: number): KvObject =>
  makeObject({ key, value, createRevision: mod, modRevision: mod, version: 1 });

describe('digest', () => {
  it('does not depend on the order of the objects', () => {
    const objects = [obj('/a', '1', 2), obj('/b', '2', 3), obj('/c', '3', 4)];
    expect(digestOf(objects)).toBe(digestOf([...objects].reverse()));
    expect(digestOf([])).toBe(EMPTY_DIGEST);
  });

  it('changes with every served field: key, value, revisions, version, lease, encoding', () => {
    const base = obj('/a', 'x', 5, 3, 2);
    const variants: KvObject[] = [
      obj('/b', 'x', 5, 3, 2),
      obj('/a', 'y', 5, 3, 2),
      obj('/a', 'x', 6, 3, 2),
      obj('/a', 'x', 5, 4, 2),
      obj('/a', 'x', 5, 3, 3),
      makeObject({
        key: '/a',
        value: utf8.encode('x'),
        createRevision: 3,
        modRevision: 5,
        version: 2,
        lease: '7',
      }),
      bytes('/a', new Uint8Array([0xff]), 5),
    ];
    const hashes = new Set([entryHash(base), ...variants.map(entryHash)]);
    expect(hashes.size).toBe(variants.length + 1);
  });

  it('is the same whether built at once or by adding and removing entries', () => {
    const a = obj('/a', '1', 2);
    const b = obj('/b', '2', 3);
    const b2 = obj('/b', '3', 4, 3, 2);
    let d = addEntry(addEntry(EMPTY_DIGEST, a), b);
    d = addEntry(removeEntry(d, b), b2);
    expect(d).toBe(digestOf([b2, a]));
    expect(removeEntry(removeEntry(d, a), b2)).toBe(EMPTY_DIGEST);
  });

  it('counts a duplicated entry instead of cancelling it (a sum, not XOR)', () => {
    const a = obj('/a', '1', 2);
    expect(digestOf([a, a])).not.toBe(EMPTY_DIGEST);
  });

  it('round-trips its wire form and refuses anything else', () => {
    for (const d of [EMPTY_DIGEST, 1n, (1n << 64n) - 1n, digestOf([obj('/a', '1', 2)])]) {
      const text = formatDigest(d);
      expect(text).toMatch(/^[0-9a-f]{16}$/);
      expect(parseDigest(text)).toBe(d);
    }
    for (const bad of [
      '',
      '0',
      'ABCDEF0123456789',
      '0123456789abcdef0',
      'g123456789abcdef',
      ' 123456789abcdef',
    ])
      expect(parseDigest(bad)).toBeUndefined();
  });
});

describe('DigestTimeline', () => {
  it('answers the digest after the last change at or before a revision, within what it keeps', () => {
    const t = new DigestTimeline();
    t.reset(10, 1n);
    t.push(12, 2n);
    t.push(15, 3n);
    expect(t.at(9)).toBeUndefined();
    expect([10, 11, 12, 14, 15, 99].map((r) => t.at(r))).toEqual([1n, 1n, 2n, 2n, 3n, 3n]);
    t.trim(13);
    expect(t.at(11)).toBeUndefined();
    expect(t.at(13)).toBe(2n);
    expect(() => t.push(15, 4n)).toThrow();
  });
});

/** A minimal etcd for one prefix: batches with prevs, and every state kept. */
function model() {
  let revision = 1;
  const state = new Map<string, KvObject>();
  const states = new Map<number, KvObject[]>([[1, []]]);
  return {
    states,
    write(ops: readonly { key: string; value: string | undefined }[]): RevisionBatch | undefined {
      const rev = revision + 1;
      const events: ChangeEvent[] = [];
      const seen = new Set<string>();
      for (const { key, value } of ops) {
        if (seen.has(key)) continue;
        seen.add(key);
        const prev = state.get(key);
        if (value === undefined) {
          if (!prev) continue;
          state.delete(key);
          events.push({ type: 'DELETE', object: deletedObject(prev, rev), prev });
        } else {
          const object = obj(key, value, rev, prev?.createRevision ?? rev, (prev?.version ?? 0) + 1);
          state.set(key, object);
          events.push(prev ? { type: 'PUT', object, prev } : { type: 'PUT', object });
        }
      }
      if (events.length === 0) return undefined;
      revision = rev;
      states.set(rev, [...state.values()]);
      return { revision: rev, events };
    },
  };
}

describe('the watch cache digest', () => {
  it('equals the digest of the state at every revision in the window (property)', () => {
    const op = fc.record({
      key: fc.constantFrom('/r/a', '/r/b', '/r/c', '/r/\u{1f600}'),
      value: fc.option(fc.constantFrom('x', 'y', 'z'), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(fc.array(op, { minLength: 1, maxLength: 3 }), { maxLength: 30 }), (writes) => {
        const m = model();
        const cache = new WatchCache({ clock: new ManualClock(), maxEvents: 10 });
        cache.replace(1, []);
        for (const ops of writes) {
          const batch = m.write(ops);
          if (batch) cache.apply(batch);
          expect(cache.digest).toBe(digestOf(m.states.get(cache.revision) ?? []));
          expect(cache.recomputeDigest()).toBe(cache.digest);
        }
        for (let r = cache.history.startRevision; r <= cache.revision; r++)
          expect(cache.digestAt(r)).toBe(
            digestOf(m.states.get(Math.max(...[...m.states.keys()].filter((k) => k <= r))) ?? []),
          );
        expect(cache.digestAt(cache.history.startRevision - 1)).toBeUndefined();
        expect(cache.digestAt(cache.revision + 1)).toBeUndefined();
      }),
    );
  });

  it('keeps its digest through progress and recomputes it on replace', () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    expect(cache.digestAt(0)).toBeUndefined();
    const objects = [obj('/a', '1', 2), obj('/b', '2', 3)];
    cache.replace(3, objects);
    cache.progress(8);
    expect(cache.digest).toBe(digestOf(objects));
    expect(cache.digestAt(5)).toBe(digestOf(objects));
    expect(cache.digestAt(8)).toBe(digestOf(objects));
  });

  it('sees a store changed behind its back only when recomputed (what the self-check does)', () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    cache.replace(3, [obj('/a', '1', 2)]);
    const before = cache.digest;
    cache.corruptForTest(obj('/a', 'corrupt', 2));
    expect(cache.snapshot().get('/a')?.value).toBe('corrupt');
    expect(cache.digest).toBe(before);
    expect(cache.recomputeDigest()).not.toBe(before);
  });

  it('closes every subscriber on a replace from another history, even one at the new revision', () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    cache.replace(5, []);
    const closed: (Error | undefined)[] = [];
    cache.watch({ fromRevision: 5, prefix: '', onBatch: () => true, onClose: (e) => closed.push(e) });
    cache.replace(5, [obj('/a', '1', 4)], { newHistory: new HistoryChanged('etcd was restored') });
    expect(closed).toHaveLength(1);
    expect(closed[0]).toBeInstanceOf(Expired);
    expect(cache.fanout.count).toBe(0);
  });

  it('stops serving after invalidate, closes subscribers with 410, and loads again on replace', () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    cache.replace(5, [obj('/a', '1', 4)]);
    const closed: (Error | undefined)[] = [];
    cache.watch({ fromRevision: 5, prefix: '', onBatch: () => true, onClose: (e) => closed.push(e) });
    cache.invalidate(new HistoryChanged('another history'));
    expect(cache.ready).toBe(false);
    expect(cache.size).toBe(0);
    expect(closed[0]).toBeInstanceOf(HistoryChanged);
    expect(() => cache.apply({ revision: 6, events: [] })).toThrow();
    cache.replace(2, [obj('/b', '1', 2)]);
    expect(cache.ready).toBe(true);
    expect(cache.revision).toBe(2);
    expect(cache.digest).toBe(digestOf([obj('/b', '1', 2)]));
  });
});

describe('a relist onto a revision the cache held', () => {
  it('lets a subscriber at that revision continue only when the state there is the same', () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    const a = obj('/a', '1', 4);
    cache.replace(5, [a]);
    const closed: (Error | undefined)[] = [];
    const watch = () =>
      cache.watch({ fromRevision: 5, prefix: '', onBatch: () => true, onClose: (e) => closed.push(e) });
    watch();
    cache.replace(5, [a]);
    expect(closed).toEqual([]);
    cache.replace(5, [obj('/a', 'other', 4)]);
    expect(closed[0]).toBeInstanceOf(HistoryChanged);
  });
});

describe('digestInSlices', () => {
  it('is the digest of the whole snapshot, pausing between slices', async () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    const objects = Array.from({ length: 25 }, (_, i) =>
      obj(`/k/${String(i).padStart(2, '0')}`, `v${i}`, i + 2),
    );
    cache.replace(30, objects);
    let pauses = 0;
    const digest = await digestInSlices(cache.snapshot(), async () => void pauses++, 10);
    expect(digest).toBe(digestOf(objects));
    expect(pauses).toBe(2);
    expect(
      await digestInSlices(new WatchCache({ clock: new ManualClock() }).snapshot(), async () => {}),
    ).toBe(EMPTY_DIGEST);
  });
});

describe('the Status of a history change', () => {
  it('is a 410 Expired with the cause HistoryChanged, so that clients relist the most recent state', () => {
    expect(toStatus(new HistoryChanged('etcd was restored'))).toMatchObject({
      code: 410,
      reason: 'Expired',
      details: { causes: [{ reason: 'HistoryChanged', message: 'etcd was restored' }] },
    });
    expect(toStatus(new Expired('too old')).details).toBeUndefined();
  });
});
