/**
 * The reflector against a real etcd under faults: SIGKILL and restart, connections cut during a
 * 20,000-event catch-up, a black-holed connection, compaction past the watch position, and
 * revisions too large for gRPC's default limit. After each, the cache must equal a fresh etcd
 * range at the cache's revision, and its batches must be exactly the revisions the test wrote:
 * strictly increasing, none lost, none twice.
 */
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareKeys } from '../core/keys.ts';
import type { CacheSink, KvObject, Revision, RevisionBatch } from '../core/types.ts';
import { createEtcdClient } from '../relay/etcd/client.ts';
import { etcdListerWatcher } from '../relay/etcd/list-watch.ts';
import { kvToObject, prefixEnd } from '../relay/etcd/lister.ts';
import { WatchStream } from '../relay/etcd/watch-stream.ts';
import { Reflector, type ReflectorOptions } from '../relay/reflector.ts';
import { type EtcdProcess, startEtcd } from '../scripts/lib/etcd-process.ts';
import { startProxy } from './helpers/tcp-proxy.ts';

const MiB = 1024 * 1024;

let etcd: EtcdProcess;
let client: Etcd3;

beforeAll(async () => {
  etcd = await startEtcd({ extraArgs: ['--max-request-bytes', String(6 * MiB), '--unsafe-no-fsync'] });
  client = createEtcdClient({ endpoints: etcd.endpoint });
});

afterAll(async () => {
  client?.close();
  await etcd?.stop();
});

/**
 * The reference model: a map from key to object, checking every call against the CacheSink
 * contract and every event against the state it changes (a lost event shows up as a `prev` that
 * does not match).
 */
class ModelSink implements CacheSink {
  state = new Map<string, KvObject>();
  revision: Revision = 0;
  readonly replaces: Revision[] = [];
  /** Batch revisions since the last replace. */
  applied: Revision[] = [];
  readonly violations: string[] = [];
  /** Called after each apply, for tests that inject faults at a given point. */
  onApply: (batch: RevisionBatch) => void = () => {};
  private waiters: (() => void)[] = [];

  replace(revision: Revision, objects: readonly KvObject[]) {
    this.state = new Map(objects.map((o) => [o.key, o]));
    this.revision = revision;
    this.replaces.push(revision);
    this.applied = [];
    this.notify();
  }
  apply(batch: RevisionBatch) {
    if (batch.revision <= this.revision)
      this.violations.push(`batch ${batch.revision} after ${this.revision}`);
    for (const event of batch.events) {
      const key = event.object.key;
      const before = this.state.get(key);
      if (event.object.modRevision !== batch.revision)
        this.violations.push(`${key} modRevision in ${batch.revision}`);
      if (before?.modRevision !== event.prev?.modRevision) {
        this.violations.push(
          `${key} at ${batch.revision}: prev ${event.prev?.modRevision} but held ${before?.modRevision}`,
        );
      }
      if (event.type === 'PUT') this.state.set(key, event.object);
      else this.state.delete(key);
    }
    this.revision = batch.revision;
    this.applied.push(batch.revision);
    this.onApply(batch);
    this.notify();
  }
  progress(revision: Revision) {
    if (revision < this.revision) this.violations.push(`progress ${revision} below ${this.revision}`);
    this.revision = revision;
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

/** Log lines, kept for assertions; `until` waits for a line to match. */
function recordingLog() {
  const lines: string[] = [];
  let waiters: (() => void)[] = [];
  const rec = (msg: string, fields?: object) => {
    lines.push(`${msg} ${JSON.stringify(fields ?? {})}`);
    for (const waiter of [...waiters]) waiter();
  };
  const until = (match: (line: string) => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (!lines.some(match)) return;
        waiters = waiters.filter((w) => w !== check);
        resolve();
      };
      waiters.push(check);
      check();
    });
  return { lines, until, info: rec, warn: rec, error: rec };
}

interface Harness {
  sink: ModelSink;
  reflector: Reflector;
  log: ReturnType<typeof recordingLog>;
  stop(): Promise<void>;
}

async function startReflector(
  prefix: string,
  endpoint: string,
  options: Partial<ReflectorOptions> = {},
): Promise<Harness> {
  const sink = new ModelSink();
  const log = recordingLog();
  const stream = new WatchStream({ endpoints: endpoint, callTimeoutMs: 3_000 });
  const listClient = createEtcdClient({ endpoints: endpoint, callTimeoutMs: 3_000 });
  const reflector = new Reflector({
    listerWatcher: etcdListerWatcher({ client: listClient, watchStream: stream, prefix, pageSize: 500 }),
    sink,
    log,
    initialBackoffMs: 20,
    maxBackoffMs: 500,
    ...options,
  });
  reflector.start();
  await reflector.ready;
  return {
    sink,
    reflector,
    log,
    async stop() {
      await reflector.stop();
      stream.close();
      listClient.close();
    },
  };
}

/** Puts `count` keys (cycling over `keys` names) `concurrency` at a time; returns their revisions. */
async function writeMany(prefix: string, count: number, keys = 500, concurrency = 64): Promise<Revision[]> {
  const revisions: Revision[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const res = await client.kv.put({
        key: Buffer.from(`${prefix}${i % keys}`),
        value: Buffer.from(`v${i}`),
      });
      revisions.push(Number(res.header.revision));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return revisions.sort((a, b) => a - b);
}

/** The cache equals etcd at the cache's revision, and broke no rule on the way. */
async function expectEqualsEtcd(sink: ModelSink, prefix: string): Promise<void> {
  expect(sink.violations).toEqual([]);
  const truth = await client.kv.range({
    key: Buffer.from(prefix),
    range_end: prefixEnd(Buffer.from(prefix)),
    revision: sink.revision,
  });
  const cached = [...sink.state.values()].sort((a, b) => compareKeys(a.key, b.key));
  expect(cached.length).toBe(truth.kvs.length);
  expect(cached).toEqual(truth.kvs.map(kvToObject));
}

describe('the reflector against etcd', () => {
  it('loses and repeats nothing when etcd is SIGKILLed and restarted mid-watch', async () => {
    const prefix = '/kill/';
    const proxy = await startProxy(etcd.clientPort);
    const h = await startReflector(prefix, `http://127.0.0.1:${proxy.port}`);
    const start = h.sink.revision;
    // Hold the watch back while writing, then let it catch up and kill etcd a quarter of the way in.
    proxy.pause();
    const before = await writeMany(prefix, 2_000);
    const killAt = before[500] ?? 0;
    let killed: Promise<void> | undefined;
    let seenAtKill = 0;
    h.sink.onApply = (batch) => {
      if (killed === undefined && batch.revision >= killAt) {
        seenAtKill = batch.revision;
        killed = etcd.kill();
      }
    };
    proxy.resume();
    await h.sink.until(() => killed !== undefined);
    await killed;
    await etcd.restart();
    // The writer's channel saw the crash too; a fresh client keeps its writes unambiguous.
    client.close();
    client = createEtcdClient({ endpoints: etcd.endpoint });
    const after = await writeMany(prefix, 1_000);
    const last = after[after.length - 1] ?? 0;
    await h.sink.until(() => h.sink.revision >= last);
    await h.stop();
    await proxy.close();

    expect(seenAtKill).toBeLessThan(before[before.length - 1] ?? 0);
    expect(h.sink.replaces).toEqual([start]);
    expect(h.sink.applied).toEqual([...before, ...after]);
    expect(h.log.lines.some((l) => l.startsWith('watch broken'))).toBe(true);
    await expectEqualsEtcd(h.sink, prefix);
  });

  it('loses and repeats nothing when connections are cut during a 20,000-event catch-up', async () => {
    const prefix = '/catchup/';
    const proxy = await startProxy(etcd.clientPort);
    const h = await startReflector(prefix, `http://127.0.0.1:${proxy.port}`);
    const start = h.sink.revision;
    // Held back by the paused proxy, every write below is history by the time the watch resumes.
    proxy.pause();
    const written = await writeMany(prefix, 20_000);
    const cuts = [start + 5_000, start + 12_000];
    h.sink.onApply = (batch) => {
      if (cuts[0] !== undefined && batch.revision >= cuts[0]) {
        cuts.shift();
        proxy.cutAll();
      }
    };
    proxy.cutAll();
    proxy.resume();
    const last = written[written.length - 1] ?? 0;
    await h.sink.until(() => h.sink.revision >= last);
    await h.stop();
    await proxy.close();

    expect(cuts).toEqual([]); // both cuts happened mid catch-up
    expect(h.sink.replaces).toEqual([start]);
    expect(h.sink.applied).toEqual(written);
    expect(h.log.lines.filter((l) => l.startsWith('watch broken')).length).toBeGreaterThanOrEqual(3);
    await expectEqualsEtcd(h.sink, prefix);
  });

  it('detects a black-holed connection by its silence and resumes where it stopped', async () => {
    const prefix = '/blackhole/';
    const proxy = await startProxy(etcd.clientPort);
    const h = await startReflector(prefix, `http://127.0.0.1:${proxy.port}`, {
      progressIntervalMs: 100,
      silenceTimeoutMs: 500,
    });
    const first = await writeMany(prefix, 10);
    await h.sink.until(() => h.sink.revision >= (first[first.length - 1] ?? 0));
    proxy.pause();
    const during = await writeMany(prefix, 10);
    await h.log.until((l) => l.startsWith('watch broken') && l.includes('no message'));
    // The abandoned watch took its connection with it; the next attempt dials a fresh one, which
    // the proxy forwards once the black hole ends.
    proxy.resume();
    await h.sink.until(() => h.sink.revision >= (during[during.length - 1] ?? 0));
    await h.stop();
    await proxy.close();

    expect(h.sink.applied).toEqual([...first, ...during]);
    await expectEqualsEtcd(h.sink, prefix);
  });

  it('relists when etcd compacted past the watch position, ending equal to etcd', async () => {
    const prefix = '/compact/';
    const proxy = await startProxy(etcd.clientPort);
    const h = await startReflector(prefix, `http://127.0.0.1:${proxy.port}`);
    const warm = await writeMany(prefix, 100, 50);
    await h.sink.until(() => h.sink.revision >= (warm[warm.length - 1] ?? 0));
    proxy.pause();
    await writeMany(prefix, 300, 80);
    const deleted = await client.kv.deleteRange({
      key: Buffer.from(`${prefix}1`),
      range_end: prefixEnd(Buffer.from(`${prefix}1`)),
    });
    const compactAt = Number(deleted.header.revision);
    await client.kv.compact({ revision: compactAt, physical: true });
    proxy.cutAll();
    proxy.resume();
    await h.sink.until(() => h.sink.replaces.length === 2 && h.sink.revision >= compactAt);
    await h.stop();
    await proxy.close();

    expect(h.sink.replaces[1]).toBeGreaterThanOrEqual(compactAt);
    expect(
      h.log.lines.some(
        (l) => l.startsWith('watch compacted') && l.includes(`"compactRevision":${compactAt}`),
      ),
    ).toBe(true);
    await expectEqualsEtcd(h.sink, prefix);
  });

  it('delivers a txn of 100 keys as one batch', async () => {
    const prefix = '/txn100/';
    const h = await startReflector(prefix, etcd.endpoint);
    const batches: RevisionBatch[] = [];
    h.sink.onApply = (batch) => batches.push(batch);
    const res = await client.kv.txn({
      success: Array.from({ length: 100 }, (_, i) => ({
        request_put: { key: Buffer.from(`${prefix}${i}`), value: Buffer.from(`v${i}`) },
      })),
    });
    const revision = Number(res.header.revision);
    await h.sink.until(() => h.sink.revision >= revision);
    await h.stop();

    expect(batches.map((b) => [b.revision, b.events.length])).toEqual([[revision, 100]]);
    await expectEqualsEtcd(h.sink, prefix);
  });

  it('delivers a revision of 5 × 1 MB values intact, over gRPC’s 4 MB default limit', async () => {
    const prefix = '/big/';
    const h = await startReflector(prefix, etcd.endpoint);
    const values = Array.from({ length: 5 }, (_, i) => `${String.fromCharCode(65 + i)}`.repeat(MiB));
    const res = await client.kv.txn({
      success: values.map((value, i) => ({
        request_put: { key: Buffer.from(`${prefix}${i}`), value: Buffer.from(value) },
      })),
    });
    const revision = Number(res.header.revision);
    await h.sink.until(() => h.sink.revision >= revision);
    await h.stop();

    expect(h.sink.applied).toEqual([revision]);
    // Compared as booleans: a deep diff of megabyte strings is slow and unreadable.
    expect(values.every((value, i) => h.sink.state.get(`${prefix}${i}`)?.value === value)).toBe(true);
    await expectEqualsEtcd(h.sink, prefix);
  });
});
