/**
 * A token bucket per client token, inside one replica: the in-Durable-Object limiter used where
 * Cloudflare's rate-limiting binding is not configured (always under `wrangler dev`). A client's
 * requests to one location and prefix share one bucket; over it they get 429 with Retry-After.
 */
import type { Clock } from '../core/types.ts';

interface Bucket {
  tokens: number;
  at: number;
}

/** Buckets idle this long are forgotten, so the map stays bounded by active clients. */
const FORGET_AFTER_MS = 60_000;

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #rate: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #sweptAt = 0;

  /** `ratePerSecond` <= 0 disables limiting. */
  constructor(ratePerSecond: number, burst: number, clock: Clock) {
    this.#rate = ratePerSecond;
    this.#burst = Math.max(1, burst);
    this.#clock = clock;
  }

  /** Takes one token for `client`; returns 0 when allowed, else the seconds to wait. */
  take(client: string): number {
    if (this.#rate <= 0) return 0;
    const now = this.#clock.now();
    this.#sweep(now);
    const bucket = this.#buckets.get(client) ?? { tokens: this.#burst, at: now };
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((now - bucket.at) / 1000) * this.#rate);
    bucket.at = now;
    this.#buckets.set(client, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#rate));
  }

  #sweep(now: number): void {
    if (now - this.#sweptAt < FORGET_AFTER_MS) return;
    this.#sweptAt = now;
    for (const [client, bucket] of this.#buckets) {
      if (now - bucket.at > FORGET_AFTER_MS) this.#buckets.delete(client);
    }
  }
}
