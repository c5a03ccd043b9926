/**
 * The edge replica's durable storage (worker/storage.ts) in real workerd: SQLite-backed Durable
 * Objects persisted to a temporary folder, driven through test/fixtures/storage-worker.ts. A
 * "restart" disposes Miniflare (workerd exits, every Durable Object is gone) and starts a new
 * one on the same folder, which is what an eviction or a redeploy does to a replica.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareKeys } from '../core/keys.ts';
import type { ChangeEvent, KvObject, Revision, RevisionBatch } from '../core/types.ts';
import type { RpcRequest } from './fixtures/storage-worker.ts';
import { bundleScript } from './helpers/worker.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PREFIX = '/registry/';

interface Loaded {
  state: { revision: Revision; objects: KvObject[] } | null;
  ms: number;
}

let script = '';
let persistDir = '';
let mf: Miniflare;

function start(): Miniflare {
  return new Miniflare({
    modules: [
      { type: 'ESModule', path: path.join(root, 'test/fixtures/storage-worker.js'), contents: script },
    ],
    compatibilityDate: '2026-04-01',
    durableObjects: { STORE: { className: 'StorageHost', useSQLite: true } },
    durableObjectsPersist: persistDir,
  });
}

async function restart(): Promise<void> {
  await mf.dispose();
  mf = start();
  await mf.ready;
}

/** Calls `method` on the `ReplicaStorage` of Durable Object `name`; rejects with its error. */
async function call<T = unknown>(name: string, method: string, ...args: unknown[]): Promise<T> {
  return callWith<T>({ name, prefix: PREFIX, method, args });
}

async function callWith<T>(request: RpcRequest): Promise<T> {
  const response = await mf.dispatchFetch('http://storage/', {
    method: 'POST',
    body: JSON.stringify(request),
  });
  const body = (await response.json()) as { result?: T; error?: string };
  if (body.error !== undefined) throw new Error(body.error);
  return body.result as T;
}

/** A stored object as `makeObject` shapes it (property order included). */
function obj(
  key: string,
  rev: Revision,
  value: string,
  extra: { lease?: string; b64?: boolean } = {},
): KvObject {
  const base = { key, createRevision: rev, modRevision: rev, version: 1 };
  const withValue = extra.b64 ? { ...base, valueBase64: btoa(value) } : { ...base, value };
  return Object.freeze(extra.lease === undefined ? withValue : { ...withValue, lease: extra.lease });
}

function sorted(objects: Iterable<KvObject>): KvObject[] {
  return [...objects].sort((a, b) => compareKeys(a.key, b.key));
}

async function snapshot(name: string, revision: Revision, objects: KvObject[], chunk = 3): Promise<void> {
  await call(name, 'beginSnapshot', revision);
  for (let i = 0; i < objects.length; i += chunk)
    await call(name, 'writeSnapshotChunk', objects.slice(i, i + chunk));
  await call(name, 'commitSnapshot', revision);
}

/** Keys that tell UTF-8 byte order from JavaScript's `<` (core/keys.ts). */
const AWKWARD = ['/registry/\u{1F600}', '/registry/\uFFFD', '/registry/\uE000', '/registry/z', '/registry/é'];

beforeAll(async () => {
  script = await bundleScript('test/fixtures/storage-worker.ts');
  persistDir = mkdtempSync(path.join(tmpdir(), 'edgewatch-storage-'));
  mf = start();
  await mf.ready;
});

afterAll(async () => {
  await mf?.dispose();
  if (persistDir !== '') rmSync(persistDir, { recursive: true, force: true });
});

describe('ReplicaStorage in workerd', () => {
  const first = [
    obj('/registry/b', 3, 'bee'),
    obj('/registry/a', 2, 'ay', { lease: '7587' }),
    obj('/registry/bin', 4, '\u0000\u00ff\u0080', { b64: true }),
    ...AWKWARD.map((key, i) => obj(key, 10 + i, `v${i}`)),
  ];

  it('loads nothing before any snapshot was committed', async () => {
    expect(await call<Loaded>('empty', 'load')).toMatchObject({ state: null });
    expect(await call('empty', 'stats')).toMatchObject({ rows: 0, revision: null, stagingRows: 0 });
  });

  it('loads a snapshot written in chunks as exactly the objects written, in etcd key order', async () => {
    await snapshot('chunks', 20, first);
    const { state } = await call<Loaded>('chunks', 'load');
    expect(state?.revision).toBe(20);
    // Byte-identical JSON: same fields, same property order, same (UTF-8 byte) key order.
    expect(JSON.stringify(state?.objects)).toBe(JSON.stringify(sorted(first)));
    expect(state?.objects.map((o) => o.key).slice(-3)).toEqual([
      '/registry/\uE000',
      '/registry/\uFFFD',
      '/registry/\u{1F600}',
    ]);
    expect(await call('chunks', 'stats')).toMatchObject({ rows: first.length, revision: 20 });
  });

  it('loads after a restart of workerd exactly what was written before it', async () => {
    await snapshot('restart', 20, first);
    await restart();
    const { state } = await call<Loaded>('restart', 'load');
    expect(state?.revision).toBe(20);
    expect(JSON.stringify(state?.objects)).toBe(JSON.stringify(sorted(first)));
  });

  it('keeps the previous state loadable while a snapshot is received and after one is cut by a restart', async () => {
    await snapshot('cut', 20, first);
    await call('cut', 'beginSnapshot', 40);
    await call('cut', 'writeSnapshotChunk', [
      obj('/registry/new', 40, 'n'),
      obj('/registry/a', 40, 'changed'),
    ]);
    const during = await call<Loaded>('cut', 'load');
    expect(during.state?.revision).toBe(20);
    expect(JSON.stringify(during.state?.objects)).toBe(JSON.stringify(sorted(first)));
    expect(await call('cut', 'stats')).toMatchObject({
      rows: first.length,
      snapshotRevision: 40,
      stagingRows: 2,
    });

    await restart();
    const after = await call<Loaded>('cut', 'load');
    expect(after.state?.revision).toBe(20);
    expect(JSON.stringify(after.state?.objects)).toBe(JSON.stringify(sorted(first)));
    // The unfinished snapshot is gone: it cannot be committed, and its table was dropped.
    await expect(call('cut', 'commitSnapshot', 40)).rejects.toThrow(/without beginSnapshot/);
    expect(await call('cut', 'sql', "SELECT name FROM sqlite_master WHERE name = 'objects_staging'")).toEqual(
      [],
    );

    const second = [obj('/registry/only', 50, 'one')];
    await snapshot('cut', 50, second);
    expect(await call<Loaded>('cut', 'load')).toMatchObject({ state: { revision: 50, objects: second } });
  });

  it('refuses a commit at another revision than the snapshot began with, keeping the old state', async () => {
    await snapshot('mismatch', 20, first);
    await call('mismatch', 'beginSnapshot', 30);
    await expect(call('mismatch', 'commitSnapshot', 31)).rejects.toThrow(/does not match/);
    expect((await call<Loaded>('mismatch', 'load')).state?.revision).toBe(20);
  });

  it('replaces the whole state in one call, abandoning a snapshot in progress', async () => {
    await snapshot('replace', 20, first);
    await call('replace', 'beginSnapshot', 30);
    await call('replace', 'writeSnapshotChunk', [obj('/registry/staged', 30, 's')]);
    const whole = [obj('/registry/y', 35, 'y'), obj('/registry/x', 34, 'x', { b64: true })];
    await call('replace', 'replace', 35, whole);
    await expect(call('replace', 'commitSnapshot', 30)).rejects.toThrow(/without beginSnapshot/);
    await restart();
    const { state } = await call<Loaded>('replace', 'load');
    expect(state?.revision).toBe(35);
    expect(JSON.stringify(state?.objects)).toBe(JSON.stringify(sorted(whole)));
  });

  it('applies batches of puts and deletes in coalesced calls so that a load equals a reference model', async () => {
    const random = mulberry32(42);
    const keys = [...AWKWARD, ...Array.from({ length: 40 }, (_, i) => `/registry/k${i % 7}/${i}`)];
    const model = new Map<string, KvObject>();
    let revision = 100;
    await snapshot('model', revision, []);
    for (let call_ = 0; call_ < 60; call_++) {
      const batches: RevisionBatch[] = [];
      for (let b = Math.floor(random() * 5); b > 0; b--) {
        revision += 1 + Math.floor(random() * 3);
        const events: ChangeEvent[] = [];
        const touched = new Set<string>();
        for (let e = 1 + Math.floor(random() * 4); e > 0; e--) {
          const key = keys[Math.floor(random() * keys.length)] ?? '';
          if (touched.has(key)) continue; // etcd changes a key at most once per revision
          touched.add(key);
          const prev = model.get(key);
          if (prev !== undefined && random() < 0.35) {
            events.push({ type: 'DELETE', object: { ...prev, modRevision: revision, version: 0 } });
            model.delete(key);
          } else {
            const next = Object.freeze({
              key,
              createRevision: prev?.createRevision ?? revision,
              modRevision: revision,
              version: (prev?.version ?? 0) + 1,
              ...(random() < 0.2 ? { valueBase64: btoa(`\u00ff${revision}`) } : { value: `v@${revision}` }),
              ...(random() < 0.3 ? { lease: `${revision}` } : {}),
            });
            events.push({ type: 'PUT', object: next });
            model.set(key, next);
          }
        }
        batches.push({ revision, events });
      }
      // Sometimes a progress mark follows the batches in the same call.
      const progress = random() < 0.3 ? revision + 2 : undefined;
      await call('model', 'applyBatches', batches, progress);
      if (progress !== undefined) revision = progress;
      if (call_ === 30) await restart();
    }
    const { state } = await call<Loaded>('model', 'load');
    expect(state?.revision).toBe(revision);
    expect(state?.objects).toEqual(sorted(model.values()));
    expect(await call('model', 'stats')).toMatchObject({ rows: model.size, revision });
  });

  it('commits changes and their revision together: a call that fails writes neither', async () => {
    await snapshot('atomic', 20, first);
    const ok = { revision: 21, events: [{ type: 'PUT', object: obj('/registry/a', 21, 'written?') }] };
    // Violates the table's CHECK (neither value nor valueBase64) after the first write went in.
    const bad = {
      revision: 22,
      events: [
        { type: 'PUT', object: { key: '/registry/z', createRevision: 22, modRevision: 22, version: 1 } },
      ],
    };
    await expect(call('atomic', 'applyBatches', [ok, bad])).rejects.toThrow(/CHECK constraint/);
    // Neither the first put nor the revision landed, in memory or on disk.
    const kept = await call<Loaded>('atomic', 'load');
    expect(kept.state?.revision).toBe(20);
    expect(JSON.stringify(kept.state?.objects)).toBe(JSON.stringify(sorted(first)));
    await restart();
    expect(JSON.stringify((await call<Loaded>('atomic', 'load')).state)).toBe(JSON.stringify(kept.state));
    // The stored revision did not move, so revision 21 is still the next one accepted.
    await call('atomic', 'applyBatches', [ok]);
    const { state } = await call<Loaded>('atomic', 'load');
    expect(state?.revision).toBe(21);
    expect(state?.objects.find((o) => o.key === '/registry/a')).toEqual(ok.events[0]?.object);
  });

  it('only moves revisions forward through batches and progress marks, also after a restart', async () => {
    await snapshot('forward', 20, first);
    const put = (rev: Revision) => ({
      revision: rev,
      events: [{ type: 'PUT', object: obj('/registry/b', rev, 'x') }],
    });
    await expect(call('forward', 'applyBatches', [put(20)])).rejects.toThrow(/does not follow 20/);
    await expect(call('forward', 'applyBatches', [put(22), put(21)])).rejects.toThrow(/does not follow 22/);
    await expect(call('forward', 'applyBatches', [put(22)], 21)).rejects.toThrow(/below the last batch/);
    await expect(call('forward', 'setRevision', 19)).rejects.toThrow(/below the stored 20/);
    await call('forward', 'setRevision', 20);
    await call('forward', 'setRevision', 25);
    await call('forward', 'applyBatches', [], 27);
    await restart();
    expect((await call<Loaded>('forward', 'load')).state?.revision).toBe(27);
    await expect(call('forward', 'applyBatches', [put(26)])).rejects.toThrow(/does not follow 27/);
  });

  it('does not load, nor apply batches to, a state stored for another prefix', async () => {
    await snapshot('prefix', 20, first);
    const other = { name: 'prefix', prefix: '/other/' };
    expect(await callWith<Loaded>({ ...other, method: 'load' })).toMatchObject({ state: null });
    await expect(callWith({ ...other, method: 'setRevision', args: [30] })).rejects.toThrow(
      /without a complete/,
    );
    expect((await call<Loaded>('prefix', 'load')).state?.revision).toBe(20);
  });

  it('forgets everything on clear and wipes a database of another schema version when opened', async () => {
    await snapshot('clear', 20, first);
    await call('clear', 'clear');
    expect(await call<Loaded>('clear', 'load')).toMatchObject({ state: null });
    await restart();
    expect(await call<Loaded>('clear', 'load')).toMatchObject({ state: null });

    await snapshot('schema', 20, first);
    await call('schema', 'sql', 'UPDATE meta SET schema_version = 0');
    expect(await call('schema', 'open')).toBeNull();
    expect(await call('schema', 'sql', 'SELECT count(*) AS n FROM objects')).toEqual([{ n: 0 }]);
  });

  it('stores and loads 20k objects of ~1 KB (times printed, not asserted)', async () => {
    const n = 20_000;
    const pad = 'x'.repeat(900);
    const objects = Array.from({ length: n }, (_, i) =>
      obj(`/registry/pods/ns${i % 50}/pod-${i}`, i + 1, `{"kind":"Pod","i":${i},"pad":"${pad}"}`),
    );
    const t0 = performance.now();
    await call('big', 'beginSnapshot', n);
    for (let i = 0; i < n; i += 1000) await call('big', 'writeSnapshotChunk', objects.slice(i, i + 1000));
    const { ms: commitMs } = await call<{ ms: number }>('big', 'commitSnapshot', n);
    const writeMs = performance.now() - t0;
    await restart();
    const t1 = performance.now();
    const { state, ms } = await call<Loaded>('big', 'load');
    const roundTripMs = performance.now() - t1;
    const stats = await call<{ rows: number; bytes: number }>('big', 'stats');
    console.log(
      `20k objects: snapshot write ${writeMs.toFixed(0)} ms (20 chunks over RPC, commit ${commitMs} ms), ` +
        `load ${ms} ms in workerd (${roundTripMs.toFixed(0)} ms with JSON round trip), ` +
        `${(stats.bytes / 2 ** 20).toFixed(1)} MiB on disk`,
    );
    expect(state?.objects.length).toBe(n);
    expect(stats.rows).toBe(n);
    expect(state?.objects).toEqual(sorted(objects));
  });
});

/** A small seeded PRNG so the model test is reproducible. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
