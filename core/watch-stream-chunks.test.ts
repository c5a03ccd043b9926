/**
 * How a watch stream hands bytes to its client: pull-driven, one chunk in flight, what arrives
 * meanwhile merged into the next chunk, backpressure to the subscription, the stall cut, and one
 * shared keep-alive timer. The subscription is driven by hand so each step is explicit.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock, settle } from '../test/helpers/manual-clock.ts';
import type { SubscribeOptions, Subscription } from './fanout.ts';
import type { RevisionBatch } from './types.ts';
import { HIGH_WATER_BYTES, KEEPALIVE_MS, STALL_MS, watchStream } from './watch-stream.ts';

/** A subscription the test drives by hand: `push` delivers a batch as the fan-out would. */
function setup(clock = new ManualClock()) {
  let options: SubscribeOptions | undefined;
  const calls = { resume: 0, pause: 0, close: 0, ended: 0 };
  const subscription: Subscription = {
    position: 0,
    paused: false,
    closed: false,
    pause: () => void calls.pause++,
    resume: () => void calls.resume++,
    close: () => void calls.close++,
  };
  const stream = watchStream({
    prefix: '/p/',
    start: { after: 0 },
    initialEventsEnd: false,
    allowBookmarks: false,
    framing: 'ndjson',
    clock,
    subscribe: (o) => {
      options = o;
      return subscription;
    },
    onEnd: () => void calls.ended++,
  });
  const reader = stream.getReader();
  let revision = 0;
  const push = (value = 'v'): boolean | undefined => {
    revision++;
    const batch: RevisionBatch = {
      revision,
      events: [
        {
          type: 'PUT',
          object: Object.freeze({
            key: `/p/k${revision}`,
            createRevision: 1,
            modRevision: revision,
            version: 1,
            value,
          }),
        },
      ],
    };
    return options?.onBatch(batch);
  };
  const read = async () => {
    const { value, done } = await reader.read();
    return done ? undefined : new TextDecoder().decode(value);
  };
  return { clock, calls, push, read, reader };
}

const lines = (text: string | undefined) => (text ?? '').split('\n').filter((l) => l !== '');
const revisions = (text: string | undefined) =>
  lines(text).map((l) => (JSON.parse(l) as { object: { modRevision: number } }).object.modRevision);

describe('watchStream delivery: one chunk in flight', () => {
  it('gives an idle watcher each event at once, in a chunk of its own', async () => {
    const { push, read } = setup();
    const first = read();
    push();
    expect(revisions(await first)).toEqual([1]);
    const second = read();
    push();
    expect(revisions(await second)).toEqual([2]);
  });

  it('gives a busy watcher everything that arrived while it was not reading as one chunk', async () => {
    const { push, read } = setup();
    const first = read();
    push();
    expect(revisions(await first)).toEqual([1]);
    // The reader is busy (no read pending): these arrive in separate turns, wait, and leave
    // together at its next read.
    push();
    await settle();
    push();
    await settle();
    push();
    await settle();
    expect(revisions(await read())).toEqual([2, 3, 4]);
  });

  it('pauses the subscription past the high-water mark and resumes it when the client reads', async () => {
    const { push, read, calls } = setup();
    const big = 'x'.repeat(64 * 1024);
    let more: boolean | undefined = true;
    let pushed = 0;
    while (more !== false) {
      more = push(big);
      pushed++;
    }
    expect(pushed * big.length).toBeGreaterThanOrEqual(HIGH_WATER_BYTES);
    const resumesBefore = calls.resume;
    expect(lines(await read())).toHaveLength(pushed);
    expect(calls.resume).toBe(resumesBefore + 1);
  });

  it('cuts a client that leaves bytes unread for STALL_MS with ERROR 410, and ends once', async () => {
    const { push, read, calls, clock } = setup();
    push();
    await clock.advance(STALL_MS - 1_000);
    expect(calls.ended).toBe(0);
    await clock.advance(2_000);
    expect(calls.ended).toBe(1);
    expect(calls.close).toBe(1);
    const text = await read();
    expect(revisions(lines(text).slice(0, 1).join('\n'))).toEqual([1]);
    expect(lines(text)[1]).toContain('"code":410');
    expect(await read()).toBeUndefined();
    await clock.advance(STALL_MS);
    expect(calls.ended).toBe(1);
  });

  it('keeps a quiet watch alive every KEEPALIVE_MS with one timer for all watches, and none after they end', async () => {
    const clock = new ManualClock();
    const a = setup(clock);
    const b = setup(clock);
    const readA = a.read();
    const readB = b.read();
    expect(clock.pending).toHaveLength(1);
    await clock.advance(KEEPALIVE_MS + 1_000);
    expect(await readA).toBe('\n');
    expect(await readB).toBe('\n');
    expect(clock.pending).toHaveLength(1);
    await a.reader.cancel();
    await b.reader.cancel();
    expect(a.calls.ended + b.calls.ended).toBe(2);
    expect(clock.pending).toEqual([]);
  });
});
