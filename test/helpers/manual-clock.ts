/**
 * The one test clock (core/types.ts `Clock`): time moves only when the test says so, and
 * `advance` fires the timers that fall due, in order, so tests of timeouts, backoff and
 * heartbeats never sleep. Runs in Node and typechecks under the Worker's types too.
 */
import type { Cancel, Clock } from '../../core/types.ts';

interface Timer {
  readonly at: number;
  /** Timers due at the same time fire in the order they were set. */
  readonly seq: number;
  readonly fn: () => void;
}

export class ManualClock implements Clock {
  #time: number;
  #seq = 0;
  readonly #timers = new Set<Timer>();

  constructor(start = 0) {
    this.#time = start;
  }

  now(): number {
    return this.#time;
  }

  setTimeout(fn: () => void, ms: number): Cancel {
    const timer = { at: this.#time + Math.max(0, ms), seq: this.#seq++, fn };
    this.#timers.add(timer);
    return () => this.#timers.delete(timer);
  }

  /** The delays of the pending timers from now, shortest first. */
  get pending(): number[] {
    return [...this.#timers].map((t) => t.at - this.#time).sort((a, b) => a - b);
  }

  /**
   * Moves time forward by `ms`, firing each timer that falls due (also those set by a timer that
   * fired) at its own time. Pending promise callbacks run before and after each timer, so code
   * that awaits between timers sees them in the order real time would give.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#time + ms;
    await settle();
    for (;;) {
      const due = this.#next(target);
      if (due === undefined) break;
      this.#timers.delete(due);
      this.#time = due.at;
      due.fn();
      await settle();
    }
    this.#time = target;
    await settle();
  }

  #next(target: number): Timer | undefined {
    let next: Timer | undefined;
    for (const t of this.#timers) {
      if (
        t.at <= target &&
        (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))
      ) {
        next = t;
      }
    }
    return next;
  }
}

/** Lets every pending promise callback run (a macrotask turn drains the microtask queue). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
