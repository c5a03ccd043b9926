import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareKeys, isUnder, keyAfter, keyAfterBytes } from './keys.ts';

const utf8 = new TextEncoder();

/** etcd's order: the UTF-8 bytes, compared lexicographically. */
function byteOrder(a: string, b: string): number {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = (x[i] as number) - (y[i] as number);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

const tricky = fc.constantFrom(
  'a',
  '/',
  'z',
  '\u00e9',
  '\u07ff',
  '\u0800',
  '\ud7ff',
  '\ue000',
  '\uffff',
  '\ufffd',
  '\u{10000}',
  '\u{1f600}',
  '\u{10ffff}',
);
const trickyKey = fc.array(tricky, { maxLength: 6 }).map((parts) => parts.join(''));

describe('compareKeys', () => {
  it('orders an astral character after a BMP private-use character, as etcd does', () => {
    expect('\u{1f600}' < '\ue000').toBe(true); // what plain `<` says
    expect(compareKeys('\u{1f600}', '\ue000')).toBeGreaterThan(0);
    expect(compareKeys('\ue000', '\u{1f600}')).toBeLessThan(0);
    expect(compareKeys('/a\u{10000}', '/a\uffff')).toBeGreaterThan(0);
  });

  it('orders ASCII like plain string comparison and treats a prefix as smaller', () => {
    expect(compareKeys('/a', '/b')).toBeLessThan(0);
    expect(compareKeys('/a', '/a')).toBe(0);
    expect(compareKeys('/a', '/a/')).toBeLessThan(0);
    expect(compareKeys('/a0', '/a/')).toBeGreaterThan(0);
  });

  it('agrees in sign with a comparison of UTF-8 bytes for tricky keys', () => {
    fc.assert(
      fc.property(trickyKey, trickyKey, (a, b) => {
        expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(byteOrder(a, b)));
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees in sign with a comparison of UTF-8 bytes for any well-formed strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
        expect(Math.sign(compareKeys(a, b))).toBe(Math.sign(byteOrder(a, b)));
      }),
      { numRuns: 2000 },
    );
  });

  it('sorts a list into the same order as sorting by bytes', () => {
    fc.assert(
      fc.property(fc.array(trickyKey, { maxLength: 30 }), (keys) => {
        expect([...keys].sort(compareKeys)).toEqual([...keys].sort(byteOrder));
      }),
    );
  });
});

describe('isUnder', () => {
  it('is a byte-prefix test', () => {
    expect(isUnder('/registry/a', '/registry/')).toBe(true);
    expect(isUnder('/registry/', '/registry/')).toBe(true);
    expect(isUnder('/registryx', '/registry/')).toBe(false);
    expect(isUnder('/anything', '')).toBe(true);
  });
});

describe('keyAfter and keyAfterBytes', () => {
  it('give the smallest key after a key, as a string and as bytes alike', () => {
    fc.assert(
      fc.property(trickyKey, (key) => {
        expect(keyAfterBytes(utf8.encode(key))).toEqual(utf8.encode(keyAfter(key)));
      }),
    );
  });

  it('keep bytes that are not UTF-8 as they are', () => {
    expect([...keyAfterBytes(new Uint8Array([0x2f, 0xff]))]).toEqual([0x2f, 0xff, 0x00]);
  });
});
