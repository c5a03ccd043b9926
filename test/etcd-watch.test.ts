/**
 * The etcd adapter against a real etcd: the pinned paginated list, the quorum revision read and
 * the raw watch stream (whole revisions, fragments over 4 MB, progress, compaction, cuts).
 */
import { randomBytes } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Expired } from '../core/errors.ts';
import { base64ToBytes } from '../core/object.ts';
import type { ChangeEvent, Revision, RevisionBatch } from '../core/types.ts';
import { createEtcdClient, etcdVersion, supportsConsistentCacheReads } from '../relay/etcd/client.ts';
import { currentRevision, kvToObject, listAt, prefixEnd } from '../relay/etcd/lister.ts';
import { WatchStream } from '../relay/etcd/watch-stream.ts';
import {
  Compacted,
  type Watch,
  WatchBroken,
  type WatchEnded,
  type WatchHandlers,
} from '../relay/reflector.ts';
import { type EtcdProcess, startEtcd } from '../scripts/lib/etcd-process.ts';
import { startProxy } from './helpers/tcp-proxy.ts';

const MiB = 1024 * 1024;

let etcd: EtcdProcess;
let client: Etcd3;

beforeAll(async () => {
  // 6 MiB requests let one txn carry 5 × 1 MiB; etcd fragments watch responses above that size.
  etcd = await startEtcd({ extraArgs: ['--max-request-bytes', String(6 * MiB), '--unsafe-no-fsync'] });
  client = createEtcdClient({ endpoints: etcd.endpoint });
});

afterAll(async () => {
  client?.close();
  await etcd?.stop();
});

/** Records a watch's callbacks and lets a test wait for a condition on them. */
class Recorder implements WatchHandlers {
  readonly batches: RevisionBatch[] = [];
  readonly progresses: Revision[] = [];
  endedWith: WatchEnded | undefined;
  private waiters: (() => void)[] = [];

  batch(batch: RevisionBatch) {
    this.batches.push(batch);
    this.notify();
  }
  progress(revision: Revision) {
    this.progresses.push(revision);
    this.notify();
  }
  ended(reason: WatchEnded) {
    this.endedWith = reason;
    this.notify();
  }
  until(condition: () => boolean): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!condition()) return;
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }
  private notify() {
    for (const waiter of [...this.waiters]) waiter();
  }
}

async function put(key: string, value: string | Buffer): Promise<Revision> {
  const res = await client.kv.put({ key: Buffer.from(key), value: Buffer.from(value) });
  return Number(res.header.revision);
}

async function txnPut(entries: [string, Buffer][]): Promise<Revision> {
  const res = await client.kv.txn({
    success: entries.map(([key, value]) => ({ request_put: { key: Buffer.from(key), value } })),
  });
  return Number(res.header.revision);
}

describe('the etcd client', () => {
  it('reports the server version and whether its progress notifications are trustworthy', async () => {
    const version = await etcdVersion(client);
    expect(version).toMatch(/^3\.5\.\d+$/);
    expect(supportsConsistentCacheReads(version)).toBe(true);
  });
});

describe('listAt', () => {
  it('reads every page at the revision of the first page while writes continue', async () => {
    const prefix = '/list-pinned/';
    for (let i = 0; i < 40; i++) await put(`${prefix}${String(i).padStart(3, '0')}`, `v${i}`);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await put(`${prefix}${String(i % 60).padStart(3, '0')}`, `w${i}`);
    })();
    const listed = await listAt(client, prefix, { pageSize: 3 });
    writing = false;
    await writer;

    const truth = await client.kv.range({
      key: Buffer.from(prefix),
      range_end: prefixEnd(Buffer.from(prefix)),
      revision: listed.revision,
    });
    expect(listed.objects).toEqual(truth.kvs.map(kvToObject));
    expect(listed.objects.length).toBeGreaterThanOrEqual(40);
    expect(Number(truth.header.revision)).toBeGreaterThan(listed.revision); // writes did land meanwhile
  });

  it('returns the header revision and no objects for an empty prefix', async () => {
    const before = await put('/elsewhere', 'x');
    const listed = await listAt(client, '/list-empty/');
    expect(listed).toEqual({ revision: before, objects: [] });
  });
});

describe('listAt at a given revision', () => {
  it('throws Expired when etcd has compacted that revision', async () => {
    const old = await put('/list-expired/a', '1');
    const now = await put('/list-expired/a', '2');
    await client.kv.compact({ revision: now, physical: true });
    await expect(listAt(client, '/list-expired/', { revision: old })).rejects.toBeInstanceOf(Expired);
    expect((await listAt(client, '/list-expired/', { revision: now })).objects.map((o) => o.value)).toEqual([
      '2',
    ]);
  });
});

describe('currentRevision', () => {
  it('is never older than a write acknowledged before it', async () => {
    const written = await put('/current/a', '1');
    expect(await currentRevision(client, '/current/')).toBeGreaterThanOrEqual(written);
  });
});

describe('the watch stream', () => {
  it('delivers a txn of 100 keys as one batch at its revision, with puts then a delete carrying the last state', async () => {
    const stream = new WatchStream({ endpoints: etcd.endpoint });
    const prefix = '/watch-txn/';
    const start = (await put(`${prefix}seed`, 's0')) + 1;
    const rec = new Recorder();
    const watch = await stream.watch(prefix, start, rec);
    const txnRevision = await txnPut(
      Array.from({ length: 100 }, (_, i): [string, Buffer] => [`${prefix}k${i}`, Buffer.from(`v${i}`)]),
    );
    const deleteRevision = Number(
      (await client.kv.deleteRange({ key: Buffer.from(`${prefix}seed`) })).header.revision,
    );
    await rec.until(() => rec.batches.length >= 2);
    watch.close();
    stream.close();

    expect(rec.batches.map((b) => b.revision)).toEqual([txnRevision, deleteRevision]);
    const [txn, del] = rec.batches;
    expect(txn?.events).toHaveLength(100);
    expect(txn?.events.every((e) => e.type === 'PUT' && e.object.modRevision === txnRevision)).toBe(true);
    expect(del?.events).toEqual([
      {
        type: 'DELETE',
        object: {
          key: `${prefix}seed`,
          value: 's0',
          createRevision: start - 1,
          modRevision: deleteRevision,
          version: 0,
        },
        prev: {
          key: `${prefix}seed`,
          value: 's0',
          createRevision: start - 1,
          modRevision: start - 1,
          version: 1,
        },
      },
    ]);
  });

  it('reassembles revisions over 4 MB, fragmented by etcd, with every byte intact', async () => {
    const stream = new WatchStream({ endpoints: etcd.endpoint });
    const prefix = '/watch-big/';
    const rec = new Recorder();
    const start = (await currentRevision(client, prefix)) + 1;
    const watch = await stream.watch(prefix, start, rec);
    const first = Array.from({ length: 5 }, (_, i): [string, Buffer] => [
      `${prefix}${i}`,
      Buffer.alloc(MiB, 97 + i),
    ]);
    // The second txn overwrites them with random (non-UTF-8) bytes: with prev_kv its response is
    // ~10 MiB, over the 6 MiB limit, so etcd must fragment it.
    const second = first.map(([key]): [string, Buffer] => [key, randomBytes(MiB)]);
    const r1 = await txnPut(first);
    const r2 = await txnPut(second);
    await rec.until(() => rec.batches.length >= 2);
    watch.close();
    stream.close();

    expect(rec.batches.map((b) => b.revision)).toEqual([r1, r2]);
    expect(stream.stats.fragments).toBeGreaterThan(0);
    const [b1, b2] = rec.batches;
    // Compared as booleans: a deep diff of megabyte buffers takes seconds.
    const sameBytes = (
      events: readonly ChangeEvent[] | undefined,
      expected: [string, Buffer][],
      pick: (e: ChangeEvent) => Uint8Array,
    ) =>
      events?.length === expected.length &&
      events.every((e, i) => Buffer.from(pick(e)).equals(expected[i]?.[1] ?? Buffer.alloc(0)));
    const utf8 = (s: string | undefined) => Buffer.from(s ?? '', 'utf8');
    expect(sameBytes(b1?.events, first, (e) => utf8(e.object.value))).toBe(true);
    expect(sameBytes(b2?.events, second, (e) => base64ToBytes(e.object.valueBase64 ?? ''))).toBe(true);
    expect(sameBytes(b2?.events, first, (e) => utf8(e.prev?.value))).toBe(true);
    expect(b2?.events.map((e) => e.object.key)).toEqual(second.map(([key]) => key));
  });

  it('answers a progress request with the current revision when nothing changed', async () => {
    const stream = new WatchStream({ endpoints: etcd.endpoint });
    const rec = new Recorder();
    const elsewhere = await put('/not-watched', 'x');
    const watch = await stream.watch('/watch-progress/', elsewhere + 1, rec);
    const later = await put('/not-watched', 'y');
    watch.requestProgress();
    await rec.until(() => rec.progresses.length > 0);
    watch.close();
    stream.close();
    expect(rec.progresses[0]).toBeGreaterThanOrEqual(later);
    expect(rec.batches).toEqual([]);
  });

  it('ends as Compacted when the start revision was compacted', async () => {
    const stream = new WatchStream({ endpoints: etcd.endpoint });
    const old = await put('/watch-compacted/a', '1');
    const now = await put('/watch-compacted/a', '2');
    await client.kv.compact({ revision: now, physical: true });
    const rec = new Recorder();
    const opened: Watch | WatchEnded = await stream
      .watch('/watch-compacted/', old, rec)
      .catch((e: WatchEnded) => e);
    await rec.until(() => rec.endedWith !== undefined || opened instanceof Compacted);
    stream.close();
    const reason = opened instanceof Compacted ? opened : rec.endedWith;
    expect(reason).toBeInstanceOf(Compacted);
    expect((reason as Compacted).compactRevision).toBe(now);
    expect(rec.batches).toEqual([]);
  });

  it('ends as WatchBroken when the connection is cut, and reports nothing afterwards', async () => {
    const proxy = await startProxy(etcd.clientPort);
    const stream = new WatchStream({ endpoints: `http://127.0.0.1:${proxy.port}` });
    const rec = new Recorder();
    const start = (await currentRevision(client, '/watch-cut/')) + 1;
    await stream.watch('/watch-cut/', start, rec);
    const r = await put('/watch-cut/a', '1');
    await rec.until(() => rec.batches.length === 1);
    proxy.cutAll();
    await rec.until(() => rec.endedWith !== undefined);
    await put('/watch-cut/a', '2');
    stream.close();
    await proxy.close();
    expect(rec.endedWith).toBeInstanceOf(WatchBroken);
    expect(rec.batches.map((b) => b.revision)).toEqual([r]);
  });

  // Last: it restarts the shared etcd.
  it('keeps working right after etcd restarts: no retries, no circuit breaker left open', async () => {
    const own = createEtcdClient({ endpoints: etcd.endpoint, callTimeoutMs: 1_000 });
    await own.kv.put({ key: Buffer.from('/restart/a'), value: Buffer.from('1') });
    await etcd.kill();
    // Enough failures to open etcd3's default breaker (3 in a row, open for 5 s).
    for (let i = 0; i < 4; i++) {
      await expect(own.kv.range({ key: Buffer.from('/restart/a') })).rejects.toThrow();
    }
    await etcd.restart();
    const res = await own.kv.range({ key: Buffer.from('/restart/a') });
    own.close();
    expect(res.kvs.map((kv) => kv.value.toString())).toEqual(['1']);
  });
});
