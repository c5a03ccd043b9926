import { describe, expect, it } from 'vitest';
import {
  base64urlDecode,
  base64urlEncode,
  DEFAULT_CONTINUE_SECRET,
  decodeContinue,
  encodeContinue,
} from './continue.ts';
import { BadRequest } from './errors.ts';
import { hmacSha256, sha256, sha256Hex } from './sha256.ts';

const enc = new TextEncoder();
const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const fromHex = (text: string) => new Uint8Array(text.match(/../g)?.map((h) => Number.parseInt(h, 16)) ?? []);

describe('sha256', () => {
  it('hashes text to lower-case hex for stored token hashes', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it.each([
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    [
      'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq',
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    ],
  ])('hashes %j to the FIPS 180-4 digest', (input, digest) => {
    expect(hex(sha256(enc.encode(input)))).toBe(digest);
  });

  it('hashes a million "a"s across many blocks to the FIPS 180-4 digest', () => {
    expect(hex(sha256(new Uint8Array(1_000_000).fill(0x61)))).toBe(
      'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0',
    );
  });
});

describe('hmacSha256', () => {
  it.each([
    [
      'RFC 4231 case 1',
      fromHex('0b'.repeat(20)),
      enc.encode('Hi There'),
      'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    ],
    [
      'RFC 4231 case 2',
      enc.encode('Jefe'),
      enc.encode('what do ya want for nothing?'),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    ],
    [
      'RFC 4231 case 6 (key longer than a block)',
      fromHex('aa'.repeat(131)),
      enc.encode('Test Using Larger Than Block-Size Key - Hash Key First'),
      '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54',
    ],
  ])('matches %s', (_name, key, message, mac) => {
    expect(hex(hmacSha256(key, message))).toBe(mac);
  });
});

describe('base64url', () => {
  it('round-trips every byte value', () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(base64urlDecode(base64urlEncode(bytes))).toEqual(bytes);
  });

  it.each(['a', 'ab=', 'a+b/', 'ab c', 'AB'])('rejects the non-canonical or foreign text %j', (text) => {
    expect(base64urlDecode(text)).toBeUndefined();
  });
});

describe('continue tokens', () => {
  const token = { rv: 42, prefix: '/registry/pods/', start: '/registry/pods/default/web-7' };

  it('round-trips a token for the same prefix', () => {
    expect(decodeContinue(encodeContinue(token), token.prefix)).toEqual({ v: 1, ...token });
  });

  it('round-trips keys with non-ASCII characters, NUL and dots', () => {
    const odd = { rv: 1, prefix: '/r/', start: '/r/ü\u0000.é/🚀' };
    expect(decodeContinue(encodeContinue(odd), '/r/')).toEqual({ v: 1, ...odd });
  });

  it('is accepted by another tier that shares the secret', () => {
    const text = encodeContinue(token, 'shared-secret');
    expect(decodeContinue(text, token.prefix, 'shared-secret').rv).toBe(42);
  });

  it('is rejected under a different secret', () => {
    const text = encodeContinue(token, 'relay-a');
    expect(() => decodeContinue(text, token.prefix, 'relay-b')).toThrow(BadRequest);
    expect(() => decodeContinue(text, token.prefix, DEFAULT_CONTINUE_SECRET)).toThrow(BadRequest);
  });

  it('rejects a token issued for another prefix', () => {
    const text = encodeContinue(token);
    expect(() => decodeContinue(text, '/registry/')).toThrow(/different prefix/);
  });

  it('rejects a validly signed token whose start key lies outside its prefix', () => {
    const text = encodeContinue({ rv: 3, prefix: '/registry/pods/', start: '/registry/secrets/x' });
    expect(() => decodeContinue(text, '/registry/pods/')).toThrow(/outside its prefix/);
  });

  it.each([
    ['a revision of 0', { rv: 0, prefix: '/p/', start: '/p/a' }],
    ['a negative revision', { rv: -1, prefix: '/p/', start: '/p/a' }],
    ['a fractional revision', { rv: 1.5, prefix: '/p/', start: '/p/a' }],
  ])('rejects a validly signed token with %s', (_name, bad) => {
    expect(() => decodeContinue(encodeContinue(bad), '/p/')).toThrow(BadRequest);
  });

  it('detects every single-character change anywhere in the token', () => {
    const text = encodeContinue(token);
    for (let i = 0; i < text.length; i++) {
      const replacement = text[i] === 'A' ? 'B' : 'A';
      const tampered = text.slice(0, i) + replacement + text.slice(i + 1);
      expect(() => decodeContinue(tampered, token.prefix), `position ${i}`).toThrow(BadRequest);
    }
  });

  it('detects every truncation', () => {
    const text = encodeContinue(token);
    for (let n = 0; n < text.length; n++) {
      expect(() => decodeContinue(text.slice(0, n), token.prefix), `length ${n}`).toThrow(BadRequest);
    }
  });

  it('rejects a payload re-signed with a forged rv when the secret is unknown', () => {
    const [, tag] = encodeContinue(token).split('.');
    const forgedBody = base64urlEncode(enc.encode(JSON.stringify({ v: 1, ...token, rv: 1 })));
    expect(() => decodeContinue(`${forgedBody}.${tag}`, token.prefix)).toThrow(/integrity/);
  });

  it.each(['', '.', 'abc', 'a.b.c', '..', 'not base64!.AAAA', `${'A'.repeat(10)}.`, '%%%.%%%'])(
    'rejects the garbage token %j',
    (text) => {
      expect(() => decodeContinue(text, '/p/')).toThrow(BadRequest);
    },
  );

  it('rejects an oversized token without hashing it', () => {
    expect(() => decodeContinue('A'.repeat(4 * 1024 * 1024 + 1), '/p/')).toThrow(/too long/);
  });
});
