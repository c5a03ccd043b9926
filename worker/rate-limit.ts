/**
 * Per-client token buckets inside one replica: a client's requests to one location and prefix
 * share a bucket; over it they get 429 with Retry-After.
 *
 * Who a client is comes from the authentication, not from what the request claims: a request
 * whose token checks out is counted by that token; one without a valid token is counted by its
 * address (`CF-Connecting-IP`, set by Cloudflare), so rotating garbage tokens gets no fresh
 * bucket. The local-development mode has no clients to tell apart and is not limited.
 */
import { type Authorizer, bearerToken } from '../core/auth.ts';
import { TooManyRequests, Unauthorized } from '../core/errors.ts';
import type { ReadRequest } from '../core/request.ts';
import { sha256Hex } from '../core/sha256.ts';
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

/**
 * Authenticates and authorizes `raw` for `request`, then counts it against its client's bucket.
 * Throws `TooManyRequests` over the limit, else what `Authorizer.check` throws (401, 403): a
 * client that keeps failing authentication ends up with 429s, per address.
 */
export function authorizeAndLimit(
  limiter: RateLimiter,
  authorizer: Authorizer,
  request: ReadRequest,
  raw: Request,
): void {
  const authorization = raw.headers.get('Authorization');
  let bucket: string;
  let denied: unknown;
  try {
    authorizer.check(authorization, request);
    if (authorizer.insecure) return;
    bucket = tokenBucket(authorization);
  } catch (error) {
    // Forbidden came from a valid token, counted as that token; anything else by address.
    bucket = error instanceof Unauthorized ? addressBucket(raw) : tokenBucket(authorization);
    denied = error;
  }
  const retryAfter = limiter.take(bucket);
  if (retryAfter > 0) throw new TooManyRequests('rate limit exceeded for this client', retryAfter);
  if (denied !== undefined) throw denied;
}

function tokenBucket(authorization: string | null): string {
  return `token:${sha256Hex(bearerToken(authorization) ?? '')}`;
}

/** Outside Cloudflare (wrangler dev, the tests) there is no address: all share one bucket. */
function addressBucket(raw: Request): string {
  return `address:${raw.headers.get('CF-Connecting-IP') ?? 'unknown'}`;
}
