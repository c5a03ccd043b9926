import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { Expired } from './errors.ts';
import { Fanout, type SubscribeOptions, type Subscription } from './fanout.ts';
import { EventHistory } from './history.ts';
import { makeObject } from './object.ts';
import type { RevisionBatch } from './types.ts';

const clock = new ManualClock();
const utf8 = new TextEncoder();

/** A history + fanout pair fed like the watch cache feeds them (push, then publish). */
function setup(maxEvents = 1000, start = 0) {
  const history = new EventHistory(clock, { maxEvents }, start);
  const fanout = new Fanout(history);
  let revision = start;
  const write = (...keys: string[]): RevisionBatch => {
    revision += 1;
    const batch: RevisionBatch = {
      revision,
      events: keys.map((key) => ({
        type: 'PUT' as const,
        object: makeObject({
          key,
          value: utf8.encode(`${revision}`),
          createRevision: revision,
          modRevision: revision,
          version: 1,
        }),
      })),
    };
    history.push(batch);
    fanout.publish(batch);
    return batch;
  };
  const progress = (to: number) => {
    revision = to;
    fanout.progress(to);
  };
  return { history, fanout, write, progress, revision: () => revision };
}

/** A subscriber that records everything it is told. */
function recorder(fanout: Fanout, options: Partial<SubscribeOptions> & { fromRevision: number }) {
  const got: RevisionBatch[] = [];
  const progress: number[] = [];
  const closes: (Error | undefined)[] = [];
  let accept = true;
  const subscription: Subscription = fanout.subscribe({
    prefix: '/',
    onBatch: (batch) => {
      got.push(batch);
      return accept;
    },
    onProgress: (r) => progress.push(r),
    onClose: (e) => closes.push(e),
    ...options,
  });
  return {
    subscription,
    got,
    progress,
    closes,
    revisions: () => got.map((b) => b.revision),
    keys: () => got.map((b) => b.events.map((e) => e.object.key)),
    /** Make onBatch return false (backpressure) from now on, or stop doing so. */
    setAccept: (value: boolean) => {
      accept = value;
    },
  };
}

describe('Fanout', () => {
  it('delivers the backlog from history, then live batches, in order, once each', () => {
    const { fanout, write } = setup();
    write('/a');
    write('/b');
    write('/c');
    const r = recorder(fanout, { fromRevision: 1 });
    expect(r.revisions()).toEqual([2, 3]);
    write('/d');
    write('/e');
    expect(r.revisions()).toEqual([2, 3, 4, 5]);
    expect(r.subscription.position).toBe(5);
    expect(fanout.count).toBe(1);
  });

  it('delivers only events under the prefix and advances over batches without any, announcing progress', () => {
    const { fanout, write } = setup();
    const r = recorder(fanout, { fromRevision: 0, prefix: '/r/' });
    write('/r/1', '/s/1', '/r/2');
    write('/s/2');
    write('/r/3');
    expect(r.keys()).toEqual([['/r/1', '/r/2'], ['/r/3']]);
    expect(r.revisions()).toEqual([1, 3]);
    expect(r.progress).toEqual([2]);
    expect(r.subscription.position).toBe(3);
  });

  it('passes the same batch object when every event matches (no copy per subscriber)', () => {
    const { fanout, write } = setup();
    const r = recorder(fanout, { fromRevision: 0, prefix: '/r/' });
    const batch = write('/r/1', '/r/2');
    expect(r.got[0]).toBe(batch);
  });

  it('applies a custom filter after the prefix', () => {
    const { fanout, write } = setup();
    const r = recorder(fanout, { fromRevision: 0, filter: (e) => e.object.key.endsWith('x') });
    write('/ax', '/b');
    write('/c');
    expect(r.keys()).toEqual([['/ax']]);
  });

  it('tells caught-up subscribers about progress, once per revision, and not while paused', () => {
    const { fanout, write, progress } = setup();
    const live = recorder(fanout, { fromRevision: 0 });
    const paused = recorder(fanout, { fromRevision: 0 });
    paused.subscription.pause();
    write('/a');
    progress(5);
    progress(5);
    expect(live.progress).toEqual([5]);
    expect(paused.progress).toEqual([]);
    paused.subscription.resume();
    expect(paused.revisions()).toEqual([1]);
    expect(paused.progress).toEqual([5]); // caught up on resume, it is current to 5
    progress(6);
    expect(paused.progress).toEqual([5, 6]);
    expect(paused.subscription.position).toBe(6);
  });

  it('pauses when onBatch returns false and delivers what it missed on resume', () => {
    const { fanout, write } = setup();
    const slow = recorder(fanout, { fromRevision: 0, bufferLimit: 10 });
    const fast = recorder(fanout, { fromRevision: 0 });
    slow.setAccept(false);
    write('/a');
    write('/b');
    write('/c');
    expect(slow.revisions()).toEqual([1]);
    expect(slow.subscription.paused).toBe(true);
    expect(fast.revisions()).toEqual([1, 2, 3]); // one slow subscriber does not hold up the others
    slow.setAccept(true);
    slow.subscription.resume();
    expect(slow.revisions()).toEqual([1, 2, 3]);
    write('/d');
    expect(slow.revisions()).toEqual([1, 2, 3, 4]);
  });

  it('re-reads a slow subscriber from history after its buffer overflowed', () => {
    const { fanout, write } = setup(1000);
    const slow = recorder(fanout, { fromRevision: 0, bufferLimit: 2 });
    slow.subscription.pause();
    for (let i = 0; i < 50; i++) write(`/k${i}`);
    expect(slow.got).toEqual([]);
    expect(slow.subscription.closed).toBe(false);
    slow.subscription.resume();
    expect(slow.revisions()).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
  });

  it('expires a paused subscriber as soon as its position leaves the window', () => {
    const { fanout, write, history } = setup(5);
    const slow = recorder(fanout, { fromRevision: 0, bufferLimit: 1 });
    slow.subscription.pause();
    write('/a'); // buffered
    write('/b'); // overflow -> lagging at position 0
    for (let i = 0; i < 4; i++) write(`/k${i}`); // window: 5 events, start moves to 1
    expect(history.startRevision).toBe(1);
    expect(slow.closes).toHaveLength(1);
    expect(slow.closes[0]).toBeInstanceOf(Expired);
    expect(slow.subscription.closed).toBe(true);
    expect(fanout.count).toBe(0);
    slow.subscription.resume(); // no effect once closed
    expect(slow.got).toEqual([]);
  });

  it('keeps a paused subscriber whose buffer still covers what history has forgotten', () => {
    const { fanout, write, history } = setup(2);
    const slow = recorder(fanout, { fromRevision: 0, bufferLimit: 10 });
    slow.subscription.pause();
    for (let i = 0; i < 6; i++) write(`/k${i}`);
    expect(history.startRevision).toBe(4);
    slow.subscription.resume();
    expect(slow.revisions()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(slow.closes).toEqual([]);
  });

  it('refuses a subscription from before the window', () => {
    const { fanout, write } = setup(2);
    for (let i = 0; i < 5; i++) write(`/k${i}`);
    expect(() => recorder(fanout, { fromRevision: 2 })).toThrow(Expired);
    expect(recorder(fanout, { fromRevision: 3 }).revisions()).toEqual([4, 5]);
  });

  it('starts paused when asked and delivers the backlog on resume', () => {
    const { fanout, write } = setup();
    write('/a');
    const r = recorder(fanout, { fromRevision: 0, paused: true });
    write('/b');
    expect(r.got).toEqual([]);
    r.subscription.resume();
    expect(r.revisions()).toEqual([1, 2]);
  });

  it('closes only the subscriber whose callback throws, with what it threw', () => {
    const { fanout, write } = setup();
    const boom = new Error('boom');
    const closes: (Error | undefined)[] = [];
    fanout.subscribe({
      fromRevision: 0,
      prefix: '/',
      onBatch: () => {
        throw boom;
      },
      onClose: (e) => closes.push(e),
    });
    const other = recorder(fanout, { fromRevision: 0 });
    write('/a');
    write('/b');
    expect(closes).toEqual([boom]);
    expect(other.revisions()).toEqual([1, 2]);
    expect(fanout.count).toBe(1);
  });

  it('keeps order when a callback writes more (re-entrant publish)', () => {
    const { fanout, write } = setup();
    const first = recorder(fanout, { fromRevision: 0 });
    let nested = false;
    fanout.subscribe({
      fromRevision: 0,
      prefix: '/',
      onBatch: () => {
        if (!nested) {
          nested = true;
          write('/nested');
        }
        return true;
      },
      onClose: () => {},
    });
    const last = recorder(fanout, { fromRevision: 0 });
    write('/a');
    expect(first.revisions()).toEqual([1, 2]);
    expect(last.revisions()).toEqual([1, 2]);
  });

  it("does not skip a batch when a subscriber is resumed from inside another subscriber's callback", () => {
    const { fanout, write } = setup();
    let late: ReturnType<typeof recorder> | undefined;
    fanout.subscribe({
      fromRevision: 0,
      prefix: '/',
      onBatch: () => {
        late?.subscription.resume();
        return true;
      },
      onClose: () => {},
    });
    late = recorder(fanout, { fromRevision: 0 });
    late.subscription.pause();
    write('/a');
    expect(late.revisions()).toEqual([1]);
    write('/b');
    expect(late.revisions()).toEqual([1, 2]);
  });

  it('calls onClose exactly once, without an error, when the subscriber closes itself', () => {
    const { fanout, write } = setup();
    const r = recorder(fanout, { fromRevision: 0 });
    r.subscription.close();
    r.subscription.close();
    write('/a');
    expect(r.closes).toEqual([undefined]);
    expect(r.got).toEqual([]);
    expect(fanout.count).toBe(0);
  });

  it('closes every subscriber with the given error', () => {
    const { fanout } = setup();
    const a = recorder(fanout, { fromRevision: 0 });
    const b = recorder(fanout, { fromRevision: 0 });
    const error = new Error('shutdown');
    fanout.closeAll(error);
    expect(a.closes).toEqual([error]);
    expect(b.closes).toEqual([error]);
    expect(fanout.count).toBe(0);
  });

  it('gives every subscriber exactly the matching changes after its start, whatever the pauses (property)', () => {
    const prefix = fc.constantFrom('/', '/a/', '/b/');
    const action = fc.oneof(
      {
        arbitrary: fc
          .array(fc.constantFrom('/a/1', '/a/2', '/b/1', '/c'), { minLength: 1, maxLength: 3 })
          .map((keys) => ({ write: [...new Set(keys)] })),
        weight: 5,
      },
      {
        arbitrary: fc.record({
          subscribe: prefix,
          back: fc.nat(8),
          bufferLimit: fc.integer({ min: 1, max: 4 }),
        }),
        weight: 1,
      },
      { arbitrary: fc.record({ pause: fc.nat() }), weight: 2 },
      { arbitrary: fc.record({ resume: fc.nat() }), weight: 2 },
      { arbitrary: fc.record({ reject: fc.nat() }), weight: 1 },
      { arbitrary: fc.constant({ progress: true as const }), weight: 1 },
    );
    fc.assert(
      fc.property(
        fc.array(action, { maxLength: 80 }),
        fc.integer({ min: 3, max: 30 }),
        (actions, maxEvents) => {
          const env = setup(maxEvents);
          const batches: RevisionBatch[] = [];
          const subs: { r: ReturnType<typeof recorder>; from: number; prefix: string }[] = [];
          for (const a of actions) {
            if ('write' in a) batches.push(env.write(...a.write));
            else if ('progress' in a) env.progress(env.revision() + 1);
            else if ('subscribe' in a) {
              const from = Math.max(env.history.startRevision, env.revision() - a.back);
              subs.push({
                r: recorder(env.fanout, {
                  fromRevision: from,
                  prefix: a.subscribe,
                  bufferLimit: a.bufferLimit,
                }),
                from,
                prefix: a.subscribe,
              });
            } else if ('pause' in a) subs[a.pause % Math.max(1, subs.length)]?.r.subscription.pause();
            else if ('resume' in a) subs[a.resume % Math.max(1, subs.length)]?.r.subscription.resume();
            else subs[a.reject % Math.max(1, subs.length)]?.r.setAccept(false);
          }
          for (const { r } of subs) {
            r.setAccept(true);
            r.subscription.resume();
          }
          for (const { r, from, prefix } of subs) {
            const expected = batches
              .filter((b) => b.revision > from)
              .map((b) => ({
                revision: b.revision,
                keys: b.events.map((e) => e.object.key).filter((k) => k.startsWith(prefix)),
              }))
              .filter((b) => b.keys.length > 0);
            const got = r.got.map((b) => ({ revision: b.revision, keys: b.events.map((e) => e.object.key) }));
            if (r.closes.length === 0) {
              expect(got).toEqual(expected);
              expect(r.subscription.position).toBe(env.revision());
            } else {
              // Expired: what it got is a gap-free prefix of what it should get.
              expect(r.closes).toHaveLength(1);
              expect(r.closes[0]).toBeInstanceOf(Expired);
              expect(got).toEqual(expected.slice(0, got.length));
              expect(r.subscription.position).toBeLessThan(env.history.startRevision);
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
