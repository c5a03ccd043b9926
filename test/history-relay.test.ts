/**
 * The relay never serves another etcd history (API.md "Histories", issue 10), against a real
 * etcd that is wiped and restored from snapshots under it: after each, most-recent reads are
 * etcd's new state at once, the cache relists, its watches end with 410, and a self-check
 * finds a planted corruption of the cache within one period. The relay reaches etcd through a
 * TCP proxy, so a test can keep it from looking while etcd's history moves on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeObject } from '../core/object.ts';
import { parseConfig } from '../relay/config.ts';
import type { HistoryGuardStatus } from '../relay/history-guard.ts';
import { jsonLogger, silentLogger } from '../relay/log.ts';
import { type RunningRelay, startRelay } from '../relay/server.ts';
import { restoreMember, saveSnapshot, wipeMember } from '../scripts/lib/etcd-history.ts';
import { type EtcdProcess, startEtcd } from '../scripts/lib/etcd-process.ts';
import { WatchReader } from './contract/watch-reader.ts';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

const PREFIX = '/registry/';
const SELF_CHECK_MS = 400;

interface Item {
  key: string;
  value?: string;
  modRevision: number;
}

let etcd: EtcdProcess;
let proxy: TcpProxy;
let relay: RunningRelay;
let client: Etcd3;
let scratch: string;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'edgewatch-history-'));
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.endpoint });
  proxy = await startProxy(etcd.clientPort);
  const config = parseConfig(
    [
      ...['--port', '0', '--etcd', `http://127.0.0.1:${proxy.port}`, '--prefix', PREFIX],
      ...['--insecure-no-auth', '--self-check-interval-ms', String(SELF_CHECK_MS)],
    ],
    {},
  );
  relay = await startRelay(config, process.env.HISTORY_DEBUG ? jsonLogger('relay') : silentLogger);
  await relay.ready();
}, 60_000);

afterAll(async () => {
  await relay?.stop();
  client?.close();
  await proxy?.close();
  await etcd?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** etcd's own state under the prefix, and its revision. */
async function etcdState(): Promise<{ revision: number; items: Item[] }> {
  const res = await client.kv.range({ key: Buffer.from(PREFIX), range_end: Buffer.from('/registry0') });
  return {
    revision: Number(res.header.revision),
    items: res.kvs.map((kv) => ({
      key: kv.key.toString(),
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
    })),
  };
}

async function relayList(query = ''): Promise<{ status: number; revision: number; items: Item[] }> {
  const res = await fetch(`${relay.url}/v1/list${PREFIX}${query}`);
  const body = (await res.json()) as { items?: Item[] };
  return {
    status: res.status,
    revision: Number(res.headers.get('X-Resource-Version')),
    items: (body.items ?? []).map(({ key, value, modRevision }) => ({ key, value, modRevision })),
  };
}

async function guard(): Promise<HistoryGuardStatus> {
  const res = await fetch(`${relay.url}/_relay/status`);
  const body = (await res.json()) as { prefixes: { prefix: string; history: HistoryGuardStatus }[] };
  const entry = body.prefixes.find((p) => p.prefix === PREFIX);
  if (!entry) throw new Error('no status for the prefix');
  return entry.history;
}

async function putMany(prefix: string, n: number): Promise<number> {
  let revision = 0;
  for (let i = 0; i < n; i++) {
    const res = await client.put(`${PREFIX}${prefix}${i}`).value(`v${i}`).exec();
    revision = Number(res.header.revision);
  }
  return revision;
}

/** Waits until the relay's cache (rv=0) holds exactly what etcd holds. */
async function cacheMatchesEtcd(what: string): Promise<void> {
  await vi.waitFor(async () => {
    const relay = await relayList('?resourceVersion=0');
    const etcd = await etcdState();
    expect(relay.status, what).toBe(200);
    expect(JSON.stringify(relay.items), what).toBe(JSON.stringify(etcd.items));
  }, 20_000);
}

describe('the relay across etcd histories', () => {
  it('etcd wiped under a running relay: the next most-recent read is the new state, watches end with 410', {
    timeout: 60_000,
  }, async () => {
    const old = await putMany('wipe/a', 20);
    await expect
      .poll(async () => (await relayList('?resourceVersion=0')).revision, { message: 'the relay caught up' })
      .toBeGreaterThanOrEqual(old);
    const watch = await WatchReader.open(`${relay.url}/v1/list${PREFIX}?watch=true&resourceVersion=${old}`);
    const before = (await guard()).historyChanges;

    await wipeMember(etcd);
    await putMany('wipe/b', 3);
    const truth = await etcdState();
    expect(truth.revision).toBeLessThan(old);

    // At once: the quorum read shows etcd behind the cache, so the read is not served from it.
    const fresh = await relayList();
    expect(fresh.status).toBe(200);
    expect(fresh.items).toEqual(truth.items);
    expect(fresh.revision).toBeLessThanOrEqual((await etcdState()).revision);

    const ended = await watch.until((e) => e.type === 'ERROR', 15_000);
    expect(ended.at(-1)?.object).toMatchObject({ code: 410, reason: 'Expired' });
    watch.close();
    await cacheMatchesEtcd('the cache relisted after the wipe');
    expect((await guard()).historyChanges).toBeGreaterThan(before);
  });

  it('etcd restored from an older snapshot that passed the cache’s revision before the relay looked: the digest at that revision tells', {
    timeout: 60_000,
  }, async () => {
    await putMany('restore/a', 5);
    const snapshot = path.join(scratch, 'older.db');
    await saveSnapshot(etcd.endpoint, snapshot);
    const cached = await putMany('restore/b', 10);
    await expect
      .poll(async () => (await relayList('?resourceVersion=0')).revision, { message: 'the relay caught up' })
      .toBeGreaterThanOrEqual(cached);
    const before = (await guard()).historyChanges;

    // The relay sees nothing while etcd goes back and then beyond the cache's revision.
    proxy.pause();
    await restoreMember(etcd, snapshot);
    const restoredAt = (await etcdState()).revision;
    expect(restoredAt).toBeLessThan(cached);
    await putMany('restore/c', cached - restoredAt + 5);
    const truth = await etcdState();
    expect(truth.revision).toBeGreaterThan(cached);
    proxy.cutAll();
    proxy.resume();

    await cacheMatchesEtcd('the cache relisted after the restore');
    const status = await guard();
    expect(status.historyChanges).toBeGreaterThan(before);
    // No key of the abandoned branch (restore/b) survives.
    expect((await relayList()).items.some((i) => i.key.includes('restore/b'))).toBe(false);
  });

  it('etcd restored with --bump-revision --mark-compacted: the cache relists at the bumped revision', {
    timeout: 60_000,
  }, async () => {
    const snapshot = path.join(scratch, 'bump.db');
    await saveSnapshot(etcd.endpoint, snapshot);
    const cached = await putMany('bump/a', 5);
    await expect
      .poll(async () => (await relayList('?resourceVersion=0')).revision, { message: 'the relay caught up' })
      .toBeGreaterThanOrEqual(cached);
    const watch = await WatchReader.open(
      `${relay.url}/v1/list${PREFIX}?watch=true&resourceVersion=${cached}`,
    );

    await restoreMember(etcd, snapshot, { bumpRevision: 1_000 });
    const ended = await watch.until((e) => e.type === 'ERROR', 15_000);
    expect(ended.at(-1)?.object).toMatchObject({ code: 410 });
    watch.close();
    await cacheMatchesEtcd('the cache relisted after the bumped restore');
    expect((await relayList('?resourceVersion=0')).revision).toBeGreaterThan(cached + 900);
    // A revision of the old branch is compacted in the new history: 410, not the old state.
    const exact = await fetch(
      `${relay.url}/v1/list${PREFIX}?resourceVersion=${cached}&resourceVersionMatch=Exact`,
    );
    expect(exact.status).toBe(410);
  });

  it('a self-check finds an object changed in the relay’s cache and repairs it within one period', {
    timeout: 30_000,
  }, async () => {
    await putMany('corrupt/', 3);
    await cacheMatchesEtcd('the relay caught up');
    const before = await guard();
    const cache = relay.caches.get(PREFIX)?.cache;
    if (!cache) throw new Error('no cache');
    const victim = cache.snapshot().get(`${PREFIX}corrupt/1`);
    if (!victim) throw new Error('no victim');
    cache.corruptForTest(
      makeObject({ ...victim, value: new TextEncoder().encode('planted'), lease: undefined }),
    );
    expect((await relayList('?resourceVersion=0')).items.find((i) => i.key === victim.key)?.value).toBe(
      'planted',
    );

    const after = await vi.waitFor(async () => {
      const g = await guard();
      expect(g.mismatches, 'the self-check found it').toBeGreaterThan(before.mismatches);
      return g;
    }, 10_000);
    expect(after.lastReason ?? '').toContain('differ');
    await cacheMatchesEtcd('the cache was repaired');
    await vi.waitFor(async () => {
      const g = await guard();
      expect(g.ok, 'a good check after the repair').toBeGreaterThan(after.ok);
      expect(g.lastResult).toBe('ok');
    }, 10_000);
    expect((await guard()).lastGoodAt).toBeGreaterThan(0);
  });

  it('an Exact list or continue token at a revision etcd compacted is 410 although the window holds it; a watch from there works', {
    timeout: 30_000,
  }, async () => {
    const first = await putMany('compact/a', 4);
    const page = await fetch(`${relay.url}/v1/list${PREFIX}?limit=1`);
    expect(page.status).toBe(200);
    const token = ((await page.json()) as { metadata: { continue?: string } }).metadata.continue;
    expect(token).toBeTruthy();
    const head = await putMany('compact/b', 3);
    await expect
      .poll(async () => (await relayList('?resourceVersion=0')).revision, { message: 'the relay caught up' })
      .toBeGreaterThanOrEqual(head);
    const exactUrl = `${relay.url}/v1/list${PREFIX}?resourceVersion=${first}&resourceVersionMatch=Exact`;
    expect((await fetch(exactUrl)).status).toBe(200);

    await client.kv.compact({ revision: head });
    const exact = await fetch(exactUrl);
    expect(exact.status).toBe(410);
    expect(await exact.json()).toMatchObject({ reason: 'Expired' });
    const next = await fetch(
      `${relay.url}/v1/list${PREFIX}?limit=1&continue=${encodeURIComponent(token ?? '')}`,
    );
    expect(next.status).toBe(410);
    // The window still serves watches from there, as etcd's own watch cache does.
    const watch = await WatchReader.open(`${relay.url}/v1/list${PREFIX}?watch=true&resourceVersion=${first}`);
    const events = await watch.take(3);
    expect(events.map((e) => e.object.key)).toEqual([0, 1, 2].map((i) => `${PREFIX}compact/b${i}`));
    watch.close();
  });
});
