/**
 * How long to wait before trying again: the one retry policy of the relay's reflector and etcd
 * version probe and the edge's relay link.
 *
 * Exponential with "equal jitter" (half the delay fixed, half random): the n-th failure in a row
 * waits between base/2 and base, base = min(maxMs, initialMs * 2^(n-1)). The fixed half keeps a
 * flapping peer from being hammered; the random half keeps many edges that lost the same relay
 * from reconnecting in lockstep. Time and randomness are injected (STYLE.md §10), so tests set
 * both.
 */
import type { Cancel, Clock } from './types.ts';

export interface BackoffOptions {
  readonly clock: Clock;
  /** Uniform in [0, 1). Default `Math.random`; tests pass a fixed or seeded one. */
  readonly random?: () => number;
  /** The first delay's upper bound. Default 100 ms. */
  readonly initialMs?: number;
  /** No delay is longer. Default 5 s. */
  readonly maxMs?: number;
}

export class Backoff {
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #initialMs: number;
  readonly #maxMs: number;
  #failures = 0;

  constructor(options: BackoffOptions) {
    this.#clock = options.clock;
    this.#random = options.random ?? Math.random;
    this.#initialMs = options.initialMs ?? 100;
    this.#maxMs = options.maxMs ?? 5_000;
  }

  /** Failures since the last `reset`. */
  get failures(): number {
    return this.#failures;
  }

  /** Counts one more failure and returns how long to wait before the next attempt. */
  nextDelay(): number {
    const base = Math.min(this.#maxMs, this.#initialMs * 2 ** this.#failures);
    this.#failures++;
    return base / 2 + (this.#random() * base) / 2;
  }

  /** Counts one more failure and runs `fn` after the delay, on the injected clock. */
  retry(fn: () => void): Cancel {
    return this.#clock.setTimeout(fn, this.nextDelay());
  }

  /** An attempt succeeded: the next failure waits the shortest delay again. */
  reset(): void {
    this.#failures = 0;
  }
}
