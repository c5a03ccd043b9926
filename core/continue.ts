/**
 * Continue tokens: the opaque cursor a paginated list hands back so the client can fetch the
 * next page *of the same snapshot* (API.md: "a continue token continues the list at the snapshot
 * of its first page").
 *
 * Wire form: `base64url(JSON payload) + "." + base64url(tag)`, where the tag is the first 16
 * bytes of HMAC-SHA-256(secret, payload text). The relay and every edge share the secret, so a
 * token minted by one tier is accepted by the other; a token that was edited, truncated or
 * minted for another prefix is a 400, never a read of something the client did not ask for.
 *
 * Why a hand-written HMAC: decoding runs synchronously inside request parsing, in Node and in
 * workerd alike. `crypto.subtle` is async and `node:crypto` is not in core (STYLE.md §2), so
 * SHA-256 lives here (~50 lines, FIPS 180-4, checked against the RFC 4231 vectors in the tests).
 * Tokens are not secret — the payload is readable — only unforgeable.
 */

import { BadRequest } from './errors.ts';
import type { Revision } from './types.ts';

/**
 * A decoded, verified continue token. Invariants (checked by `decodeContinue`): `rv` is a
 * positive safe integer, `start` begins with `prefix`, and `prefix` equals the prefix of the
 * list request it came with.
 */
export interface ContinueToken {
  readonly v: 1;
  /** The revision of the first page's snapshot; every later page is read exactly there. */
  readonly rv: Revision;
  /** The list prefix the token was issued for. */
  readonly prefix: string;
  /** The first key of the next page (inclusive). */
  readonly start: string;
}

/** Used when no secret is configured: tokens are then tamper-evident but forgeable by anyone. */
export const DEFAULT_CONTINUE_SECRET = 'edgewatch-continue-token-v1';

/** Tokens longer than this are rejected before any work (keys are bounded by etcd's 1.5 MiB). */
export const MAX_CONTINUE_TOKEN_LENGTH = 4 * 1024 * 1024;

const TAG_BYTES = 16;
const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Mints the token for the page that starts at `start` of the list of `prefix` at `rv`. */
export function encodeContinue(
  token: { rv: Revision; prefix: string; start: string },
  secret: string = DEFAULT_CONTINUE_SECRET,
): string {
  const payload: ContinueToken = { v: 1, rv: token.rv, prefix: token.prefix, start: token.start };
  const body = base64urlEncode(encoder.encode(JSON.stringify(payload)));
  return `${body}.${base64urlEncode(tagOf(body, secret))}`;
}

/**
 * Verifies and decodes `text` for a list of `expectedPrefix`. Throws `BadRequest` when the token
 * is malformed, tampered with, issued for another prefix, or points outside its prefix.
 */
export function decodeContinue(
  text: string,
  expectedPrefix: string,
  secret: string = DEFAULT_CONTINUE_SECRET,
): ContinueToken {
  if (text.length > MAX_CONTINUE_TOKEN_LENGTH) throw invalid('too long');
  const dot = text.indexOf('.');
  if (dot < 0 || text.indexOf('.', dot + 1) >= 0) throw invalid('not two parts');
  const body = text.slice(0, dot);
  const tag = base64urlDecode(text.slice(dot + 1));
  if (body.length === 0 || tag === undefined || !equalBytes(tag, tagOf(body, secret))) {
    throw invalid('integrity check failed');
  }
  const bytes = base64urlDecode(body);
  if (bytes === undefined) throw invalid('bad encoding');
  let parsed: unknown;
  try {
    parsed = JSON.parse(strictDecoder.decode(bytes));
  } catch {
    throw invalid('bad payload');
  }
  const token = asToken(parsed);
  if (token === undefined) throw invalid('bad payload');
  if (token.prefix !== expectedPrefix) {
    throw new BadRequest('continue token was issued for a different prefix');
  }
  if (!token.start.startsWith(token.prefix)) throw invalid('start key outside its prefix');
  return token;
}

function invalid(why: string): BadRequest {
  return new BadRequest(`invalid continue token: ${why}`);
}

function asToken(value: unknown): ContinueToken | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { v, rv, prefix, start } = value as Record<string, unknown>;
  if (v !== 1 || typeof prefix !== 'string' || typeof start !== 'string') return undefined;
  if (typeof rv !== 'number' || !Number.isSafeInteger(rv) || rv <= 0) return undefined;
  return { v: 1, rv, prefix, start };
}

function tagOf(body: string, secret: string): Uint8Array {
  return hmacSha256(encoder.encode(secret), encoder.encode(body)).subarray(0, TAG_BYTES);
}

/** Compares without an early exit so the time taken does not reveal the matching prefix. */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

// ---- base64url (RFC 4648 §5, no padding) ---------------------------------------------------

const BASE64URL = /^[A-Za-z0-9_-]*$/;

export function base64urlEncode(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Returns undefined for anything that is not canonical unpadded base64url. */
export function base64urlDecode(text: string): Uint8Array | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  let binary: string;
  try {
    binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return undefined;
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  // Reject non-canonical spellings (stray low bits in the last character) so that one token has
  // exactly one text: otherwise an edited token could still verify.
  return base64urlEncode(bytes) === text ? bytes : undefined;
}

// ---- SHA-256 and HMAC (FIPS 180-4, RFC 2104) -------------------------------------------------

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

/** SHA-256 of `data`. Exported for the test vectors; not a general-purpose crypto API. */
export function sha256(data: Uint8Array): Uint8Array {
  const bitLength = data.length * 8;
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 0x100000000));
  view.setUint32(padded.length - 4, bitLength >>> 0);

  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let block = 0; block < padded.length; block += 64) {
    for (let t = 0; t < 16; t++) w[t] = view.getUint32(block + t * 4);
    for (let t = 16; t < 64; t++) {
      const w15 = w[t - 15] ?? 0;
      const w2 = w[t - 2] ?? 0;
      const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
      const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
      w[t] = ((w[t - 16] ?? 0) + s0 + (w[t - 7] ?? 0) + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = [
      h[0] ?? 0,
      h[1] ?? 0,
      h[2] ?? 0,
      h[3] ?? 0,
      h[4] ?? 0,
      h[5] ?? 0,
      h[6] ?? 0,
      h[7] ?? 0,
    ];
    for (let t = 0; t < 64; t++) {
      const t1 =
        (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + (K[t] ?? 0) + (w[t] ?? 0)) >>>
        0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    const next = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) h[i] = ((h[i] ?? 0) + (next[i] ?? 0)) >>> 0;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i] ?? 0);
  return out;
}

/** HMAC-SHA-256 (RFC 2104). Exported for the RFC 4231 test vectors. */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256(key) : key);
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = (block[i] ?? 0) ^ 0x36;
    outer[i] = (block[i] ?? 0) ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}
