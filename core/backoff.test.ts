import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { Backoff } from './backoff.ts';

describe('Backoff', () => {
  it('doubles the delay per failure up to the maximum, half of it fixed and half random', () => {
    const low = new Backoff({ clock: new ManualClock(), random: () => 0, initialMs: 100, maxMs: 1_000 });
    const high = new Backoff({
      clock: new ManualClock(),
      random: () => 0.999_999,
      initialMs: 100,
      maxMs: 1_000,
    });
    const lows = Array.from({ length: 6 }, () => low.nextDelay());
    const highs = Array.from({ length: 6 }, () => Math.round(high.nextDelay()));
    expect(lows).toEqual([50, 100, 200, 400, 500, 500]);
    expect(highs).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(low.failures).toBe(6);
  });

  it('starts over from the shortest delay after a reset', () => {
    const backoff = new Backoff({ clock: new ManualClock(), random: () => 0.5 });
    for (let i = 0; i < 5; i++) backoff.nextDelay();
    backoff.reset();
    expect(backoff.failures).toBe(0);
    expect(backoff.nextDelay()).toBe(75);
  });

  it('retries on the injected clock after the delay, and not if cancelled', async () => {
    const clock = new ManualClock();
    const backoff = new Backoff({ clock, random: () => 0 });
    let runs = 0;
    backoff.retry(() => runs++);
    expect(clock.pending).toEqual([50]);
    await clock.advance(49);
    expect(runs).toBe(0);
    await clock.advance(1);
    expect(runs).toBe(1);
    const cancel = backoff.retry(() => runs++);
    cancel();
    await clock.advance(10_000);
    expect(runs).toBe(1);
  });

  it('defaults to 100 ms first and 5 s at most', () => {
    const backoff = new Backoff({ clock: new ManualClock(), random: () => 0.999_999 });
    const delays = Array.from({ length: 10 }, () => Math.round(backoff.nextDelay()));
    expect(delays[0]).toBe(100);
    expect(delays.at(-1)).toBe(5_000);
  });
});
