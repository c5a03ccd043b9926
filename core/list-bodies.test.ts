import { describe, expect, it } from 'vitest';
import { ListBodies } from './list-bodies.ts';
import { makeObject } from './object.ts';
import { KeyStore } from './store.ts';

const store = (n: number, revision: number) =>
  new KeyStore(
    Array.from({ length: n }, (_, i) =>
      makeObject({
        key: `/k/${i}`,
        value: new Uint8Array([97]),
        createRevision: 1,
        modRevision: 1,
        version: 1,
      }),
    ),
    revision,
  );

describe('ListBodies', () => {
  it('answers the same list of the same snapshot with the bytes it built the first time', () => {
    const bodies = new ListBodies();
    const snapshot = store(100, 5).snapshot();
    let builds = 0;
    const build = () => `body${++builds}`;
    const a = bodies.get(snapshot, '/k/', 100, build);
    const b = bodies.get(snapshot, '/k/', 100, build);
    expect(b).toBe(a);
    expect(builds).toBe(1);
  });

  it('never serves a body built from another snapshot, even at the same revision', () => {
    const bodies = new ListBodies();
    let builds = 0;
    const build = () => `body${++builds}`;
    bodies.get(store(100, 5).snapshot(), '/k/', 100, build);
    const other = bodies.get(store(100, 5).snapshot(), '/k/', 100, build);
    expect(new TextDecoder().decode(other)).toBe('body2');
  });

  it('keeps small lists out and forgets the least recently used past its bound', () => {
    const bodies = new ListBodies();
    const snapshot = store(100, 7).snapshot();
    let builds = 0;
    const build = () => `b${++builds}`;
    bodies.get(snapshot, 'small', 3, build);
    bodies.get(snapshot, 'small', 3, build);
    expect(builds).toBe(2);
    for (let i = 0; i < 9; i++) bodies.get(snapshot, `shape${i}`, 100, build);
    const before = builds;
    bodies.get(snapshot, 'shape0', 100, build); // evicted by the ninth
    bodies.get(snapshot, 'shape8', 100, build); // still there
    expect(builds).toBe(before + 1);
  });
});
