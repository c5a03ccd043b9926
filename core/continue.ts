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
 * The HMAC is `@noble/hashes` (core/sha256.ts): decoding runs synchronously inside request
 * parsing, in Node and in workerd alike, where `crypto.subtle` is async and `node:crypto` is not
 * in core (STYLE.md §2). Tokens are not secret — the payload is readable — only unforgeable.
 */

import { BadRequest } from './errors.ts';
import type { ListPage } from './format.ts';
import { isUnder, keyAfter } from './keys.ts';
import { hmacSha256 } from './sha256.ts';
import type { KvObject, Revision } from './types.ts';

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

/**
 * One page of a list read at `rv`: when `remaining` items follow, it carries the token for the
 * page that starts right after its last item. Every tier and etcd fallback pages this way.
 */
export function paginate(
  items: readonly KvObject[],
  remaining: number,
  list: { rv: Revision; prefix: string },
  secret?: string,
): ListPage {
  const last = items[items.length - 1];
  if (remaining <= 0 || last === undefined) return { items };
  const continueToken = encodeContinue(
    { rv: list.rv, prefix: list.prefix, start: keyAfter(last.key) },
    secret,
  );
  return { items, remaining, continueToken };
}

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
  if (!isUnder(token.start, token.prefix)) throw invalid('start key outside its prefix');
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
