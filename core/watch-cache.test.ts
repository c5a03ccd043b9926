import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { Expired, TooLargeResourceVersion } from './errors.ts';
import { compareKeys } from './keys.ts';
import { deletedObject, makeObject } from './object.ts';
import type { ChangeEvent, KvObject, RevisionBatch } from './types.ts';
import { WatchCache } from './watch-cache.ts';

const utf8 = new TextEncoder();
const obj = (key: string, value: string, mod: number, create = mod, version = 1): KvObject =>
  makeObject({ key, value: utf8.encode(value), createRevision: create, modRevision: mod, version });

/** A minimal etcd: turns writes into batches with correct prev/create/version, and keeps every state. */
class Model {
  revision: number;
  state = new Map<string, KvObject>();
  states = new Map<number, Map<string, KvObject>>();
  constructor(revision: number) {
    this.revision = revision;
    this.states.set(revision, new Map());
  }
  /** One revision writing `ops` (distinct keys); `withPrev` false drops prevs like a feed without prevKv. */
  write(ops: readonly { key: string; value?: string }[], withPrev = true): RevisionBatch | undefined {
    const revision = this.revision + 1;
    const events: ChangeEvent[] = [];
    for (const { key, value } of ops) {
      const prev = this.state.get(key);
      if (value === undefined) {
        if (prev === undefined) continue; // etcd writes no event for deleting a missing key
        this.state.delete(key);
        events.push({ type: 'DELETE', object: deletedObject(prev, revision), ...(withPrev ? { prev } : {}) });
      } else {
        const object = obj(key, value, revision, prev?.createRevision ?? revision, (prev?.version ?? 0) + 1);
        this.state.set(key, object);
        events.push({ type: 'PUT', object, ...(withPrev && prev ? { prev } : {}) });
      }
    }
    if (events.length === 0) return undefined;
    this.revision = revision;
    this.states.set(revision, new Map(this.state));
    return { revision, events };
  }
  sortedAt(revision: number): KvObject[] {
    return [...(this.states.get(revision)?.values() ?? [])].sort((a, b) => compareKeys(a.key, b.key));
  }
}

function readyCache(clock = new ManualClock(), revision = 1) {
  const cache = new WatchCache({ clock });
  cache.replace(revision, []);
  return cache;
}

describe('WatchCache', () => {
  it('is not ready and refuses changes until the first replace', () => {
    const cache = new WatchCache({ clock: new ManualClock() });
    expect(cache.ready).toBe(false);
    expect(() => cache.apply({ revision: 1, events: [] })).toThrow();
    cache.replace(5, [obj('/a', '1', 3)]);
    expect(cache.ready).toBe(true);
    expect(cache.revision).toBe(5);
    expect(cache.snapshot().get('/a')?.value).toBe('1');
    expect(() => cache.apply({ revision: 5, events: [] })).toThrow();
  });

  it('applies puts and deletes and serves the current snapshot at the current revision', () => {
    const model = new Model(1);
    const cache = readyCache();
    const b1 = model.write([
      { key: '/a', value: '1' },
      { key: '/b', value: '2' },
    ]);
    const b2 = model.write([{ key: '/a' }]);
    if (!b1 || !b2) throw new Error('model wrote nothing');
    cache.apply(b1);
    const before = cache.snapshot();
    cache.apply(b2);
    expect(before.revision).toBe(2);
    expect(before.list('/').items.map((o) => o.key)).toEqual(['/a', '/b']);
    expect(cache.snapshot().revision).toBe(3);
    expect(cache.snapshot().list('/').items).toEqual(model.sortedAt(3));
    expect(cache.snapshot()).toBe(cache.snapshot()); // shared until the next write
  });

  it('fills a missing prev from the store so that history can undo it', () => {
    const model = new Model(1);
    const cache = readyCache();
    for (const ops of [[{ key: '/a', value: '1' }], [{ key: '/a', value: '2' }], [{ key: '/a' }]]) {
      const b = model.write(ops, false);
      if (b) cache.apply(b);
    }
    const [put1, put2, del] = cache.history.since(1).map((b) => b.events[0]);
    expect(put1?.prev).toBeUndefined();
    expect(put2?.prev?.value).toBe('1');
    expect(del?.prev?.value).toBe('2');
    expect(cache.snapshotAt(3).get('/a')?.value).toBe('2');
    expect(cache.snapshotAt(2).get('/a')?.value).toBe('1');
    expect(cache.snapshotAt(1).get('/a')).toBeUndefined();
  });

  it('advances the revision on progress and tags the snapshot with it', () => {
    const cache = readyCache(new ManualClock(), 4);
    const seen: number[] = [];
    cache.onRevision((r) => seen.push(r));
    cache.progress(9);
    cache.progress(7); // never backwards
    expect(cache.revision).toBe(9);
    expect(cache.snapshot().revision).toBe(9);
    expect(cache.snapshotAt(4).revision).toBe(4);
    expect(seen).toEqual([9]);
  });

  it('rebuilds the state at every revision in the window exactly like a replay (property)', () => {
    const key = fc.constantFrom('/r/a', '/r/b', '/r/\ue000', '/r/\u{1f600}', '/r/c/d', '/r/');
    const op = fc.record({
      key,
      value: fc.option(fc.constantFrom('x', 'y', '\u{1f600}'), { nil: undefined }),
    });
    const step = fc.oneof(
      fc
        .array(op, { minLength: 1, maxLength: 4 })
        .map((ops) => ({ ops: [...new Map(ops.map((o) => [o.key, o])).values()] })),
      fc.constant({ progress: true as const }),
    );
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 60 }),
        fc.integer({ min: 1, max: 40 }),
        fc.boolean(),
        (steps, maxEvents, withPrev) => {
          const clock = new ManualClock();
          const model = new Model(10);
          const cache = new WatchCache({ clock, maxEvents, snapshotCacheSize: 2 });
          cache.replace(10, []);
          const taken: { revision: number; snapshot: ReturnType<WatchCache['snapshot']> }[] = [];
          for (const s of steps) {
            if ('progress' in s) {
              model.states.set(model.revision + 1, new Map(model.state));
              model.revision += 1;
              cache.progress(model.revision);
            } else {
              const b = model.write(s.ops, withPrev);
              if (b) cache.apply(b);
            }
            taken.push({ revision: cache.revision, snapshot: cache.snapshot() });
            // Exercise the LRU mid-way: an older snapshot stays exact after more writes.
            if (cache.revision > cache.history.startRevision) cache.snapshotAt(cache.revision - 1);
          }
          expect(cache.revision).toBe(model.revision);
          for (let rv = model.revision; rv >= 10; rv--) {
            if (rv >= cache.history.startRevision) {
              expect(cache.snapshotAt(rv).list('').items).toEqual(model.sortedAt(rv));
              expect(cache.snapshotAt(rv).revision).toBe(rv);
            }
          }
          for (const { revision, snapshot } of taken) {
            expect(snapshot.revision).toBe(revision);
            expect(snapshot.list('').items).toEqual(model.sortedAt(revision));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('throws Expired below the window and TooLargeResourceVersion above the revision', () => {
    const model = new Model(1);
    const cache = new WatchCache({ clock: new ManualClock(), maxEvents: 2 });
    cache.replace(1, []);
    for (const value of ['1', '2', '3', '4']) {
      const b = model.write([{ key: '/a', value }]);
      if (b) cache.apply(b);
    }
    expect(cache.history.startRevision).toBe(3);
    expect(() => cache.snapshotAt(2)).toThrow(Expired);
    expect(cache.snapshotAt(3).get('/a')?.value).toBe('2');
    expect(() => cache.snapshotAt(6)).toThrow(TooLargeResourceVersion);
  });

  it('keeps recently materialised snapshots, even after their revision leaves the window', () => {
    const model = new Model(1);
    const cache = new WatchCache({ clock: new ManualClock(), maxEvents: 3, snapshotCacheSize: 2 });
    cache.replace(1, []);
    const write = (value: string) => {
      const b = model.write([{ key: '/a', value }]);
      if (b) cache.apply(b);
    };
    for (const v of ['1', '2', '3']) write(v);
    const at2 = cache.snapshotAt(2);
    expect(cache.snapshotAt(2)).toBe(at2);
    write('4');
    write('5'); // window now starts at 3
    expect(cache.snapshotAt(2)).toBe(at2);
    expect(at2.get('/a')?.value).toBe('1');
    cache.snapshotAt(3);
    cache.snapshotAt(4); // evicts 2 (least recently used)
    expect(() => cache.snapshotAt(2)).toThrow(Expired);
  });

  it('resolves waitFor when the revision arrives, by apply or progress', async () => {
    const clock = new ManualClock();
    const cache = readyCache(clock, 1);
    const targets: number[] = [];
    cache.onWait((n) => targets.push(n));
    await cache.waitFor(1, 100); // already there
    const order: string[] = [];
    const five = cache.waitFor(5, 100).then(() => order.push('5'));
    const three = cache.waitFor(3, 100).then(() => order.push('3'));
    expect(cache.waiting).toBe(2);
    expect(targets).toEqual([5, 3]);
    cache.apply({ revision: 3, events: [{ type: 'PUT', object: obj('/a', 'x', 3) }] });
    await three;
    expect(cache.waiting).toBe(1);
    cache.progress(6);
    await five;
    expect(order).toEqual(['3', '5']);
    expect(cache.waiting).toBe(0);
    expect(clock.pending).toEqual([]); // timers cancelled
  });

  it('rejects waitFor with TooLargeResourceVersion when the revision does not arrive in time', async () => {
    const clock = new ManualClock();
    const cache = readyCache(clock, 1);
    const outcome = cache.waitFor(10, 3000).then(
      () => undefined,
      (e: unknown) => e,
    );
    await clock.advance(2999);
    cache.progress(5);
    expect(cache.waiting).toBe(1);
    await clock.advance(1);
    const error = await outcome;
    expect(error).toBeInstanceOf(TooLargeResourceVersion);
    expect(error).toMatchObject({ requested: 10, current: 5 });
    expect(cache.waiting).toBe(0);
  });

  it('replace swaps the state atomically, restarts history and expires watchers that cannot resume', () => {
    const model = new Model(1);
    const cache = readyCache();
    const b = model.write([{ key: '/a', value: '1' }]);
    if (b) cache.apply(b);
    const closes: (Error | undefined)[] = [];
    const behind = cache.watch({
      fromRevision: 1,
      prefix: '/',
      onBatch: () => true,
      onClose: (e) => closes.push(e),
    });
    const old = cache.snapshot();
    cache.replace(20, [obj('/b', '2', 15)]);
    expect(behind.closed).toBe(true);
    expect(closes[0]).toBeInstanceOf(Expired);
    expect(cache.fanout.count).toBe(0);
    expect(cache.revision).toBe(20);
    expect(
      cache
        .snapshot()
        .list('/')
        .items.map((o) => o.key),
    ).toEqual(['/b']);
    expect(old.get('/a')?.value).toBe('1');
    expect(cache.history.startRevision).toBe(20);
    expect(() => cache.snapshotAt(19)).toThrow(Expired);
    expect(() =>
      cache.watch({ fromRevision: 2, prefix: '/', onBatch: () => true, onClose: () => {} }),
    ).toThrow(Expired);
  });

  it('streams applied batches to watchers and tells them about progress', () => {
    const cache = readyCache(new ManualClock(), 1);
    const got: number[] = [];
    const marks: number[] = [];
    cache.watch({
      fromRevision: 1,
      prefix: '/r/',
      onBatch: (b) => {
        got.push(b.revision);
        return true;
      },
      onProgress: (r) => marks.push(r),
      onClose: () => {},
    });
    cache.apply({ revision: 2, events: [{ type: 'PUT', object: obj('/r/a', 'x', 2) }] });
    cache.apply({ revision: 3, events: [{ type: 'PUT', object: obj('/s/a', 'x', 3) }] });
    cache.progress(8);
    expect(got).toEqual([2]);
    expect(marks).toEqual([3, 8]);
  });

  it('keeps a watcher that is exactly at the relisted revision', () => {
    const cache = readyCache(new ManualClock(), 7);
    const got: number[] = [];
    const closes: (Error | undefined)[] = [];
    const w = cache.watch({
      fromRevision: 7,
      prefix: '/',
      onBatch: (b) => {
        got.push(b.revision);
        return true;
      },
      onClose: (e) => closes.push(e),
    });
    cache.replace(7, []);
    cache.apply({ revision: 8, events: [{ type: 'PUT', object: obj('/a', 'x', 8) }] });
    expect(w.closed).toBe(false);
    expect(closes).toEqual([]);
    expect(got).toEqual([8]);
  });
});
