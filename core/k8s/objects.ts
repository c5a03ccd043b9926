/**
 * Kubernetes objects from stored key-value pairs: each `KvObject` is parsed at most once and
 * encoded at most once, however many lists, gets and watchers serve it.
 *
 * `viewOf(kv)` keeps, per frozen `KvObject` (a WeakMap, so an entry dies with the object the
 * cache replaced), either the reason the value is left out or a `K8sView`: the metadata that
 * selectors, tables and resource derivation need, and — filled lazily on first use — the JSON
 * bytes as the API serves them, with `metadata.resourceVersion` set to the key's modRevision.
 * Lists are concatenations of these bytes and watch events wrap them, so a request never
 * re-serialises an object (ROADMAP "each object encoded once").
 *
 * Only JSON objects with string `apiVersion`, `kind` and `metadata.name` are served. Values in
 * Kubernetes' protobuf envelope (`k8s\0…`), encrypted at rest (`k8s:enc:…`), not UTF-8, not JSON
 * or not shaped like an object are left out whole and counted by reason, never half-served.
 */
import type { KvObject } from '../types.ts';
import type { SelectorSubject } from './selectors.ts';

/** Why a stored value is not served as a Kubernetes object. */
export type LeftOutReason = 'protobuf' | 'encrypted' | 'notJson' | 'notAnObject';

/** A servable Kubernetes object: parsed once, encoded lazily once. Never mutated after creation. */
export interface K8sView extends SelectorSubject {
  readonly kv: KvObject;
  readonly apiVersion: string;
  readonly kind: string;
  readonly uid: string | undefined;
  readonly creationTimestamp: string | undefined;
  /** Another field's value for field selectors (`spec.nodeName`); '' when absent. */
  readonly field: (path: string) => string;
  /** The value as parsed, with `metadata.resourceVersion` set to the key's modRevision. */
  readonly body: Readonly<Record<string, unknown>>;
}

interface Entry {
  readonly view: K8sView | undefined;
  readonly reason: LeftOutReason | undefined;
  bytes?: Uint8Array;
}

const entries = new WeakMap<KvObject, Entry>();
const encoder = new TextEncoder();

/** The object `kv` holds, or `undefined` when its value is left out (see `leftOutReason`). */
export function viewOf(kv: KvObject): K8sView | undefined {
  return entryOf(kv).view;
}

/** Why `kv` is left out, or `undefined` when it is served. */
export function leftOutReason(kv: KvObject): LeftOutReason | undefined {
  return entryOf(kv).reason;
}

/** The object's JSON as served, built on first use and then shared. */
export function encodedObject(view: K8sView): Uint8Array {
  const entry = entries.get(view.kv);
  if (entry?.bytes !== undefined) return entry.bytes;
  const bytes = encoder.encode(JSON.stringify(view.body));
  if (entry !== undefined) entry.bytes = bytes;
  return bytes;
}

function entryOf(kv: KvObject): Entry {
  let entry = entries.get(kv);
  if (entry === undefined) {
    entry = parse(kv);
    entries.set(kv, entry);
  }
  return entry;
}

function leftOut(reason: LeftOutReason): Entry {
  return { view: undefined, reason };
}

// base64 of the first bytes of `k8s\0` and of `k8s:en`, for values that are not UTF-8.
const PROTOBUF_BASE64 = 'azhzA';
const ENCRYPTED_BASE64 = 'azhzOmVu';

function parse(kv: KvObject): Entry {
  const text = kv.value;
  if (text === undefined) {
    const b64 = kv.valueBase64 ?? '';
    if (b64.startsWith(PROTOBUF_BASE64)) return leftOut('protobuf');
    return leftOut(b64.startsWith(ENCRYPTED_BASE64) ? 'encrypted' : 'notJson');
  }
  if (text.startsWith('k8s\u0000')) return leftOut('protobuf');
  if (text.startsWith('k8s:enc:')) return leftOut('encrypted');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return leftOut('notJson');
  }
  if (!isRecord(value)) return leftOut('notAnObject');
  const { apiVersion, kind, metadata } = value;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string' || !isRecord(metadata)) {
    return leftOut('notAnObject');
  }
  const { name, namespace, labels, uid, creationTimestamp } = metadata;
  if (typeof name !== 'string' || name === '') return leftOut('notAnObject');
  const ns = typeof namespace === 'string' && namespace !== '' ? namespace : undefined;
  const served: Record<string, unknown> = { ...metadata, resourceVersion: String(kv.modRevision) };
  const view: K8sView = {
    kv,
    apiVersion,
    kind,
    name,
    namespace: ns,
    labels: stringRecord(labels),
    uid: typeof uid === 'string' ? uid : undefined,
    creationTimestamp: typeof creationTimestamp === 'string' ? creationTimestamp : undefined,
    body: { ...value, metadata: served },
    field: (path) => fieldValue(value, path),
  };
  return { view, reason: undefined };
}

/**
 * A dotted path's value as a field selector compares it: a string as it is, a number or boolean
 * spelled out, '' when absent.
 */
function fieldValue(object: Record<string, unknown>, path: string): string {
  let at: unknown = object;
  for (const part of path.split('.')) {
    if (!isRecord(at)) return '';
    at = at[part];
  }
  if (typeof at === 'string') return at;
  return typeof at === 'number' || typeof at === 'boolean' ? String(at) : '';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringRecord(value: unknown): Readonly<Record<string, string>> {
  if (!isRecord(value)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ''). */
export function groupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

/** The version of an `apiVersion` (`apps/v1` → `v1`). */
export function versionOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
}

/** Counts of left-out values by reason, for a response header and the operator. */
export type LeftOutCounts = Partial<Record<LeftOutReason, number>>;

export function countLeftOut(counts: LeftOutCounts, reason: LeftOutReason): void {
  counts[reason] = (counts[reason] ?? 0) + 1;
}

/** `protobuf=3,encrypted=1`; empty when nothing was left out. */
export function formatLeftOut(counts: LeftOutCounts): string {
  return Object.entries(counts)
    .map(([reason, n]) => `${reason}=${n}`)
    .join(',');
}
