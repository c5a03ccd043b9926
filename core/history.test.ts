import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { Expired } from './errors.ts';
import { EventHistory } from './history.ts';
import { makeObject, OBJECT_OVERHEAD_BYTES } from './object.ts';
import type { RevisionBatch } from './types.ts';

const utf8 = new TextEncoder();
/** One revision writing `events` keys. */
function batch(revision: number, events = 1): RevisionBatch {
  return {
    revision,
    events: Array.from({ length: events }, (_, i) => ({
      type: 'PUT' as const,
      object: makeObject({
        key: `/k/${i}`,
        value: utf8.encode('v'),
        createRevision: revision,
        modRevision: revision,
        version: 1,
      }),
    })),
  };
}
const revisions = (batches: readonly RevisionBatch[]) => batches.map((b) => b.revision);

describe('EventHistory', () => {
  it('returns the batches after n, oldest first', () => {
    const history = new EventHistory(new ManualClock(), {}, 10);
    for (const r of [11, 13, 14, 20]) history.push(batch(r));
    expect(revisions(history.since(10))).toEqual([11, 13, 14, 20]);
    expect(revisions(history.since(12))).toEqual([13, 14, 20]);
    expect(revisions(history.since(13))).toEqual([14, 20]);
    expect(revisions(history.since(20))).toEqual([]);
    expect(revisions(history.since(99))).toEqual([]);
    expect(revisions(history.newestFirst(12))).toEqual([20, 14, 13]);
    expect(history.lastRevision).toBe(20);
    expect(history.length).toBe(4);
  });

  it('throws Expired for a revision before the window', () => {
    const history = new EventHistory(new ManualClock(), {}, 10);
    history.push(batch(11));
    expect(() => history.since(9)).toThrow(Expired);
    expect(() => history.newestFirst(9)).toThrow(Expired);
  });

  it('rejects revisions that do not increase', () => {
    const history = new EventHistory(new ManualClock(), {}, 10);
    expect(() => history.push(batch(10))).toThrow();
    history.push(batch(12));
    expect(() => history.push(batch(12))).toThrow();
    expect(() => history.push(batch(11))).toThrow();
  });

  it('trims the oldest revisions by event count and moves startRevision to the last one dropped', () => {
    const history = new EventHistory(new ManualClock(), { maxEvents: 5 }, 0);
    history.push(batch(1, 2));
    history.push(batch(2, 2));
    history.push(batch(3, 1));
    expect(history.eventCount).toBe(5);
    expect(history.startRevision).toBe(0);
    history.push(batch(4, 2)); // 7 events: drop rev 1 (2 events) -> 5
    expect(history.startRevision).toBe(1);
    expect(revisions(history.since(1))).toEqual([2, 3, 4]);
    expect(history.eventCount).toBe(5);
    expect(() => history.since(0)).toThrow(Expired);
  });

  it('keeps the newest revision even when it alone exceeds the count', () => {
    const history = new EventHistory(new ManualClock(), { maxEvents: 3 }, 0);
    history.push(batch(1));
    history.push(batch(2, 10));
    expect(revisions(history.since(1))).toEqual([2]);
    expect(history.startRevision).toBe(1);
  });

  it('trims by bytes', () => {
    const history = new EventHistory(new ManualClock(), { maxBytes: 3 * (OBJECT_OVERHEAD_BYTES + 5) }, 0);
    for (let r = 1; r <= 5; r++) history.push(batch(r));
    expect(history.bytes).toBe(3 * (OBJECT_OVERHEAD_BYTES + 5));
    expect(history.startRevision).toBe(2);
  });

  it('trims revisions older than maxAgeMs on push and on an explicit trim', async () => {
    const clock = new ManualClock();
    const history = new EventHistory(clock, { maxAgeMs: 1000 }, 0);
    history.push(batch(1));
    await clock.advance(500);
    history.push(batch(2));
    await clock.advance(500);
    history.push(batch(3));
    expect(history.startRevision).toBe(0); // rev 1 is exactly 1000 ms old: kept
    await clock.advance(1);
    history.trim();
    expect(history.startRevision).toBe(1);
    expect(revisions(history.since(1))).toEqual([2, 3]);
    await clock.advance(3999);
    history.trim();
    expect(history.length).toBe(0);
    expect(history.startRevision).toBe(3);
    expect(history.lastRevision).toBe(3);
    expect(history.since(3)).toEqual([]);
  });

  it('starts empty at the given revision after reset', () => {
    const history = new EventHistory(new ManualClock(), {}, 0);
    history.push(batch(1));
    history.push(batch(2));
    history.reset(50);
    expect(history.startRevision).toBe(50);
    expect(history.length).toBe(0);
    expect(history.eventCount).toBe(0);
    expect(() => history.since(49)).toThrow(Expired);
    history.push(batch(51));
    expect(revisions(history.since(50))).toEqual([51]);
  });

  it('stays correct across internal compaction of a long-running window', () => {
    const history = new EventHistory(new ManualClock(), { maxEvents: 100 }, 0);
    for (let r = 1; r <= 10_000; r++) history.push(batch(r));
    expect(history.startRevision).toBe(9900);
    expect(history.length).toBe(100);
    expect(revisions(history.since(9990))).toEqual(Array.from({ length: 10 }, (_, i) => 9991 + i));
  });
});
