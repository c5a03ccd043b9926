/**
 * The edge never serves another etcd history (API.md "Histories", issue 10), against a real etcd
 * wiped and restored under a real relay and a real Worker in workerd: while everything runs,
 * and while everything is stopped (the replica then warm-starts with a SQLite state from the old
 * history, which it must never serve). And a corruption planted in a replica's SQLite and memory
 * is found by its self-check within one period. One stack for the whole file.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { restoreMember, saveSnapshot, wipeMember } from '../scripts/lib/etcd-history.ts';
import type { ReplicaHistoryStatus } from '../worker/replica-history.ts';
import { WatchReader } from './contract/watch-reader.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const PREFIX = '/registry/';
const SELF_CHECK_MS = 300;

interface Item {
  key: string;
  value?: string;
  modRevision: number;
}

let stack: Stack;
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'edgewatch-history-edge-'));
  stack = await startStack({
    relayArgs: ['--self-check-interval-ms', String(SELF_CHECK_MS)],
    workerVars: { EDGE_SELF_CHECK_MS: String(SELF_CHECK_MS), EDGEWATCH_TEST_HOOKS: '1', EDGE_WAIT_MS: '500' },
  });
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

const edgeUrl = () => stack.worker?.url ?? '';

/** Polls `read` until `ok` holds (failing with the last value after `timeout`): no sleeps. */
function eventually<T>(
  read: () => Promise<T>,
  ok: (value: T) => boolean,
  what: string,
  timeout = 20_000,
): Promise<T> {
  return vi.waitFor(
    async () => {
      const value = await read();
      expect(ok(value), `${what}: ${JSON.stringify(value)}`).toBe(true);
      return value;
    },
    { timeout, interval: 50 },
  );
}

async function etcdState(): Promise<{ revision: number; items: Item[] }> {
  const res = await stack.client.kv.range({ key: Buffer.from(PREFIX), range_end: Buffer.from('/registry0') });
  return {
    revision: Number(res.header.revision),
    items: res.kvs.map((kv) => ({
      key: kv.key.toString(),
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
    })),
  };
}

async function edgeList(
  query = '',
): Promise<{ status: number; servedBy: string; revision: number; items: Item[] }> {
  const res = await fetch(`${edgeUrl()}/v1/list${PREFIX}${query}`);
  const body = (await res.json()) as { items?: Item[] };
  return {
    status: res.status,
    servedBy: res.headers.get('X-Served-By') ?? '',
    revision: Number(res.headers.get('X-Resource-Version')),
    items: (body.items ?? []).map(({ key, value, modRevision }) => ({ key, value, modRevision })),
  };
}

async function replica(): Promise<{
  revision: number;
  ready: boolean;
  connected: boolean;
  history: ReplicaHistoryStatus;
}> {
  const res = await fetch(`${edgeUrl()}/_replica/status${PREFIX}`);
  return (await res.json()) as {
    revision: number;
    ready: boolean;
    connected: boolean;
    history: ReplicaHistoryStatus;
  };
}

async function putMany(name: string, n: number): Promise<number> {
  let revision = 0;
  for (let i = 0; i < n; i++) {
    const res = await stack.client.put(`${PREFIX}${name}${i}`).value(`v${i}`).exec();
    revision = Number(res.header.revision);
  }
  return revision;
}

/** The edge replica (rv=0, served by the edge itself) holds exactly what etcd holds. */
async function edgeMatchesEtcd(what: string): Promise<void> {
  await eventually(
    async () => ({ edge: await edgeList('?resourceVersion=0'), etcd: await etcdState() }),
    (s) =>
      s.edge.status === 200 &&
      s.edge.servedBy === 'edge' &&
      JSON.stringify(s.edge.items) === JSON.stringify(s.etcd.items),
    what,
    30_000,
  );
}

/** Every rv=0 answer the edge gives from now on carries none of `keys` (the old history's). */
function expectNone(items: readonly Item[], marker: string): void {
  expect(items.filter((i) => i.key.includes(marker))).toEqual([]);
}

describe('the edge across etcd histories', () => {
  it('etcd wiped while everything runs: most-recent reads are the new state at once, watches end with 410', {
    timeout: 90_000,
  }, async () => {
    const old = await putMany('run/old', 20);
    await eventually(
      replica,
      (r) => r.revision >= old && r.history.verified,
      'the replica caught up',
      20_000,
    );
    const watch = await WatchReader.open(`${edgeUrl()}/v1/list${PREFIX}?watch=true&resourceVersion=${old}`);
    const repairsBefore = (await replica()).history.repairs;

    await wipeMember(stack.etcd);
    await putMany('run/new', 3);
    const truth = await etcdState();
    expect(truth.revision).toBeLessThan(old);

    const fresh = await edgeList();
    expect(fresh.status).toBe(200);
    expect(fresh.items).toEqual(truth.items);
    const ended = await watch.until((e) => e.type === 'ERROR', 20_000);
    expect(ended.at(-1)?.object).toMatchObject({ code: 410, reason: 'Expired' });
    watch.close();
    await edgeMatchesEtcd('the replica took the new history');
    expectNone((await edgeList('?resourceVersion=0')).items, 'run/old');
    expect((await replica()).history.repairs).toBeGreaterThan(repairsBefore);
  });

  it('etcd wiped while everything was stopped: the replica warm-starts on the old history’s SQLite and never serves it', {
    timeout: 90_000,
  }, async () => {
    const old = await putMany('stopped/old', 30);
    await eventually(
      replica,
      (r) => r.revision >= old && r.history.verified,
      'the replica caught up',
      20_000,
    );
    await stack.worker?.suspend();
    await stack.stopRelay();
    await wipeMember(stack.etcd);
    await putMany('stopped/new', 2);
    await stack.restartRelay();
    await stack.worker?.restart();

    // The very first read after the warm start must not come from the stored (old) state.
    const first = await edgeList('?resourceVersion=0');
    expect(first.status).toBe(200);
    expectNone(first.items, 'stopped/old');
    expect(first.revision).toBeLessThanOrEqual((await etcdState()).revision);
    await edgeMatchesEtcd('the replica took the new history');
    expect((await replica()).history.repairs).toBeGreaterThan(0);
  });

  it('etcd restored from an older snapshot (no bump) and written past the replica’s revision while stopped: the digest tells', {
    timeout: 90_000,
  }, async () => {
    await putMany('restore/keep', 3);
    const snapshot = path.join(scratch, 'older.db');
    await saveSnapshot(stack.etcd.endpoint, snapshot);
    const cached = await putMany('restore/lost', 10);
    await eventually(
      replica,
      (r) => r.revision >= cached && r.history.verified,
      'the replica caught up',
      20_000,
    );
    await stack.worker?.suspend();
    await stack.stopRelay();
    await restoreMember(stack.etcd, snapshot);
    const restored = (await etcdState()).revision;
    await putMany('restore/other', cached - restored + 3);
    expect((await etcdState()).revision).toBeGreaterThan(cached);
    await stack.restartRelay();
    await stack.worker?.restart();

    const first = await edgeList('?resourceVersion=0');
    expect(first.status).toBe(200);
    expectNone(first.items, 'restore/lost');
    await edgeMatchesEtcd('the replica took the restored history');
  });

  it('etcd restored with --bump-revision --mark-compacted while everything runs: the edge follows, old revisions are 410', {
    timeout: 90_000,
  }, async () => {
    const snapshot = path.join(scratch, 'bump.db');
    await saveSnapshot(stack.etcd.endpoint, snapshot);
    const cached = await putMany('bump/lost', 5);
    await eventually(
      replica,
      (r) => r.revision >= cached && r.history.verified,
      'the replica caught up',
      20_000,
    );
    await restoreMember(stack.etcd, snapshot, { bumpRevision: 1_000 });
    await edgeMatchesEtcd('the replica took the bumped history');
    expectNone((await edgeList('?resourceVersion=0')).items, 'bump/lost');
    const exact = await fetch(
      `${edgeUrl()}/v1/list${PREFIX}?resourceVersion=${cached}&resourceVersionMatch=Exact`,
    );
    expect(exact.status).toBe(410);
  });

  it('a self-check finds an object changed in the replica’s SQLite and memory and repairs it within one period', {
    timeout: 60_000,
  }, async () => {
    await putMany('corrupt/', 3);
    await edgeMatchesEtcd('the replica caught up');
    const before = (await replica()).history;
    const key = `${PREFIX}corrupt/1`;
    const planted = await fetch(
      `${edgeUrl()}/_replica/corrupt${PREFIX}?key=${encodeURIComponent(key)}&value=planted`,
    );
    expect(planted.status).toBe(200);
    await planted.body?.cancel();
    const after = await eventually(
      replica,
      (r) => r.history.selfMismatches > before.selfMismatches,
      'the self-check found the planted object',
      20_000,
    );
    expect(after.history.lastRepairReason ?? '').toContain('self-check');
    await edgeMatchesEtcd('the replica repaired itself from a snapshot');
    expect((await edgeList('?resourceVersion=0')).items.find((i) => i.key === key)?.value).toBe('v1');
  });
});
