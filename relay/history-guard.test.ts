import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { makeObject } from '../core/object.ts';
import { WatchCache } from '../core/watch-cache.ts';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { HistoryGuard } from './history-guard.ts';
import { silentLogger } from './log.ts';

/** A guard over a cache at revision 10; `noteHead` needs no etcd (the read was made by the caller). */
function setup() {
  const clock = new ManualClock();
  const cache = new WatchCache({ clock });
  cache.replace(10, []);
  const resyncs: string[] = [];
  let lists = 1;
  const guard = new HistoryGuard({
    prefix: '/r/',
    client: undefined as unknown as Etcd3, // never reached by noteHead
    cache,
    clock,
    log: silentLogger,
    intervalMs: 0,
    resync: (reason) => resyncs.push(reason),
    lists: () => lists,
  });
  const relisted = () => {
    lists++;
  };
  return { cache, guard, resyncs, relisted };
}

const put = (revision: number) => ({
  revision,
  events: [
    {
      type: 'PUT' as const,
      object: makeObject({
        key: `/r/${revision}`,
        value: new Uint8Array([1]),
        createRevision: revision,
        modRevision: revision,
        version: 1,
      }),
    },
  ],
});

describe('HistoryGuard.noteHead', () => {
  it('compares etcd’s head with the revision the cache had when the read was sent, not after', () => {
    const { cache, guard, resyncs } = setup();
    const before = guard.beforeHead();
    cache.apply(put(11)); // the watch delivers while the quorum read is in flight
    expect(guard.noteHead(10, before)).toBe(true);
    expect(resyncs).toEqual([]);
  });

  it('takes a head below that revision for another history: one resync however many reads see it', () => {
    const { guard, resyncs } = setup();
    const before = guard.beforeHead();
    expect(guard.noteHead(9, before)).toBe(false);
    expect(guard.noteHead(3, before)).toBe(false);
    expect(resyncs).toHaveLength(1);
    expect(guard.status().historyChanges).toBe(1);
  });

  it('judges nothing when the cache relisted while the read was in flight', () => {
    const { guard, resyncs, relisted } = setup();
    const before = guard.beforeHead();
    relisted();
    expect(guard.noteHead(1, before)).toBe(true);
    expect(resyncs).toEqual([]);
  });
});
