import { describe, expect, it } from 'vitest';
import { TooLargeResourceVersion, toStatus } from './errors.ts';
import {
  decodeEdgeMessage,
  decodeRelayMessage,
  type EdgeMessage,
  encode,
  MAX_MESSAGE_CHARS,
  ProtocolError,
  type RelayMessage,
} from './protocol.ts';
import type { KvObject } from './types.ts';

const obj = (key: string, modRevision: number, extra: Partial<KvObject> = {}): KvObject => ({
  key,
  value: `v@${modRevision}`,
  createRevision: 2,
  modRevision,
  version: 1,
  ...extra,
});

const edgeMessages = [
  { v: 1, type: 'hello', prefix: '/registry/', replica: 'iad/registry/0' },
  { v: 1, type: 'hello', prefix: '/registry/', replica: 'iad', fromRevision: 41 },
  { v: 1, type: 'hello', prefix: '/registry/', replica: 'iad', fromRevision: 41, digest: '00ff00ff00ff00ff' },
  { v: 1, type: 'ping' },
  { v: 1, type: 'ping', report: { revision: 41, watchers: 3 } },
  { v: 1, type: 'ping', report: { revision: 0, watchers: 0, selfCheck: 'ok' } },
  { v: 1, type: 'pong' },
  { v: 1, type: 'revisionRequest', id: 7 },
] satisfies EdgeMessage[];

const relayMessages = [
  { v: 1, type: 'snapshotStart', revision: 10, total: 2 },
  { v: 1, type: 'snapshotStart', revision: 3, total: 0, newHistory: true },
  {
    v: 1,
    type: 'snapshotChunk',
    objects: [
      obj('/r/a', 3),
      { key: '/r/b', valueBase64: '/w==', createRevision: 4, modRevision: 9, version: 2, lease: '7' },
    ],
  },
  { v: 1, type: 'snapshotChunk', objects: [] },
  { v: 1, type: 'snapshotEnd', revision: 10 },
  { v: 1, type: 'snapshotEnd', revision: 10, digest: '0123456789abcdef' },
  {
    v: 1,
    type: 'batches',
    batches: [
      {
        revision: 11,
        events: [{ type: 'PUT', object: obj('/r/a', 11, { version: 2 }), prev: obj('/r/a', 3) }],
      },
      {
        revision: 12,
        events: [
          { type: 'DELETE', object: obj('/r/a', 12, { version: 0 }) },
          { type: 'PUT', object: obj('/r/c', 12, { createRevision: 12 }) },
        ],
      },
    ],
  },
  { v: 1, type: 'progress', revision: 12 },
  { v: 1, type: 'progress', revision: 12, digest: 'fedcba9876543210' },
  {
    v: 1,
    type: 'batches',
    batches: [{ revision: 13, events: [{ type: 'PUT', object: obj('/r/d', 13, { createRevision: 13 }) }] }],
    digest: '0000000000000001',
  },
  { v: 1, type: 'revisionResponse', id: 7, revision: 12 },
  { v: 1, type: 'revisionResponse', id: 8, error: toStatus(new TooLargeResourceVersion(20, 12)) },
  { v: 1, type: 'ping' },
  { v: 1, type: 'pong' },
  { v: 1, type: 'error', status: toStatus(new Error('boom')) },
] satisfies RelayMessage[];

describe('encode and decode', () => {
  it.each(edgeMessages.map((m) => [m.type, m] as const))(
    'round-trip the edge message %s',
    (_type, message) => {
      expect(decodeEdgeMessage(encode(message))).toEqual(message);
      if (message.type !== 'ping' && message.type !== 'pong') {
        expect(() => decodeRelayMessage(encode(message))).toThrow(ProtocolError);
      }
    },
  );

  it.each(relayMessages.map((m) => [m.type, m] as const))(
    'round-trip the relay message %s',
    (_type, message) => {
      expect(decodeRelayMessage(encode(message))).toEqual(message);
      if (message.type !== 'ping' && message.type !== 'pong') {
        expect(() => decodeEdgeMessage(encode(message))).toThrow(ProtocolError);
      }
    },
  );

  it('drops fields the protocol does not define and freezes received objects', () => {
    const text = JSON.stringify({
      v: 1,
      type: 'snapshotChunk',
      extra: true,
      objects: [{ ...obj('/r/a', 3), injected: '<script>' }],
    });
    const message = decodeRelayMessage(text);
    expect(message).toEqual({ v: 1, type: 'snapshotChunk', objects: [obj('/r/a', 3)] });
    if (message.type !== 'snapshotChunk') throw new Error('unexpected type');
    expect(Object.isFrozen(message.objects[0])).toBe(true);
  });

  it('refuses messages sent in the wrong direction', () => {
    expect(() => decodeRelayMessage(encode({ v: 1, type: 'hello', prefix: '/r/', replica: 'x' }))).toThrow(
      ProtocolError,
    );
    expect(() => decodeEdgeMessage(encode({ v: 1, type: 'progress', revision: 3 }))).toThrow(ProtocolError);
  });
});

const validBatch = { revision: 5, events: [{ type: 'PUT', object: obj('/r/a', 5) }] };
const garbage: [string, unknown][] = [
  ['a non-string frame', new Uint8Array([1, 2])],
  ['an empty text', ''],
  ['non-JSON text', '{"v":1,'],
  ['JSON null', null],
  ['a JSON array', [1, 'hello']],
  ['a JSON string', '"hello"'],
  ['a missing version', { type: 'ping' }],
  ['version 2', { v: 2, type: 'ping' }],
  ['version "1"', { v: '1', type: 'ping' }],
  ['an unknown type', { v: 1, type: 'subscribe' }],
  ['a missing type', { v: 1 }],
  ['a type inherited from Object.prototype', { v: 1, type: 'toString' }],
  ['hello without prefix', { v: 1, type: 'hello', replica: 'x' }],
  ['hello with an empty replica', { v: 1, type: 'hello', prefix: '/r/', replica: '' }],
  ['hello with a huge replica name', { v: 1, type: 'hello', prefix: '/r/', replica: 'x'.repeat(257) }],
  ['hello from revision 0', { v: 1, type: 'hello', prefix: '/r/', replica: 'x', fromRevision: 0 }],
  ['hello from a string revision', { v: 1, type: 'hello', prefix: '/r/', replica: 'x', fromRevision: '5' }],
  ['revisionRequest with a negative id', { v: 1, type: 'revisionRequest', id: -1 }],
  ['a ping report that is not an object', { v: 1, type: 'ping', report: 5 }],
  ['a ping report without watchers', { v: 1, type: 'ping', report: { revision: 3 } }],
  ['a ping report with negative watchers', { v: 1, type: 'ping', report: { revision: 3, watchers: -1 } }],
  [
    'a ping report with a huge self-check',
    { v: 1, type: 'ping', report: { revision: 3, watchers: 0, selfCheck: 'x'.repeat(33) } },
  ],
  ['revisionRequest with a fractional id', { v: 1, type: 'revisionRequest', id: 1.5 }],
  ['snapshotStart with a negative total', { v: 1, type: 'snapshotStart', revision: 3, total: -1 }],
  ['snapshotStart at an unsafe revision', { v: 1, type: 'snapshotStart', revision: 2 ** 53, total: 0 }],
  ['snapshotEnd without revision', { v: 1, type: 'snapshotEnd' }],
  ['progress at NaN', '{"v":1,"type":"progress","revision":NaN}'],
  ['progress at a float', { v: 1, type: 'progress', revision: 3.5 }],
  ['a chunk whose objects is not an array', { v: 1, type: 'snapshotChunk', objects: {} }],
  [
    'an object without key',
    { v: 1, type: 'snapshotChunk', objects: [{ ...obj('/r/a', 3), key: undefined }] },
  ],
  ['an object with an empty key', { v: 1, type: 'snapshotChunk', objects: [obj('', 3)] }],
  [
    'an object with both value and valueBase64',
    { v: 1, type: 'snapshotChunk', objects: [{ ...obj('/r/a', 3), valueBase64: 'AA==' }] },
  ],
  [
    'an object with neither value',
    { v: 1, type: 'snapshotChunk', objects: [{ ...obj('/r/a', 3), value: undefined }] },
  ],
  [
    'an object with non-base64 valueBase64',
    {
      v: 1,
      type: 'snapshotChunk',
      objects: [{ key: '/r/a', valueBase64: 'A*', createRevision: 1, modRevision: 1, version: 1 }],
    },
  ],
  ['an object modified before it was created', { v: 1, type: 'snapshotChunk', objects: [obj('/r/a', 1)] }],
  [
    'an object with a numeric value',
    { v: 1, type: 'snapshotChunk', objects: [{ ...obj('/r/a', 3), value: 5 }] },
  ],
  [
    'an object with a numeric lease',
    { v: 1, type: 'snapshotChunk', objects: [obj('/r/a', 3, { lease: 5 as never })] },
  ],
  ['empty batches', { v: 1, type: 'batches', batches: [] }],
  ['batches that is not an array', { v: 1, type: 'batches', batches: validBatch }],
  ['a batch without events', { v: 1, type: 'batches', batches: [{ revision: 5, events: [] }] }],
  [
    'batches out of order',
    {
      v: 1,
      type: 'batches',
      batches: [
        { ...validBatch, revision: 6, events: [{ type: 'PUT', object: obj('/r/a', 6) }] },
        validBatch,
      ],
    },
  ],
  ['a repeated batch revision', { v: 1, type: 'batches', batches: [validBatch, validBatch] }],
  [
    'an event of unknown type',
    {
      v: 1,
      type: 'batches',
      batches: [{ revision: 5, events: [{ type: 'ADDED', object: obj('/r/a', 5) }] }],
    },
  ],
  [
    'an event from another revision',
    { v: 1, type: 'batches', batches: [{ revision: 6, events: [{ type: 'PUT', object: obj('/r/a', 5) }] }] },
  ],
  [
    'a PUT with version 0',
    {
      v: 1,
      type: 'batches',
      batches: [{ revision: 5, events: [{ type: 'PUT', object: obj('/r/a', 5, { version: 0 }) }] }],
    },
  ],
  [
    'a DELETE with a version',
    {
      v: 1,
      type: 'batches',
      batches: [{ revision: 5, events: [{ type: 'DELETE', object: obj('/r/a', 5) }] }],
    },
  ],
  [
    'a batch changing one key twice',
    {
      v: 1,
      type: 'batches',
      batches: [
        {
          revision: 5,
          events: [
            { type: 'PUT', object: obj('/r/a', 5) },
            { type: 'PUT', object: obj('/r/a', 5) },
          ],
        },
      ],
    },
  ],
  [
    'a prev of another key',
    {
      v: 1,
      type: 'batches',
      batches: [{ revision: 5, events: [{ type: 'PUT', object: obj('/r/a', 5), prev: obj('/r/b', 3) }] }],
    },
  ],
  [
    'a prev not older than the change',
    {
      v: 1,
      type: 'batches',
      batches: [{ revision: 5, events: [{ type: 'PUT', object: obj('/r/a', 5), prev: obj('/r/a', 5) }] }],
    },
  ],
  ['a revisionResponse with neither revision nor error', { v: 1, type: 'revisionResponse', id: 1 }],
  [
    'a revisionResponse with both revision and error',
    { v: 1, type: 'revisionResponse', id: 1, revision: 3, error: toStatus(new Error('x')) },
  ],
  ['an error without status', { v: 1, type: 'error' }],
  [
    'an error whose status is a success',
    { v: 1, type: 'error', status: { ...toStatus(new Error('x')), status: 'Success' } },
  ],
  ['an error with code 200', { v: 1, type: 'error', status: { ...toStatus(new Error('x')), code: 200 } }],
  [
    'an error with malformed causes',
    { v: 1, type: 'error', status: { ...toStatus(new Error('x')), details: { causes: [1] } } },
  ],
];

describe('history identity fields', () => {
  it.each([
    [
      'a digest that is not 16 lowercase hex digits',
      { v: 1, type: 'progress', revision: 3, digest: 'ABCDEF0123456789' },
    ],
    ['a short digest', { v: 1, type: 'batches', batches: [], digest: '01' }],
    ['a digest that is a number', { v: 1, type: 'snapshotEnd', revision: 3, digest: 12 }],
    ['newHistory other than true', { v: 1, type: 'snapshotStart', revision: 3, total: 0, newHistory: 1 }],
  ])('refuses %s', (_what, message) => {
    expect(() => decodeRelayMessage(JSON.stringify(message))).toThrow(ProtocolError);
  });

  it('refuses a hello digest without the revision it is the digest at', () => {
    const hello = { v: 1, type: 'hello', prefix: '/registry/', replica: 'iad', digest: '0123456789abcdef' };
    expect(() => decodeEdgeMessage(JSON.stringify(hello))).toThrow(/digest without fromRevision/);
  });
});

describe('decode refuses garbage', () => {
  it.each(garbage)('throws ProtocolError for %s', (_name, value) => {
    const text = typeof value === 'string' || value instanceof Uint8Array ? value : JSON.stringify(value);
    expect(() => decodeRelayMessage(text)).toThrow(ProtocolError);
    expect(() => decodeEdgeMessage(text)).toThrow(ProtocolError);
  });

  it('names the path of the offending field', () => {
    const text = JSON.stringify({
      v: 1,
      type: 'batches',
      batches: [
        validBatch,
        { revision: 6, events: [{ type: 'PUT', object: { ...obj('/r/b', 6), version: -1 } }] },
      ],
    });
    expect(() => decodeRelayMessage(text)).toThrow(
      expect.objectContaining({ path: '$.batches[1].events[0].object.version' }),
    );
  });

  it('refuses an oversized text before parsing it', () => {
    expect(() => decodeRelayMessage(' '.repeat(MAX_MESSAGE_CHARS + 1))).toThrow(/longer than/);
  });

  it('never throws anything but ProtocolError for random mutations of valid messages', () => {
    let seed = 1;
    const random = () => {
      seed = (seed * 48271) % 2147483647;
      return seed / 2147483647;
    };
    const texts = [
      ...edgeMessages.map((m) => [encode(m), decodeEdgeMessage] as const),
      ...relayMessages.map((m) => [encode(m), decodeRelayMessage] as const),
    ];
    for (let round = 0; round < 5000; round++) {
      const [text, decode] = texts[Math.floor(random() * texts.length)] ?? ['', decodeRelayMessage];
      const at = Math.floor(random() * text.length);
      const mutated =
        text.slice(0, at) + String.fromCharCode(32 + Math.floor(random() * 95)) + text.slice(at + 1);
      try {
        decode(mutated);
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError);
      }
    }
  });
});
