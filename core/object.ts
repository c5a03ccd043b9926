/**
 * Builds the API's objects from etcd's key-value pairs, once per change.
 *
 * Decoding and encoding happen here and nowhere else: the frozen result (an `EncodedObject`) is
 * shared by the store, every snapshot, the event history and every response (core/types.ts), so
 * a value is decoded and escaped once no matter how many readers see it.
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
 * The form every cache keeps an object in: the value already encoded as the JSON it is sent as,
 * beside the few fields the cache itself needs (key, revisions, version, lease). A get writes the
 * object's JSON from these parts, a watch event frames it, a list streams it (core/list-body.ts):
 * the value — nearly all of an object's bytes — is escaped once, when the object enters the
 * cache, never per response (the apiserver's `cachingObject` does the same per encoder).
 *
 * Only the value is kept encoded, not the whole object's JSON: the envelope (field names, the
 * quoted key, the numbers) would cost ~90 more bytes per object for what takes a few hundred ns
 * to write, and the memory target per cached object (issue #12) leaves no room for it.
 *
 * To everything else it is a plain frozen `KvObject`: `value` (or `valueBase64`) is an own,
 * enumerable accessor that decodes the kept JSON on each read, so `JSON.stringify`, spreading
 * and deep equality in tests see the usual fields, in the usual order (key, createRevision,
 * modRevision, version, value | valueBase64, lease). Hot paths use `objectJson`/`writeObject`.
 *
 * Invariant: `#valueJson` is `JSON.stringify(value)` (or of `valueBase64`), a flat string.
 */
export class EncodedObject implements KvObject {
  readonly key: string;
  declare readonly value?: string;
  declare readonly valueBase64?: string;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  readonly version: number;
  declare readonly lease?: string;
  readonly #valueJson: string;
  readonly #base64: boolean;

  constructor(fields: Omit<KvObject, 'value' | 'valueBase64'>, valueJson: string, base64: boolean) {
    this.key = fields.key;
    this.createRevision = fields.createRevision;
    this.modRevision = fields.modRevision;
    this.version = fields.version;
    this.#valueJson = flat(valueJson);
    this.#base64 = base64;
    // One shared getter per field name: every object of a kind keeps one hidden class (the
    // accessor lives in the class's descriptors, not in each object).
    Object.defineProperty(this, base64 ? 'valueBase64' : 'value', VALUE_PROPERTY);
    if (fields.lease !== undefined) Object.defineProperty(this, 'lease', leaseProperty(fields.lease));
    Object.freeze(this);
  }

  /** `JSON.stringify(value)` (or of `valueBase64`), kept since the object entered the cache. */
  get valueJson(): string {
    return this.#valueJson;
  }

  /** True when the value is carried as `valueBase64` (its bytes were not UTF-8). */
  get base64(): boolean {
    return this.#base64;
  }

  /** The decoded value; the accessor behind the own `value`/`valueBase64` property. */
  decodeValue(): string {
    return JSON.parse(this.#valueJson) as string;
  }
}

/**
 * `s`, flattened now. `JSON.stringify` builds a long result as a rope of parts (V8's incremental
 * string builder): kept as it is, each value would cost a dozen string headers more (~220 B per
 * 1 KB value, measured with bench/heap-probe.ts) and be flattened again by every `encodeInto`.
 * Converting a string to a number makes V8 flatten it in place (the `flatstr` idiom).
 */
function flat(s: string): string {
  void Number(s);
  return s;
}

const VALUE_PROPERTY: PropertyDescriptor = {
  get(this: EncodedObject) {
    return this.decodeValue();
  },
  enumerable: true,
  configurable: false,
};

function leaseProperty(lease: string): PropertyDescriptor {
  return { value: lease, enumerable: true, writable: false, configurable: false };
}

/**
 * `o` in the form caches keep: itself when it already is, else encoded now (objects decoded from
 * the replication stream or loaded from a replica's SQLite enter the cache here).
 */
export function encoded(o: KvObject): EncodedObject {
  if (o instanceof EncodedObject) return o;
  const fields = {
    key: o.key,
    createRevision: o.createRevision,
    modRevision: o.modRevision,
    version: o.version,
  };
  const withLease = o.lease !== undefined ? { ...fields, lease: o.lease } : fields;
  if (o.valueBase64 !== undefined && o.value === undefined) {
    return new EncodedObject(withLease, JSON.stringify(o.valueBase64), true);
  }
  return new EncodedObject(withLease, JSON.stringify(o.value ?? ''), false);
}

/**
 * An `EncodedObject` for etcd's pair: `value` when the bytes are valid UTF-8, `valueBase64`
 * otherwise (API.md). A lease of `'0'` (etcd's "none") is dropped so that `lease` is present only
 * when meaningful.
 */
export function makeObject(raw: RawKv): KvObject {
  const fields = {
    key: raw.key,
    createRevision: raw.createRevision,
    modRevision: raw.modRevision,
    version: raw.version,
    ...(raw.lease !== undefined && raw.lease !== '0' ? { lease: raw.lease } : {}),
  };
  const decoded = decodeUtf8(raw.value);
  if (decoded === undefined) return new EncodedObject(fields, JSON.stringify(bytesToBase64(raw.value)), true);
  return new EncodedObject(fields, JSON.stringify(decoded), false);
}

/**
 * The object a DELETE event carries (core/types.ts `ChangeEvent`): the key's last state with
 * `modRevision` set to the deleting revision and `version` 0, as etcd reports a deleted key. The
 * value's encoding is shared with `prev`.
 */
export function deletedObject(prev: KvObject, revision: Revision): KvObject {
  const p = encoded(prev);
  const fields = { key: p.key, createRevision: p.createRevision, modRevision: revision, version: 0 };
  return new EncodedObject(
    p.lease !== undefined ? { ...fields, lease: p.lease } : fields,
    p.valueJson,
    p.base64,
  );
}

/**
 * The key as a JSON string literal: between quotes as it is, unless it holds a character JSON
 * escapes (a quote, a backslash, a control character, a surrogate — lone ones get escaped, and
 * checking pairs is not worth it for keys): then `JSON.stringify` writes it.
 */
export function keyJson(key: string): string {
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(key);
  }
  return `"${key}"`;
}

/**
 * The object's JSON, exactly `JSON.stringify(o)`, written from its kept parts (the value is not
 * escaped again).
 */
export function objectJson(o: KvObject): string {
  const e = encoded(o);
  const lease = e.lease !== undefined ? `,"lease":${JSON.stringify(e.lease)}` : '';
  return `{"key":${keyJson(e.key)},"createRevision":${e.createRevision},"modRevision":${e.modRevision},"version":${e.version},${e.base64 ? '"valueBase64":' : '"value":'}${e.valueJson}${lease}}`;
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
  // An encoded object's value is not decoded for this: its JSON is as long, give or take escapes.
  if (o instanceof EncodedObject) bytes += o.valueJson.length - 2;
  else if (o.value !== undefined) bytes += o.value.length;
  else if (o.valueBase64 !== undefined) bytes += o.valueBase64.length;
  if (o.lease !== undefined) bytes += o.lease.length;
  return bytes;
}
