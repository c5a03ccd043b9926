/**
 * Builds the API's objects from etcd's key-value pairs, once per change.
 *
 * Decoding happens here and nowhere else: the frozen result is shared by the store, every
 * snapshot, the event history and every response (core/types.ts), so a value is decoded once no
 * matter how many readers see it.
 */
import type { KvObject, Revision } from './types.ts';

/** What etcd returns for one key, decoded only as far as the key string. */
export interface RawKv {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  readonly version: number;
  /** etcd's lease id as a decimal string; absent or `'0'` means no lease. */
  readonly lease?: string | undefined;
}

// `ignoreBOM: true` keeps a leading U+FEFF in the string: without it the decoder would silently
// drop the BOM and the value would no longer round-trip to the bytes etcd holds.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A frozen `KvObject`: `value` when the bytes are valid UTF-8, `valueBase64` otherwise (API.md).
 * A lease of `'0'` (etcd's "none") is dropped so that `lease` is present only when meaningful.
 */
export function makeObject(raw: RawKv): KvObject {
  const decoded = decodeUtf8(raw.value);
  const object: {
    key: string;
    value?: string;
    valueBase64?: string;
    createRevision: Revision;
    modRevision: Revision;
    version: number;
    lease?: string;
  } = {
    key: raw.key,
    createRevision: raw.createRevision,
    modRevision: raw.modRevision,
    version: raw.version,
  };
  if (decoded === undefined) object.valueBase64 = bytesToBase64(raw.value);
  else object.value = decoded;
  if (raw.lease !== undefined && raw.lease !== '0') object.lease = raw.lease;
  return Object.freeze(object);
}

/**
 * The object a DELETE event carries (core/types.ts `ChangeEvent`): the key's last state with
 * `modRevision` set to the deleting revision and `version` 0, as etcd reports a deleted key.
 */
export function deletedObject(prev: KvObject, revision: Revision): KvObject {
  return Object.freeze({ ...prev, modRevision: revision, version: 0 });
}

/** The string the bytes spell, or `undefined` when they are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Standard base64 (with padding) of `bytes`, via `btoa` so that no `Buffer` is needed. */
export function bytesToBase64(bytes: Uint8Array): string {
  // String.fromCharCode takes its arguments on the stack; chunks keep large values safe.
  const chunk = 0x8000;
  let binary = '';
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

/** Inverse of `bytesToBase64`, for tests and for clients of the wire form. */
export function base64ToBytes(base64: string): Uint8Array {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * Fixed overhead per object for `objectSize`: the object header, four numeric fields and the two
 * string headers, roughly what V8 spends (a rough constant, not a measurement per engine).
 */
export const OBJECT_OVERHEAD_BYTES = 96;

/**
 * An estimate of what `o` costs in memory and on the wire, in bytes: the length of its strings
 * plus a fixed overhead. The one estimate for the history's byte bound, replication message
 * sizes and metrics, where stable and O(1) matters more than precise: it counts UTF-16 code
 * units, which is exact for ASCII (V8's one-byte strings, and their JSON), and never scans a
 * value — on the replication path it runs per event per replica.
 */
export function objectSize(o: KvObject): number {
  let bytes = OBJECT_OVERHEAD_BYTES + o.key.length;
  if (o.value !== undefined) bytes += o.value.length;
  if (o.valueBase64 !== undefined) bytes += o.valueBase64.length;
  if (o.lease !== undefined) bytes += o.lease.length;
  return bytes;
}
