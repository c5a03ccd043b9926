import { describe, expect, it } from 'vitest';
import { encodeContinue } from './continue.ts';
import { BadRequest, Forbidden, NotFound } from './errors.ts';
import {
  exposedPrefixFor,
  MAX_LIMIT,
  MAX_TIMEOUT_SECONDS,
  type ParseOptions,
  parseReadRequest,
  parseResourceVersion,
  type ReadRequest,
} from './request.ts';

const options: ParseOptions = { exposedPrefixes: ['/registry/', '/config/'] };
const parse = (path: string, query = '', opts: ParseOptions = options): ReadRequest =>
  parseReadRequest(path, new URLSearchParams(query), opts);
const consistencyOf = (path: string, query: string) => parse(path, query).consistency;

const token = (rv: number, prefix = '/registry/pods/', start = `${prefix}b`) =>
  encodeContinue({ rv, prefix, start });

describe('paths', () => {
  it('reads /v1/kv/{key} as a get of the key with its leading slash', () => {
    expect(parse('/v1/kv/registry/pods/a')).toEqual({
      verb: 'get',
      key: '/registry/pods/a',
      exposedPrefix: '/registry/',
      consistency: { kind: 'mostRecent' },
    });
  });

  it('percent-decodes the key, so %2F becomes a slash', () => {
    expect(parse('/v1/kv/registry/a%2Fb')).toMatchObject({ key: '/registry/a/b' });
  });

  it('decodes UTF-8 escapes and keeps NUL, dots and double slashes literally', () => {
    expect(parse('/v1/kv/registry/%C3%BC%00/../x//y')).toMatchObject({ key: '/registry/ü\u0000/../x//y' });
  });

  it('reads /v1/list/{prefix} as a list of the prefix', () => {
    expect(parse('/v1/list/registry/pods/')).toEqual({
      verb: 'list',
      prefix: '/registry/pods/',
      exposedPrefix: '/registry/',
      consistency: { kind: 'mostRecent' },
      pagination: {},
    });
  });

  it.each(['%', '%zz', '%C3', '%FF', 'a%2'])('rejects the bad percent-encoding %j with 400', (bad) => {
    expect(() => parse(`/v1/kv/registry/${bad}`)).toThrow(BadRequest);
    expect(() => parse(`/v1/list/registry/${bad}`)).toThrow(BadRequest);
  });

  it.each(['/', '/v1', '/v1/kv', '/v1/list', '/v2/kv/registry/a', '/v1/objects/registry/a'])(
    'answers the non-endpoint %j with NotFound',
    (path) => {
      expect(() => parse(path)).toThrow(NotFound);
    },
  );

  it('rejects watch on a single key', () => {
    expect(() => parse('/v1/kv/registry/a', 'watch=true')).toThrow(/only supported on \/v1\/list/);
  });
});

describe('exposed prefixes', () => {
  it.each([
    ['a key outside every exposed prefix', '/v1/kv/secret/a'],
    ['a key equal to an exposed prefix without its slash', '/v1/kv/registry'],
    ['the root key', '/v1/kv/'],
    ['the root list prefix', '/v1/list/'],
    ['a list prefix shorter than an exposed prefix', '/v1/list/reg'],
    ['a list prefix that contains an exposed prefix', '/v1/list/registry'],
    ['an encoded slash that escapes nothing', '/v1/kv/secret%2Fregistry/a'],
  ])('forbids %s', (_name, path) => {
    expect(() => parse(path)).toThrow(Forbidden);
  });

  it('says which exposed prefix a request belongs to', () => {
    expect(parse('/v1/list/config/').exposedPrefix).toBe('/config/');
    expect(parse('/v1/kv/registry/x').exposedPrefix).toBe('/registry/');
  });

  it('picks the longest exposed prefix when they overlap', () => {
    expect(exposedPrefixFor('/registry/pods/a', ['/registry/', '/registry/pods/'], 'key')).toBe(
      '/registry/pods/',
    );
    expect(exposedPrefixFor('/registry/pods', ['/registry/', '/registry/pods/'], 'prefix')).toBe(
      '/registry/',
    );
  });
});

describe('resourceVersion syntax', () => {
  it.each(['0', '1', '42', '9007199254740991'])('accepts %j', (text) => {
    expect(parseResourceVersion(text)).toBe(Number(text));
  });

  it.each([
    '-1',
    '+1',
    ' 1',
    '1 ',
    '1.0',
    '1e3',
    '0x10',
    '01',
    '00',
    'abc',
    '9007199254740992',
    '99999999999999999999',
  ])('rejects %j with 400', (text) => {
    expect(() => parseResourceVersion(text)).toThrow(BadRequest);
    expect(() => parse('/v1/list/registry/', `resourceVersion=${encodeURIComponent(text)}`)).toThrow(
      BadRequest,
    );
    expect(() => parse('/v1/kv/registry/a', `resourceVersion=${encodeURIComponent(text)}`)).toThrow(
      BadRequest,
    );
  });

  it('treats an empty resourceVersion as unset', () => {
    expect(consistencyOf('/v1/list/registry/', 'resourceVersion=')).toEqual({ kind: 'mostRecent' });
  });

  it('rejects a parameter given twice', () => {
    expect(() => parse('/v1/list/registry/', 'resourceVersion=1&resourceVersion=2')).toThrow(
      /more than once/,
    );
  });

  it('ignores unknown parameters', () => {
    expect(consistencyOf('/v1/list/registry/', 'labelSelector=a%3Db&pretty=true')).toEqual({
      kind: 'mostRecent',
    });
  });
});

describe('the get table of API.md', () => {
  it.each([
    ['', { kind: 'mostRecent' }],
    ['resourceVersion=0', { kind: 'any' }],
    ['resourceVersion=7', { kind: 'notOlderThan', rv: 7 }],
    // GetOptions has no resourceVersionMatch: Kubernetes ignores it, and so do we.
    ['resourceVersion=7&resourceVersionMatch=Exact', { kind: 'notOlderThan', rv: 7 }],
    ['resourceVersionMatch=Bogus', { kind: 'mostRecent' }],
    // limit and continue do not apply to a get.
    ['resourceVersion=7&limit=5&continue=x', { kind: 'notOlderThan', rv: 7 }],
  ])('with %j reads %j', (query, consistency) => {
    expect(consistencyOf('/v1/kv/registry/a', query)).toEqual(consistency);
  });
});

describe('the list table of API.md (no limit)', () => {
  it.each([
    ['', { kind: 'mostRecent' }],
    ['resourceVersion=0', { kind: 'any' }],
    ['resourceVersion=7', { kind: 'notOlderThan', rv: 7 }],
    ['resourceVersionMatch=NotOlderThan&resourceVersion=0', { kind: 'any' }],
    ['resourceVersionMatch=NotOlderThan&resourceVersion=7', { kind: 'notOlderThan', rv: 7 }],
    ['resourceVersionMatch=Exact&resourceVersion=7', { kind: 'exact', rv: 7 }],
  ])('with %j reads %j', (query, consistency) => {
    expect(consistencyOf('/v1/list/registry/', query)).toEqual(consistency);
  });

  it.each([
    ['NotOlderThan with rv unset', 'resourceVersionMatch=NotOlderThan'],
    ['Exact with rv unset', 'resourceVersionMatch=Exact'],
    ['Exact with rv 0', 'resourceVersionMatch=Exact&resourceVersion=0'],
    ['an unknown match', 'resourceVersionMatch=Newest&resourceVersion=7'],
    ['a match in the wrong case', 'resourceVersionMatch=exact&resourceVersion=7'],
    [
      'sendInitialEvents on a list',
      'sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=7',
    ],
  ])('rejects %s with 400', (_name, query) => {
    expect(() => parse('/v1/list/registry/', query)).toThrow(BadRequest);
  });
});

describe('the list table of API.md with limit', () => {
  it.each([
    ['limit=5', { kind: 'mostRecent' }],
    ['limit=5&resourceVersion=0', { kind: 'any' }],
    // The Kubernetes legacy rule: a paginated list at rv=n with no match is Exact.
    ['limit=5&resourceVersion=7', { kind: 'exact', rv: 7 }],
    ['limit=5&resourceVersionMatch=NotOlderThan&resourceVersion=7', { kind: 'notOlderThan', rv: 7 }],
    ['limit=5&resourceVersionMatch=NotOlderThan&resourceVersion=0', { kind: 'any' }],
    ['limit=5&resourceVersionMatch=Exact&resourceVersion=7', { kind: 'exact', rv: 7 }],
    // limit=0 is no limit, so the legacy rule does not apply.
    ['limit=0&resourceVersion=7', { kind: 'notOlderThan', rv: 7 }],
  ])('with %j reads %j', (query, consistency) => {
    expect(consistencyOf('/v1/list/registry/', query)).toEqual(consistency);
  });

  it.each([
    ['limit=5', { limit: 5 }],
    ['limit=0', {}],
    ['limit=', {}],
    ['limit=007', { limit: 7 }],
    [`limit=${MAX_LIMIT + 1}`, { limit: MAX_LIMIT }],
    ['limit=99999999999999999999999999', { limit: MAX_LIMIT }],
  ])('with %j paginates as %j', (query, pagination) => {
    expect(parse('/v1/list/registry/', query)).toMatchObject({ pagination });
  });

  it('clamps to a configured maxLimit', () => {
    expect(parse('/v1/list/registry/', 'limit=500', { ...options, maxLimit: 100 })).toMatchObject({
      pagination: { limit: 100 },
    });
  });

  it.each(['-1', '1.5', 'ten', ' 5', '+5', '0x5'])('rejects limit=%j with 400', (limit) => {
    expect(() => parse('/v1/list/registry/', `limit=${encodeURIComponent(limit)}`)).toThrow(/invalid limit/);
  });
});

describe('continue', () => {
  it('reads the next page exactly at the token revision', () => {
    const request = parse('/v1/list/registry/pods/', `limit=2&continue=${token(9)}`);
    expect(request).toMatchObject({
      verb: 'list',
      consistency: { kind: 'exact', rv: 9 },
      pagination: {
        limit: 2,
        continue: { v: 1, rv: 9, prefix: '/registry/pods/', start: '/registry/pods/b' },
      },
    });
  });

  it.each(['', 'resourceVersion=0'])('accepts a continue with %j', (query) => {
    expect(consistencyOf('/v1/list/registry/pods/', `${query}&continue=${token(9)}`)).toEqual({
      kind: 'exact',
      rv: 9,
    });
  });

  it.each([
    ['rv=n', 'resourceVersion=9'],
    ['rv=n with NotOlderThan', 'resourceVersionMatch=NotOlderThan&resourceVersion=9'],
    ['rv=0 with NotOlderThan', 'resourceVersionMatch=NotOlderThan&resourceVersion=0'],
    ['rv=n with Exact', 'resourceVersionMatch=Exact&resourceVersion=9'],
  ])('rejects a continue together with %s', (_name, query) => {
    expect(() => parse('/v1/list/registry/pods/', `${query}&continue=${token(9)}`)).toThrow(BadRequest);
  });

  it('rejects a token for another prefix', () => {
    expect(() => parse('/v1/list/registry/', `continue=${token(9)}`)).toThrow(/different prefix/);
  });

  it('rejects a tampered token', () => {
    const text = token(9);
    const tampered = `${text.slice(0, 5)}${text[5] === 'x' ? 'y' : 'x'}${text.slice(6)}`;
    expect(() => parse('/v1/list/registry/pods/', `continue=${tampered}`)).toThrow(BadRequest);
  });

  it('verifies tokens with the configured secret', () => {
    const text = encodeContinue({ rv: 3, prefix: '/config/', start: '/config/a' }, 's3cret');
    expect(
      parse('/v1/list/config/', `continue=${text}`, { ...options, continueSecret: 's3cret' }),
    ).toMatchObject({
      consistency: { kind: 'exact', rv: 3 },
    });
    expect(() => parse('/v1/list/config/', `continue=${text}`)).toThrow(BadRequest);
  });
});

describe('watch', () => {
  const watch = (query: string) => parse('/v1/list/registry/', `watch=true&${query}`);

  it.each([
    // Legacy: rv unset → initial events at the most recent state, 0 → from any state, n → changes after n.
    ['', { kind: 'mostRecent' }, true, false],
    ['resourceVersion=0', { kind: 'any' }, true, false],
    ['resourceVersion=7', { kind: 'exact', rv: 7 }, false, false],
    // sendInitialEvents=true with NotOlderThan: initial state not older than rv, then the end bookmark.
    ['sendInitialEvents=true&resourceVersionMatch=NotOlderThan', { kind: 'mostRecent' }, true, true],
    [
      'sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=0',
      { kind: 'any' },
      true,
      true,
    ],
    [
      'sendInitialEvents=true&resourceVersionMatch=NotOlderThan&resourceVersion=7',
      { kind: 'notOlderThan', rv: 7 },
      true,
      true,
    ],
    // sendInitialEvents=false with NotOlderThan: no initial events at all.
    ['sendInitialEvents=false&resourceVersionMatch=NotOlderThan', { kind: 'mostRecent' }, false, false],
    [
      'sendInitialEvents=false&resourceVersionMatch=NotOlderThan&resourceVersion=0',
      { kind: 'any' },
      false,
      false,
    ],
    [
      'sendInitialEvents=false&resourceVersionMatch=NotOlderThan&resourceVersion=7',
      { kind: 'exact', rv: 7 },
      false,
      false,
    ],
  ])(
    'with %j starts at %j (initial events %s, end bookmark %s)',
    (query, consistency, initial, endBookmark) => {
      expect(watch(query)).toMatchObject({
        verb: 'watch',
        consistency,
        initialEvents: initial,
        initialEventsEndBookmark: endBookmark,
      });
    },
  );

  it.each([
    ['sendInitialEvents=true without a match', 'sendInitialEvents=true'],
    ['sendInitialEvents=false without a match', 'sendInitialEvents=false&resourceVersion=7'],
    [
      'sendInitialEvents=true with Exact',
      'sendInitialEvents=true&resourceVersionMatch=Exact&resourceVersion=7',
    ],
    ['a match without sendInitialEvents', 'resourceVersionMatch=NotOlderThan&resourceVersion=7'],
    ['Exact without sendInitialEvents', 'resourceVersionMatch=Exact&resourceVersion=7'],
    ['an unknown match', 'sendInitialEvents=true&resourceVersionMatch=Newest'],
    ['a continue token', `continue=${token(9, '/registry/')}`],
    ['a bad sendInitialEvents', 'sendInitialEvents=yes&resourceVersionMatch=NotOlderThan'],
    ['a bad allowWatchBookmarks', 'allowWatchBookmarks=on'],
  ])('rejects %s with 400', (_name, query) => {
    expect(() => watch(query)).toThrow(BadRequest);
  });

  it.each(['true', '1', 't', 'T', 'TRUE', 'True'])('accepts watch=%s', (value) => {
    expect(parse('/v1/list/registry/', `watch=${value}`).verb).toBe('watch');
  });

  it.each(['false', '0', 'f', ''])('treats watch=%j as a plain list', (value) => {
    expect(parse('/v1/list/registry/', `watch=${value}`).verb).toBe('list');
  });

  it.each(['yes', 'on', 'TrUe', '2'])('rejects watch=%j with 400', (value) => {
    expect(() => parse('/v1/list/registry/', `watch=${value}`)).toThrow(BadRequest);
  });

  it('carries allowWatchBookmarks and ignores limit', () => {
    expect(watch('allowWatchBookmarks=true&limit=5')).toEqual({
      verb: 'watch',
      prefix: '/registry/',
      exposedPrefix: '/registry/',
      consistency: { kind: 'mostRecent' },
      initialEvents: true,
      initialEventsEndBookmark: false,
      allowWatchBookmarks: true,
    });
  });
});

describe('timeoutSeconds', () => {
  it.each([
    ['timeoutSeconds=30', 30],
    [`timeoutSeconds=${MAX_TIMEOUT_SECONDS * 10}`, MAX_TIMEOUT_SECONDS],
    ['timeoutSeconds=999999999999999999999', MAX_TIMEOUT_SECONDS],
  ])('with %j times out after %i s', (query, seconds) => {
    expect(parse('/v1/list/registry/', `watch=1&${query}`).timeoutSeconds).toBe(seconds);
    expect(parse('/v1/kv/registry/a', query).timeoutSeconds).toBe(seconds);
  });

  it.each(['timeoutSeconds=0', 'timeoutSeconds='])('treats %j as the server default', (query) => {
    expect(parse('/v1/list/registry/', query)).not.toHaveProperty('timeoutSeconds');
  });

  it.each(['-1', '1.5', 'soon'])('rejects timeoutSeconds=%j with 400', (value) => {
    expect(() => parse('/v1/list/registry/', `timeoutSeconds=${value}`)).toThrow(BadRequest);
  });
});
