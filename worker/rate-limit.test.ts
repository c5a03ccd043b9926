import { describe, expect, it } from 'vitest';
import { Authorizer } from '../core/auth.ts';
import { Forbidden, TooManyRequests, Unauthorized } from '../core/errors.ts';
import { parseReadRequest } from '../core/request.ts';
import { sha256Hex } from '../core/sha256.ts';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { authorizeAndLimit, RateLimiter } from './rate-limit.ts';

describe('RateLimiter', () => {
  it('allows a burst, then one request per 1/rate seconds, and says how long to wait', async () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter(2, 3, clock);
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 0]);
    expect(limiter.take('a')).toBe(1);
    await clock.advance(499);
    expect(limiter.take('a')).toBe(1);
    await clock.advance(1);
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(1);
  });

  it('gives each client its own bucket', () => {
    const limiter = new RateLimiter(1, 1, new ManualClock());
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(1);
    expect(limiter.take('b')).toBe(0);
  });

  it('refills no further than the burst however long a client was away', async () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter(10, 2, clock);
    limiter.take('a');
    await clock.advance(3_600_000);
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 1]);
  });

  it('rounds a long wait up to whole seconds', () => {
    const limiter = new RateLimiter(0.25, 1, new ManualClock());
    limiter.take('a');
    expect(limiter.take('a')).toBe(4);
  });

  it('never limits at rate 0', () => {
    const limiter = new RateLimiter(0, 1, new ManualClock());
    for (let i = 0; i < 1000; i++) expect(limiter.take('a')).toBe(0);
  });
});

describe('authorizeAndLimit', () => {
  const GOOD = 'good-token';
  const OTHER = 'other-token';
  const table = {
    insecure: false,
    tokens: [
      { name: 'good', sha256: sha256Hex(GOOD), scopes: ['/registry/'] },
      { name: 'other', sha256: sha256Hex(OTHER), scopes: ['/registry/'] },
    ],
  };
  const authorizer = new Authorizer(table, false);
  const get = (key: string) =>
    parseReadRequest(`/v1/kv${key}`, new URLSearchParams(), { exposedPrefixes: ['/registry/', '/other/'] });
  const raw = (token: string | undefined, address = '203.0.113.7') =>
    new Request('http://edge/', {
      headers: {
        'CF-Connecting-IP': address,
        ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
      },
    });
  /** What one request comes to: 'ok', or the error class's name. */
  const attempt = (
    limiter: RateLimiter,
    token: string | undefined,
    key = '/registry/a',
    address?: string,
  ) => {
    try {
      authorizeAndLimit(limiter, authorizer, get(key), raw(token, address));
      return 'ok';
    } catch (error) {
      if (error instanceof TooManyRequests) return 'TooManyRequests';
      if (error instanceof Unauthorized) return 'Unauthorized';
      if (error instanceof Forbidden) return 'Forbidden';
      throw error;
    }
  };

  it('counts a fresh garbage token per request against its address, not a new bucket each', () => {
    const limiter = new RateLimiter(1, 3, new ManualClock());
    const codes = Array.from({ length: 5 }, (_, i) => attempt(limiter, `garbage-${i}`));
    expect(codes).toEqual([
      'Unauthorized',
      'Unauthorized',
      'Unauthorized',
      'TooManyRequests',
      'TooManyRequests',
    ]);
    // Requests with no token at all come from the same address: the same bucket.
    expect(attempt(limiter, undefined)).toBe('TooManyRequests');
    // Another address has its own.
    expect(attempt(limiter, 'garbage-x', '/registry/a', '198.51.100.1')).toBe('Unauthorized');
  });

  it('counts an authenticated client by its token, after the check, whatever its address', () => {
    const limiter = new RateLimiter(1, 2, new ManualClock());
    // Garbage from the address first: it must not use up the valid token's requests.
    for (let i = 0; i < 5; i++) attempt(limiter, `garbage-${i}`);
    expect(attempt(limiter, GOOD)).toBe('ok');
    expect(attempt(limiter, GOOD, '/registry/a', '198.51.100.1')).toBe('ok');
    expect(attempt(limiter, GOOD)).toBe('TooManyRequests');
    expect(attempt(limiter, OTHER)).toBe('ok');
  });

  it('counts a valid token read outside its scopes as that token, and answers 403 under the limit', () => {
    const limiter = new RateLimiter(1, 1, new ManualClock());
    expect(attempt(limiter, GOOD, '/other/x')).toBe('Forbidden');
    expect(attempt(limiter, GOOD)).toBe('TooManyRequests');
  });

  it('does not limit the local-development mode, which has no clients to tell apart', () => {
    const insecure = new Authorizer({ insecure: true, tokens: [] }, true);
    const limiter = new RateLimiter(1, 1, new ManualClock());
    for (let i = 0; i < 10; i++) {
      expect(() => authorizeAndLimit(limiter, insecure, get('/registry/a'), raw(undefined))).not.toThrow();
    }
  });
});
