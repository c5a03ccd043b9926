import { describe, expect, it } from 'vitest';
import {
  base64ToBytes,
  bytesToBase64,
  deletedObject,
  EncodedObject,
  encoded,
  makeObject,
  OBJECT_OVERHEAD_BYTES,
  objectJson,
  objectSize,
} from './object.ts';

const utf8 = new TextEncoder();
const raw = (value: Uint8Array, lease?: string) => ({
  key: '/r/a',
  value,
  createRevision: 2,
  modRevision: 5,
  version: 3,
  lease,
});

describe('makeObject', () => {
  it('keeps valid UTF-8 as `value` and omits valueBase64', () => {
    const o = makeObject(raw(utf8.encode('{"replicas":3} ✓ \u{1f600}')));
    expect(o).toEqual({
      key: '/r/a',
      value: '{"replicas":3} ✓ \u{1f600}',
      createRevision: 2,
      modRevision: 5,
      version: 3,
    });
    expect('valueBase64' in o).toBe(false);
  });

  it('encodes invalid UTF-8 as valueBase64 that round-trips to the same bytes', () => {
    for (const bytes of [
      new Uint8Array([0xff, 0xfe, 0x00]),
      new Uint8Array([0x61, 0xc3]), // truncated two-byte sequence
      new Uint8Array([0xed, 0xa0, 0x80]), // an encoded surrogate is not UTF-8
      new Uint8Array([0xc0, 0xaf]), // overlong '/'
    ]) {
      const o = makeObject(raw(bytes));
      expect(o.value).toBeUndefined();
      expect(o.valueBase64).toBeDefined();
      expect(base64ToBytes(o.valueBase64 ?? '')).toEqual(bytes);
    }
  });

  it('keeps a leading byte-order mark instead of silently dropping it', () => {
    const o = makeObject(raw(new Uint8Array([0xef, 0xbb, 0xbf, 0x78])));
    expect(o.value).toBe('\ufeffx');
  });

  it('treats empty bytes as the empty string', () => {
    expect(makeObject(raw(new Uint8Array())).value).toBe('');
  });

  it('encodes values larger than one base64 chunk correctly', () => {
    const bytes = new Uint8Array(40_003).map((_, i) => (i * 7 + 0x80) & 0xff);
    bytes[0] = 0xff;
    const o = makeObject(raw(bytes));
    expect(base64ToBytes(o.valueBase64 ?? '')).toEqual(bytes);
    expect(o.valueBase64).toBe(btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join('')));
  });

  it('keeps a lease but drops etcd\'s "0" (no lease)', () => {
    expect(makeObject(raw(new Uint8Array(), '694d7')).lease).toBe('694d7');
    expect('lease' in makeObject(raw(new Uint8Array(), '0'))).toBe(false);
  });

  it('freezes the object', () => {
    const o = makeObject(raw(utf8.encode('x')));
    expect(Object.isFrozen(o)).toBe(true);
  });
});

describe('deletedObject', () => {
  it('is the last state with the deleting revision and version 0, frozen', () => {
    const prev = makeObject(raw(utf8.encode('v')));
    const d = deletedObject(prev, 9);
    expect(d).toEqual({ ...prev, modRevision: 9, version: 0 });
    expect(Object.isFrozen(d)).toBe(true);
    expect(prev.modRevision).toBe(5);
  });
});

describe('sizes', () => {
  it('objectSize counts the key, the value (in UTF-16 units, never scanned) and a fixed overhead', () => {
    const o = makeObject(raw(utf8.encode('héllo')));
    expect(objectSize(o)).toBe(OBJECT_OVERHEAD_BYTES + 4 + 5);
    const b = makeObject(raw(new Uint8Array([0xff, 0xff, 0xff])));
    expect(objectSize(b)).toBe(OBJECT_OVERHEAD_BYTES + 4 + 4);
  });

  it('bytesToBase64 of nothing is empty', () => {
    expect(bytesToBase64(new Uint8Array())).toBe('');
  });
});

describe('the encoded form caches keep', () => {
  const tricky = [
    makeObject(raw(utf8.encode('{"replicas":3}'))),
    makeObject(raw(new Uint8Array([0xff, 0x00, 0x80]), '7587')),
    makeObject({
      ...raw(utf8.encode('line\nbreak "quoted" \\ \u2028 \u{1f600}')),
      key: '/r/"odd"\\key\u0001✓',
    }),
    makeObject(raw(new Uint8Array(0))),
  ];

  it('writes exactly what JSON.stringify writes, without escaping the value again', () => {
    for (const o of tricky) {
      expect(objectJson(o)).toBe(JSON.stringify(o));
      expect(JSON.parse(objectJson(o))).toEqual({ ...o });
    }
  });

  it('looks like a plain object: own enumerable fields in the API order, equal to the plain form', () => {
    const o = makeObject(raw(utf8.encode('v'), '9'));
    expect(Object.keys(o)).toEqual(['key', 'createRevision', 'modRevision', 'version', 'value', 'lease']);
    expect(o).toEqual({ key: '/r/a', createRevision: 2, modRevision: 5, version: 3, value: 'v', lease: '9' });
    expect(Object.isFrozen(o)).toBe(true);
  });

  it('encodes a plain object (from the replication stream or SQLite) once, and an encoded one not again', () => {
    const plain = Object.freeze({ key: '/r/b', createRevision: 1, modRevision: 4, version: 2, value: 'x"y' });
    const e = encoded(plain);
    expect(e).toBeInstanceOf(EncodedObject);
    expect(e.valueJson).toBe('"x\\"y"');
    expect(e).toEqual(plain);
    expect(encoded(e)).toBe(e);
    const b64 = encoded({ key: '/r/c', createRevision: 1, modRevision: 1, version: 1, valueBase64: '/wA=' });
    expect(JSON.stringify(b64)).toBe(
      '{"key":"/r/c","createRevision":1,"modRevision":1,"version":1,"valueBase64":"/wA="}',
    );
  });

  it('shares the value encoding with the DELETED object made from it', () => {
    const prev = makeObject(raw(utf8.encode('{"a":1}'), '5')) as EncodedObject;
    const gone = deletedObject(prev, 9) as EncodedObject;
    expect(gone.valueJson).toBe(prev.valueJson);
    expect(JSON.parse(objectJson(gone))).toEqual({ ...prev, modRevision: 9, version: 0 });
  });
});
