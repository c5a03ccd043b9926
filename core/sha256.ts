/**
 * SHA-256 and HMAC-SHA-256, from `@noble/hashes` (audited, synchronous, no dependencies): the one
 * implementation both runtimes use. Synchronous matters — request parsing (continue tokens) and
 * authorization (token hashes) run inside a synchronous path at the relay and in a Durable
 * Object, where `crypto.subtle` is async and `node:crypto` is not available to core (STYLE.md §2).
 * The FIPS 180-4 and RFC 4231 vectors are checked in continue.test.ts.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

export { sha256 };

/** HMAC-SHA-256 (RFC 2104) of `message` under `key`. */
export function hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
  return hmac(sha256, key, message);
}

/** Lower-case hex of SHA-256 over the UTF-8 bytes of `text` (how client tokens are stored). */
export function sha256Hex(text: string): string {
  return bytesToHex(sha256(utf8ToBytes(text)));
}
