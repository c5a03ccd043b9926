/**
 * The reference model: etcd itself, read through a plain etcd3 client, turned into the API's
 * object shape by code that shares nothing with the tiers under test. A response served at
 * revision R must equal `stateAt(prefix, R)` exactly (API.md "Responses").
 *
 * Writes go through the raw KV service so every helper returns the revision etcd assigned.
 */
import type { Etcd3, IKeyValue, IRequestOp } from 'etcd3';

/** The API's object (API.md "Objects"), built independently of core/object.ts. */
export interface ModelObject {
  key: string;
  value?: string;
  valueBase64?: string;
  createRevision: number;
  modRevision: number;
  version: number;
  lease?: string;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function toModelObject(kv: IKeyValue): ModelObject {
  const object: ModelObject = {
    key: kv.key.toString('utf8'),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
  };
  try {
    object.value = strictUtf8.decode(kv.value);
  } catch {
    object.valueBase64 = Buffer.from(kv.value).toString('base64');
  }
  if (kv.lease && kv.lease !== '0') object.lease = kv.lease;
  return object;
}

/** The first key after every key that starts with `prefix` (etcd's `range_end` for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    const byte = end[i] ?? 0;
    if (byte < 0xff) {
      end[i] = byte + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

/** etcd's state of the keys under `prefix` at `revision` (0: now), in etcd's key order. */
export async function stateAt(
  etcd: Etcd3,
  prefix: string,
  revision = 0,
): Promise<{ revision: number; items: ModelObject[] }> {
  const key = Buffer.from(prefix, 'utf8');
  const res = await etcd.kv.range({ key, range_end: prefixEnd(key), revision });
  return { revision: revision || Number(res.header.revision), items: res.kvs.map(toModelObject) };
}

/** etcd's state of one key at `revision` (0: now); `undefined` when absent. */
export async function keyAt(etcd: Etcd3, key: string, revision = 0): Promise<ModelObject | undefined> {
  const res = await etcd.kv.range({ key: Buffer.from(key, 'utf8'), revision });
  const kv = res.kvs[0];
  return kv ? toModelObject(kv) : undefined;
}

/** etcd's current revision (a linearizable read). */
export async function currentRevision(etcd: Etcd3): Promise<number> {
  const res = await etcd.kv.range({ key: Buffer.from('\0'), count_only: true });
  return Number(res.header.revision);
}

function bytes(value: string | Uint8Array): Buffer {
  return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
}

/** Puts one key; returns the revision of the write. */
export async function put(etcd: Etcd3, key: string, value: string | Uint8Array): Promise<number> {
  const res = await etcd.kv.put({ key: bytes(key), value: bytes(value) });
  return Number(res.header.revision);
}

/** Deletes one key; returns the revision of the delete. */
export async function del(etcd: Etcd3, key: string): Promise<number> {
  const res = await etcd.kv.deleteRange({ key: bytes(key) });
  return Number(res.header.revision);
}

/** One operation of a transaction. */
export type TxnOp = { put: string; value: string } | { delete: string };

/** Runs `ops` as one unconditional transaction (one revision); returns that revision. */
export async function txn(etcd: Etcd3, ops: readonly TxnOp[]): Promise<number> {
  const success: IRequestOp[] = ops.map((op) =>
    'put' in op
      ? { request_put: { key: bytes(op.put), value: bytes(op.value) } }
      : { request_delete_range: { key: bytes(op.delete) } },
  );
  const res = await etcd.kv.txn({ compare: [], success });
  return Number(res.header.revision);
}

/** Puts `count` keys `${prefix}k00`… one by one; returns the revision of each write. */
export async function putMany(etcd: Etcd3, prefix: string, count: number, value = 'v'): Promise<number[]> {
  const revisions: number[] = [];
  for (let i = 0; i < count; i++) {
    revisions.push(await put(etcd, `${prefix}k${String(i).padStart(2, '0')}`, `${value}${i}`));
  }
  return revisions;
}
