/**
 * fast-check generators of hostile read requests: request targets with broken percent-encoding,
 * dot segments, doubled slashes, raw non-ASCII bytes and 10–100 KB keys; every query parameter of
 * API.md with numbers, negatives, 2^64, floats, empty and repeated values and garbage; forged and
 * tampered continue tokens; oversized and odd headers. Most values are near the edge of what the
 * parser accepts, so a good share of requests reach the caches, etcd and the watch streams.
 */
import fc from 'fast-check';
import { encodeContinue } from '../../core/continue.ts';
import type { RawRequest } from './http.ts';
import { utf8AsLatin1 } from './http.ts';

/** What the generators need to know about the seeded stack. */
export interface FuzzWorld {
  /** etcd's revision once the seed is written; nothing is written while requests are fuzzed. */
  readonly revision: number;
  /** Continue tokens from real list responses (any tier): the raw material for tampering. */
  readonly tokens: readonly string[];
}

const KNOWN_PARAMS = [
  'resourceVersion',
  'resourceVersionMatch',
  'limit',
  'continue',
  'watch',
  'allowWatchBookmarks',
  'sendInitialEvents',
  'timeoutSeconds',
] as const;

const ENDPOINTS = [
  '/v1/kv/',
  '/v1/list/',
  '/v1/kv',
  '/v1/list',
  '/v1/',
  '/',
  '/v1/watch/',
  '/v2/kv/',
  '/V1/KV/',
  '/v1/replicate',
  '/v1/replicate/',
  '/healthz/',
  '/readyz/x',
  '//v1/kv/',
  '/v1//kv/',
  '/v1/kv/../list/',
  '/v1/%6bv/',
  '/v1/list%2F',
  '/_replica/',
  '/v1/kv/./',
] as const;

/** Path segments that tokenisers, decoders and normalisers disagree about. */
const NASTY_SEGMENTS = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2e',
  '%2e',
  '.%2e',
  '%',
  '%%',
  '%G1',
  '%1',
  '%ZZ',
  '%C3%28',
  '%E2%82',
  '%ED%A0%80',
  '%C0%AF',
  '%FF',
  '%F0%9F%98%80',
  '%E2%82%AC',
  '%00',
  '%2F',
  '%2f..',
  '%5C',
  '%0A',
  '%0D%0A',
  '%20',
  '%7F',
  '%25',
  '%2525',
  '%3F',
  '%23',
  '?',
  '#',
  ';',
  ':',
  '@',
  '!',
  '*',
  "'",
  '(',
  ')',
  '[',
  ']',
  '$',
  '&',
  '+',
  ',',
  '=',
  '~',
  '',
] as const;

const word = fc.string({ unit: fc.constantFrom(...'abcxyz019-_.~'), minLength: 1, maxLength: 10 });

/** A 10–100 KB segment; most are past the 16 KiB request-line limits of Node and the edge. */
const longSegment = fc
  .oneof(fc.integer({ min: 10_000, max: 15_000 }), fc.integer({ min: 15_001, max: 100_000 }))
  .chain((n) => fc.constantFrom('k', 'é', '%41', '%').map((unit) => unit.repeat(Math.ceil(n / unit.length))));

/**
 * Weights: raw bytes, backslashes and huge segments are mostly refused by the HTTP servers
 * themselves (see oracle.ts), so they are rare enough that most requests reach our code.
 */
const segment: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: word, weight: 12 },
  { arbitrary: fc.constantFrom(...NASTY_SEGMENTS), weight: 12 },
  // Valid percent-encoded Unicode, including astral characters.
  {
    arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }).map(encodeURIComponent),
    weight: 2,
  },
  // Raw UTF-8 bytes in the request line (not ASCII, so outside RFC 9112's request-target).
  {
    arbitrary: fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 3 })
      // biome-ignore lint/suspicious/noControlCharactersInRegex: keep only what is past ASCII
      .map((s) => utf8AsLatin1(s.replace(/[\x00-\x7f]/g, '')))
      .filter((s) => s.length > 0),
    weight: 1,
  },
  // A raw byte 0x80–0xff on its own: never valid UTF-8.
  { arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((b) => String.fromCharCode(b)), weight: 1 },
  { arbitrary: fc.constant('\\'), weight: 1 },
  { arbitrary: longSegment, weight: 1 },
);

const exposedSegment = fc.oneof(
  { arbitrary: fc.constant('registry'), weight: 8 },
  {
    arbitrary: fc.constantFrom('other', 'registr', 'registry%2F', '%72egistry', 'REGISTRY', 'registryx'),
    weight: 2,
  },
  { arbitrary: segment, weight: 1 },
);

/** A request path (no query). */
export const pathArb: fc.Arbitrary<string> = fc
  .tuple(
    fc.oneof(
      { arbitrary: fc.constantFrom('/v1/kv/', '/v1/list/'), weight: 8 },
      { arbitrary: fc.constantFrom(...ENDPOINTS), weight: 2 },
    ),
    exposedSegment,
    fc.array(segment, { maxLength: 5 }),
    fc.boolean(),
  )
  .map(([endpoint, first, rest, slash]) => `${endpoint}${[first, ...rest].join('/')}${slash ? '/' : ''}`);

const hugeNumbers = [
  '1e30',
  '1E3',
  '18446744073709551616',
  '18446744073709551615',
  '9007199254740993',
  '9007199254740992',
  '9007199254740991',
  '99999999999999999999999999999999999999',
] as const;

const oddValues = [
  '',
  '0',
  '-1',
  '-0',
  '00',
  '007',
  '01',
  '1.5',
  '0.0',
  '+1',
  '%2B1',
  '%201',
  '1%00',
  '0x10',
  'NaN',
  'Infinity',
  'null',
  'true',
  'false',
  'True',
  'TRUE',
  't',
  'f',
  'T',
  'yes',
  'on',
  'NotOlderThan',
  'Exact',
  'exact',
  'notolderthan',
  '%',
  '%G1',
  '%00',
  '%C3%28',
  '%E2%82%AC',
  '=',
  '==',
  '[]',
  '{}',
] as const;

/** Any value for any parameter, raw (already percent-encoded as it goes on the wire, or not). */
function garbageArb(world: FuzzWorld): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: world.revision + 2 }).map(String), weight: 4 },
    { arbitrary: fc.constantFrom(...oddValues), weight: 8 },
    { arbitrary: fc.constantFrom(...hugeNumbers), weight: 2 },
    { arbitrary: fc.integer().map(String), weight: 2 },
    { arbitrary: fc.double().map(String), weight: 1 },
    { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 70n }).map(String), weight: 1 },
    { arbitrary: fc.string({ maxLength: 12 }).map(encodeURIComponent), weight: 2 },
    { arbitrary: continueTokenArb(world), weight: 1 },
  );
}

/** A value the parser may well accept for `name`, so that requests get past it to the tiers. */
function plausibleArb(name: (typeof KNOWN_PARAMS)[number], world: FuzzWorld): fc.Arbitrary<string> {
  switch (name) {
    case 'resourceVersion':
      // Revisions at and a little past the seeded state: reads that reach caches, etcd and 504s.
      return fc.integer({ min: 0, max: world.revision + 1 }).map(String);
    case 'resourceVersionMatch':
      return fc.constantFrom('NotOlderThan', 'Exact');
    case 'limit':
      return fc.constantFrom('1', '2', '3', '0', '10000', '10001', '99999999999999999999');
    case 'continue':
      return continueTokenArb(world);
    case 'timeoutSeconds':
      return fc.constantFrom('0', '1', '60', '99999999999999999999');
    default:
      return fc.constantFrom('true', 'false', '1', '0', 't', 'F', 'True', 'FALSE');
  }
}

/** A parameter as it appears in the query: `name=value`, a bare `name`, or an unknown name. */
function paramArb(world: FuzzWorld): fc.Arbitrary<string> {
  const known = fc
    .constantFrom(...KNOWN_PARAMS)
    .chain((name) =>
      fc
        .oneof(
          { arbitrary: plausibleArb(name, world), weight: 3 },
          { arbitrary: garbageArb(world), weight: 1 },
        )
        .map((value) => `${name}=${value}`),
    );
  const odd = fc
    .tuple(
      fc.constantFrom('resourceversion', 'Limit', 'watch[]', 'continue%00', '%', '', 'x'),
      garbageArb(world),
    )
    .map(([name, value]) => `${name}=${value}`);
  const bare = fc.constantFrom(...KNOWN_PARAMS, '', '=', '&');
  return fc.oneof(
    { arbitrary: known, weight: 12 },
    { arbitrary: odd, weight: 1 },
    { arbitrary: bare, weight: 1 },
  );
}

/** A query string (with its `?`), or none. Repeated parameters come with the second kind. */
export function queryArb(world: FuzzWorld): fc.Arbitrary<string> {
  const params = paramArb(world);
  const name = (param: string) => param.split('=')[0];
  return fc
    .oneof(
      { arbitrary: fc.constant(''), weight: 2 },
      { arbitrary: fc.uniqueArray(params, { minLength: 1, maxLength: 4, selector: name }), weight: 6 },
      { arbitrary: fc.array(params, { minLength: 1, maxLength: 6 }), weight: 2 },
    )
    .chain((list) =>
      typeof list === 'string'
        ? fc.constant(list)
        : fc.constantFrom('&', '&&').map((sep) => `?${list.join(sep)}`),
    );
}

/**
 * Continue tokens: real ones, real ones with a byte flipped, truncated or extended, and forged
 * ones — unsigned base64 JSON, and (since the stack runs without CONTINUE_SECRET, with the public
 * default key, as API.md allows for development) properly signed tokens with hostile payloads.
 */
export function continueTokenArb(world: FuzzWorld): fc.Arbitrary<string> {
  const real = world.tokens.length > 0 ? fc.constantFrom(...world.tokens) : fc.constant('e30.AAAA');
  const b64 = (text: string) =>
    btoa(String.fromCharCode(...new TextEncoder().encode(text)))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '');
  const rv = fc.oneof(
    fc.integer({ min: 1, max: world.revision + 2 }),
    fc.constantFrom(0, -1, 1.5, 2 ** 53, 2 ** 64, Number.MAX_SAFE_INTEGER),
  );
  const prefix = fc.constantFrom('/registry/', '/registry/a', '/other/', '/', '');
  const start = fc.oneof(
    prefix,
    fc.tuple(prefix, fc.string({ unit: 'grapheme', maxLength: 6 })).map((p) => p.join('')),
  );
  return fc
    .oneof(
      real,
      fc
        .tuple(real, fc.nat(), fc.constantFrom('A', 'B', '_', '-', '.', '=', '%'))
        .map(([t, i, c]) => `${t.slice(0, i % t.length)}${c}${t.slice((i % t.length) + 1)}`),
      fc.tuple(real, fc.nat()).map(([t, i]) => t.slice(0, i % t.length)),
      fc.tuple(real, fc.constantFrom('A', '.A', '==', '%3D')).map(([t, s]) => t + s),
      fc
        .tuple(rv, prefix, start)
        .map(
          ([r, p, s]) =>
            `${b64(JSON.stringify({ v: 1, rv: r, prefix: p, start: s }))}.AAAAAAAAAAAAAAAAAAAAAA`,
        ),
      fc
        .tuple(rv, prefix, start)
        .filter(([r]) => Number.isSafeInteger(r) && r > 0)
        .map(([r, p, s]) => encodeContinue({ rv: r, prefix: p, start: s })),
      fc.constantFrom('.', '..', 'e30.', '.e30', 'e30', b64('null'), b64('[]'), `${b64('{"v":1}')}.x`),
    )
    .map(encodeURIComponent);
}

const acceptArb = fc.oneof(
  fc.constantFrom(
    'text/event-stream',
    'application/x-ndjson',
    '*/*',
    'application/json',
    'text/event-stream;q=0, application/json',
    'application/json, text/event-stream',
    'text/*',
    '',
  ),
  fc.string({ unit: 'binary-ascii', maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, '')),
);

const etagArb = fc.oneof(
  fc.constantFrom('*', 'W/*', '""', '"', ',', ' , ,'),
  fc.nat({ max: 40 }).map((n) => `"${n}"`),
  fc.nat({ max: 40 }).map((n) => `W/"${n}", "x"`),
  fc.nat({ max: 40 }).map(String),
  fc.array(fc.nat({ max: 40 }), { maxLength: 200 }).map((ns) => ns.map((n) => `"${n}"`).join(', ')),
);

/** A header value of 17–40 KB: past Node's 16 KiB default, below workerd's limits or not. */
const hugeHeader = fc.integer({ min: 17_000, max: 40_000 }).map((n) => '"1", '.repeat(n / 5));

/** Request headers: Accept, If-None-Match, credentials, and the edge's internal routing headers. */
export const headersArb: fc.Arbitrary<Record<string, string>> = fc
  .record(
    {
      accept: fc.oneof({ arbitrary: acceptArb, weight: 20 }, { arbitrary: hugeHeader, weight: 1 }),
      'if-none-match': fc.oneof({ arbitrary: etagArb, weight: 20 }, { arbitrary: hugeHeader, weight: 1 }),
      authorization: fc.constantFrom('Bearer ', 'Bearer x', 'Basic Og==', 'x'.repeat(5000)),
      'x-edgewatch-replica': fc.constantFrom('evil|/|0', 'local|/registry/|0', ''),
      'x-edgewatch-prefix': fc.constantFrom('/', '/registry/', '/secret/'),
    },
    { requiredKeys: [] },
  )
  .map((h) => Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)));

/** One hostile request. */
export function hostileRequestArb(world: FuzzWorld): fc.Arbitrary<RawRequest> {
  return fc
    .record({
      path: pathArb,
      query: queryArb(world),
      headers: headersArb,
      chunks: fc.integer({ min: 0, max: 2 }),
    })
    .map(({ path, query, headers, chunks }) => ({ target: `${path}${query}`, headers, chunks }));
}

/**
 * A watch that is accepted (or nearly so) and then abandoned after 0–2 chunks: mostly valid
 * parameter combinations, so the streams really open on both tiers, including the edge's
 * forwarded watches (an rv older than the replica's window goes on to the relay).
 */
export function abandonedWatchArb(world: FuzzWorld): fc.Arbitrary<RawRequest> {
  const rv = fc.oneof(
    fc.constant(undefined),
    fc.constant('0'),
    fc.integer({ min: 1, max: world.revision }).map(String),
  );
  const params = fc.record(
    {
      resourceVersion: rv,
      initial: fc.constantFrom(undefined, 'true', 'false'),
      allowWatchBookmarks: fc.constantFrom(undefined, 'true', '1', 'false'),
      timeoutSeconds: fc.constantFrom(undefined, '0', '1', '60', '99999999999999999'),
    },
    { requiredKeys: [] },
  );
  return fc
    .record({
      prefix: fc.constantFrom('/registry/', '/registry/a', '/registry/c/', '/other/', '/registry/%00'),
      params,
      sse: fc.boolean(),
      chunks: fc.integer({ min: 0, max: 2 }),
    })
    .map(({ prefix, params: p, sse, chunks }) => {
      const query = ['watch=true'];
      if (p.resourceVersion !== undefined) query.push(`resourceVersion=${p.resourceVersion}`);
      if (p.initial !== undefined)
        query.push(`sendInitialEvents=${p.initial}`, 'resourceVersionMatch=NotOlderThan');
      if (p.allowWatchBookmarks !== undefined) query.push(`allowWatchBookmarks=${p.allowWatchBookmarks}`);
      if (p.timeoutSeconds !== undefined) query.push(`timeoutSeconds=${p.timeoutSeconds}`);
      const headers: Record<string, string> = sse ? { accept: 'text/event-stream' } : {};
      return { target: `/v1/list${prefix}?${query.join('&')}`, headers, chunks };
    });
}
