import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareKeys } from './keys.ts';
import { makeObject } from './object.ts';
import { KeyStore } from './store.ts';
import type { KvObject } from './types.ts';

const utf8 = new TextEncoder();
const obj = (key: string, value = 'v', rev = 1): KvObject =>
  makeObject({ key, value: utf8.encode(value), createRevision: rev, modRevision: rev, version: 1 });
const keysOf = (items: readonly KvObject[]) => items.map((o) => o.key);

/** The reference list: filter and sort a plain array. */
function referenceList(
  keys: string[],
  prefix: string,
  startKey: string | undefined,
  limit: number | undefined,
) {
  const under = [...new Set(keys)]
    .filter((k) => k.startsWith(prefix) && (startKey === undefined || compareKeys(k, startKey) >= 0))
    .sort(compareKeys);
  const n = limit !== undefined && limit > 0 ? limit : under.length;
  return { items: under.slice(0, n), remaining: Math.max(0, under.length - n) };
}

describe('KeyStore', () => {
  it('gets, overwrites and deletes keys', () => {
    const store = new KeyStore([obj('/a', '1')]);
    expect(store.get('/a')?.value).toBe('1');
    store.set(obj('/a', '2'));
    expect(store.get('/a')?.value).toBe('2');
    expect(store.size).toBe(1);
    expect(store.delete('/a')).toBe(true);
    expect(store.delete('/a')).toBe(false);
    expect(store.get('/a')).toBeUndefined();
    expect(store.size).toBe(0);
  });

  it('lists only keys under the prefix, in etcd byte order', () => {
    const store = new KeyStore(
      ['/r/\ue000', '/r/\u{1f600}', '/r/a', '/q/a', '/r', '/s/a', '/r/'].map((k) => obj(k)),
    );
    expect(keysOf(store.list('/r/').items)).toEqual(['/r/', '/r/a', '/r/\ue000', '/r/\u{1f600}']);
    expect(keysOf(store.list('').items)).toEqual([
      '/q/a',
      '/r',
      '/r/',
      '/r/a',
      '/r/\ue000',
      '/r/\u{1f600}',
      '/s/a',
    ]);
    expect(store.list('/none/')).toEqual({ items: [], remaining: 0 });
  });

  it('pages with limit and startKey and reports how many keys remain', () => {
    const store = new KeyStore(['/r/1', '/r/2', '/r/3', '/r/4', '/r/5', '/s/1'].map((k) => obj(k)));
    const first = store.list('/r/', { limit: 2 });
    expect(keysOf(first.items)).toEqual(['/r/1', '/r/2']);
    expect(first.remaining).toBe(3);
    const second = store.list('/r/', { startKey: '/r/3', limit: 2 });
    expect(keysOf(second.items)).toEqual(['/r/3', '/r/4']);
    expect(second.remaining).toBe(1);
    const last = store.list('/r/', { startKey: '/r/5', limit: 2 });
    expect(keysOf(last.items)).toEqual(['/r/5']);
    expect(last.remaining).toBe(0);
    expect(store.list('/r/', { limit: 5 }).remaining).toBe(0);
  });

  it('ignores a startKey before the prefix', () => {
    const store = new KeyStore(['/a', '/r/1', '/r/2'].map((k) => obj(k)));
    expect(keysOf(store.list('/r/', { startKey: '/a' }).items)).toEqual(['/r/1', '/r/2']);
  });

  it('lists like a sorted, filtered array for random keys, prefixes and pages (deep trees)', () => {
    const segment = fc.constantFrom('a', 'b', 'ab', '\ue000', '\u{1f600}', 'z', '0');
    const key = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`);
    fc.assert(
      fc.property(
        fc.array(key, { minLength: 0, maxLength: 600, size: 'max' }),
        fc.array(segment, { maxLength: 2 }).map((s) => (s.length === 0 ? '/' : `/${s.join('/')}`)),
        fc.option(key, { nil: undefined }),
        fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }),
        (keys, prefix, startKey, limit) => {
          const store = new KeyStore(keys.map((k) => obj(k)));
          const page = store.list(prefix, { startKey, limit });
          const expected = referenceList(keys, prefix, startKey, limit);
          expect(keysOf(page.items)).toEqual(expected.items);
          expect(page.remaining).toBe(expected.remaining);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('counts the remaining keys of a large store correctly (the tree-rank path)', () => {
    const keys: string[] = [];
    for (let i = 0; i < 20_000; i++) keys.push(`/r/${String(i).padStart(5, '0')}`);
    const store = new KeyStore([...keys, '/q/x', '/s/x'].map((k) => obj(k)));
    for (const start of [0, 1, 63, 64, 4097, 19_990]) {
      const page = store.list('/r/', { startKey: keys[start], limit: 7 });
      expect(page.items[0]?.key).toBe(keys[start]);
      expect(page.remaining).toBe(Math.max(0, keys.length - start - 7));
    }
  });
});

describe('StoreSnapshot', () => {
  it('does not see writes made after it was taken', () => {
    const store = new KeyStore(
      Array.from({ length: 500 }, (_, i) => obj(`/k/${i}`, 'old')),
      7,
    );
    const snapshot = store.snapshot();
    store.set(obj('/k/1', 'new'));
    store.delete('/k/2');
    store.set(obj('/k/new'));
    store.revision = 8;
    expect(snapshot.revision).toBe(7);
    expect(snapshot.get('/k/1')?.value).toBe('old');
    expect(snapshot.get('/k/2')?.value).toBe('old');
    expect(snapshot.get('/k/new')).toBeUndefined();
    expect(snapshot.size).toBe(500);
    expect(snapshot.list('/k/').items.every((o) => o.value === 'old')).toBe(true);
    expect(store.get('/k/1')?.value).toBe('new');
    expect(store.size).toBe(500);
  });

  it('is retagged with a later revision without copying', () => {
    const snapshot = new KeyStore([obj('/a')], 3).snapshot();
    expect(snapshot.at(3)).toBe(snapshot);
    const later = snapshot.at(5);
    expect(later.revision).toBe(5);
    expect(later.get('/a')).toBe(snapshot.get('/a'));
  });

  it('is unaffected by writes to a clone of the store, and vice versa', () => {
    const store = new KeyStore([obj('/a', '1')], 1);
    const clone = store.clone();
    clone.set(obj('/a', '2'));
    clone.set(obj('/b'));
    expect(store.get('/a')?.value).toBe('1');
    expect(store.get('/b')).toBeUndefined();
    store.delete('/a');
    expect(clone.get('/a')?.value).toBe('2');
  });
});
