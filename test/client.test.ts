/**
 * `edgewatch/client` against real etcd, a real relay and the Worker in workerd: reads, pages,
 * watches and writes at both tiers through one client, typed Status errors, read-your-writes at
 * the edge, and the informer keeping a live copy of a prefix through a relay restart (a 410 and
 * a relist), and through cut connections without losing or repeating an event.
 */

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type ChangeEvent,
  EdgewatchClient,
  type Informer,
  isNotFound,
  isPreconditionFailed,
  type KvObject,
  StatusError,
} from 'edgewatch/client';
import { build } from 'esbuild';
import type { Etcd3 } from 'etcd3';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prefixEnd } from '../relay/etcd/lister.ts';
import { launchChromium } from './helpers/browser.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { startProxy } from './helpers/tcp-proxy.ts';
import { bundleScript } from './helpers/worker.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const PREFIX = '/registry/';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

const relay = () => new EdgewatchClient({ url: stack.relay.url });
const edge = () => new EdgewatchClient({ url: stack.worker?.url ?? '' });
const tiers = () => [
  { name: 'relay', client: relay() },
  { name: 'edge', client: edge() },
];

/** etcd's own state of a prefix at a revision, as the API's objects. */
async function etcdState(client: Etcd3, prefix: string, revision: number): Promise<KvObject[]> {
  const key = Buffer.from(prefix);
  const res = await client.kv.range({ key, range_end: prefixEnd(key), revision });
  return res.kvs.map((kv) => ({
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
  }));
}

/** What the handlers saw, one line per call, and the store they built up. */
function watchHandlers(informer: Informer) {
  const log: { type: string; key: string; revision: number }[] = [];
  informer.on('add', (o) => log.push({ type: 'add', key: o.key, revision: o.modRevision }));
  informer.on('update', (o) => log.push({ type: 'update', key: o.key, revision: o.modRevision }));
  informer.on('delete', (o) => log.push({ type: 'delete', key: o.key, revision: o.modRevision }));
  return log;
}

describe('EdgewatchClient', () => {
  it('gets, lists (whole, paged, one page), watches and writes at both tiers', async () => {
    for (const { name, client } of tiers()) {
      const dir = `${PREFIX}client-${name}/`;
      const written = [];
      for (const k of ['a', 'b', 'c', 'd', 'e']) written.push(await client.put(`${dir}${k}`, `value ${k}`));
      const last = written[written.length - 1]?.revision ?? 0;
      const got = await client.get(`${dir}c`, { minRevision: last });
      expect(got.object).toEqual(written[2]?.object);
      expect(got.revision).toBeGreaterThanOrEqual(last);

      const whole = await client.list(dir, { minRevision: last });
      expect(whole.items.map((o) => o.key)).toEqual(['a', 'b', 'c', 'd', 'e'].map((k) => `${dir}${k}`));
      const paged = await client.list(dir, { minRevision: last, pageSize: 2 });
      expect(paged.items).toEqual(whole.items);
      const page = await client.listPage(dir, { exactRevision: last, pageSize: 2 });
      expect(page.items.map((o) => o.key)).toEqual([`${dir}a`, `${dir}b`]);
      expect(page.revision).toBe(last);
      expect(page.remainingItemCount).toBe(3);
      const next = await client.listPage(dir, { continue: page.continue ?? '', pageSize: 2 });
      expect(next.items.map((o) => o.key)).toEqual([`${dir}c`, `${dir}d`]);
      expect(next.revision).toBe(last);

      const watch = await client.watch(dir, { resourceVersion: last });
      const changed = await client.put(`${dir}a`, 'changed', {
        ifMatch: written[0]?.object.modRevision ?? 0,
      });
      const removed = await client.delete(`${dir}b`);
      const seen: ChangeEvent[] = [];
      for await (const event of watch) {
        if (event.type === 'BOOKMARK') continue;
        seen.push(event);
        if (seen.length === 2) break;
      }
      watch.close();
      expect(seen).toEqual([
        { type: 'MODIFIED', object: changed.object, revision: changed.revision },
        { type: 'DELETED', object: removed.object, revision: removed.revision },
      ]);
    }
  });

  it('streams the initial state with sendInitialEvents, ending it with an initialEventsEnd bookmark', async () => {
    for (const { name, client } of tiers()) {
      const dir = `${PREFIX}initial-${name}/`;
      const a = await client.put(`${dir}a`, '1');
      const b = await client.put(`${dir}b`, '2');
      const watch = await client.watch(dir, { sendInitialEvents: true, resourceVersion: b.revision });
      const seen = [];
      for await (const event of watch) {
        seen.push(event);
        if (event.type === 'BOOKMARK' && event.object.initialEventsEnd) break;
      }
      watch.close();
      expect(seen.slice(0, 2)).toEqual([
        { type: 'ADDED', object: a.object, revision: a.revision },
        { type: 'ADDED', object: b.object, revision: b.revision },
      ]);
      expect(seen[2]).toMatchObject({ type: 'BOOKMARK', object: { initialEventsEnd: true } });
      expect(seen[2]?.revision).toBeGreaterThanOrEqual(b.revision);
    }
  });

  it('throws typed Status errors: 404, 412 for a stale ifMatch or an existing key with createOnly, 403', async () => {
    for (const { name, client } of tiers()) {
      const key = `${PREFIX}errors-${name}`;
      const missing = await client.get(key).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(StatusError);
      expect(isNotFound(missing)).toBe(true);
      expect((missing as StatusError).revision).toBeGreaterThan(0);
      const first = await client.put(key, '1', { createOnly: true });
      const again = await client.put(key, '2', { createOnly: true }).catch((e: unknown) => e);
      expect(isPreconditionFailed(again)).toBe(true);
      const second = await client.put(key, '2', { ifMatch: first.revision });
      const stale = await client.put(key, '3', { ifMatch: first.revision }).catch((e: unknown) => e);
      expect(isPreconditionFailed(stale)).toBe(true);
      expect((stale as StatusError).reason).toBe('PreconditionFailed');
      const staleDelete = await client.delete(key, { ifMatch: first.revision }).catch((e: unknown) => e);
      expect(isPreconditionFailed(staleDelete)).toBe(true);
      const deleted = await client.delete(key, { ifMatch: second.revision });
      expect(deleted.object).toMatchObject({ key, value: '2', modRevision: deleted.revision });
      const outside = await client.list('/elsewhere/').catch((e: unknown) => e);
      expect(outside).toMatchObject({ code: 403, reason: 'Forbidden' });
    }
  });

  it('reads its own writes at the edge: put, then get with minRevision', async () => {
    const client = edge();
    const key = `${PREFIX}configmaps/ryw-client`;
    await client.get(`${PREFIX}configmaps/warm`, { any: true }).catch(() => undefined);
    for (let i = 0; i < 10; i++) {
      const { object, revision } = await client.put(key, `{"n":${i}}`);
      const read = await client.get(key, { minRevision: revision });
      expect(read.object).toEqual(object);
    }
  });
});

describe('Informer', () => {
  it('keeps a live copy of a prefix at the edge that equals etcd at its revision', async () => {
    const writer = relay();
    const dir = `${PREFIX}informer-edge/`;
    for (const k of ['x', 'y']) await writer.put(`${dir}${k}`, 'initial');
    const informer = edge().informer(dir);
    const log = watchHandlers(informer);
    informer.start();
    try {
      await informer.waitForSync();
      expect(informer.hasSynced()).toBe(true);
      await writer.put(`${dir}x`, 'changed');
      await writer.delete(`${dir}y`);
      const { revision } = await writer.put(`${dir}z`, 'new');
      await informer.waitForRevision(revision);
      expect(informer.list()).toEqual(await etcdState(stack.client, dir, revision));
      expect(log.map((e) => `${e.type} ${e.key}`)).toEqual([
        `add ${dir}x`,
        `add ${dir}y`,
        `update ${dir}x`,
        `delete ${dir}y`,
        `add ${dir}z`,
      ]);
    } finally {
      await informer.stop();
    }
  });

  it('survives a relay restart: resumes, gets a 410 from the new relay, relists, and ends up equal to etcd', async () => {
    const dir = `${PREFIX}informer-restart/`;
    for (const k of ['a', 'b', 'c']) await relay().put(`${dir}${k}`, 'before');
    const informer = relay().informer(dir);
    const log = watchHandlers(informer);
    informer.start();
    try {
      await informer.waitForSync();
      await stack.stopRelay();
      // Changed while no relay runs: the new relay lists after them, so the informer's resume
      // point is older than its window (410).
      await stack.client.put(`${dir}a`).value('during');
      await stack.client.delete().key(`${dir}b`);
      await stack.client.put(`${dir}d`).value('during');
      await stack.restartRelay();
      const { revision } = await relay().put(`${dir}e`, 'after');
      await informer.waitForRevision(revision);
      expect(informer.list()).toEqual(await etcdState(stack.client, dir, revision));
      expect(informer.stats.expired).toBeGreaterThanOrEqual(1);
      expect(informer.stats.lists).toBeGreaterThanOrEqual(2);
      // Never a repeat: each key's adds and updates move strictly forward (a delete found by a
      // relist carries the last state the informer knew, so it may equal the previous one).
      const byKey = new Map<string, number>();
      for (const e of log) {
        const before = byKey.get(e.key) ?? 0;
        if (e.type === 'delete') expect(e.revision, `${e.type} ${e.key}`).toBeGreaterThanOrEqual(before);
        else expect(e.revision, `${e.type} ${e.key}`).toBeGreaterThan(before);
        byKey.set(e.key, e.revision);
      }
      expect(log.map((e) => `${e.type} ${e.key}`).slice(3)).toEqual(
        expect.arrayContaining([`update ${dir}a`, `delete ${dir}b`, `add ${dir}d`, `add ${dir}e`]),
      );
    } finally {
      await informer.stop();
    }
  });

  it('loses and repeats nothing when its connections are cut again and again', async () => {
    const dir = `${PREFIX}informer-cut/`;
    const proxy = await startProxy(stack.relay.port);
    const writer = relay();
    const informer = new EdgewatchClient({ url: `http://127.0.0.1:${proxy.port}` }).informer(dir);
    const log = watchHandlers(informer);
    informer.start();
    try {
      await informer.waitForSync();
      const expected: { type: string; key: string; revision: number }[] = [];
      const alive = new Set<string>();
      for (let i = 0; i < 60; i++) {
        if (i % 7 === 3) {
          // A transaction writes two keys at one revision: it must arrive whole, once.
          const keys = [`${dir}t${i}a`, `${dir}t${i}b`];
          const txn = await stack.client
            .if(keys[0] as string, 'Version', '==', 0)
            .then(...keys.map((k) => stack.client.put(k).value('txn')))
            .commit();
          for (const key of keys) {
            expected.push({ type: 'add', key, revision: Number(txn.header.revision) });
            alive.add(key);
          }
        } else if (i % 5 === 4 && alive.size > 0) {
          const key = [...alive][0] as string;
          alive.delete(key);
          const { revision } = await writer.delete(key);
          expected.push({ type: 'delete', key, revision });
        } else {
          const key = `${dir}k${i % 4}`;
          const { object, revision } = await writer.put(key, `v${i}`);
          expected.push({ type: object.version === 1 ? 'add' : 'update', key, revision });
          alive.add(key);
        }
        if (i % 6 === 5) proxy.cutAll();
      }
      const last = expected[expected.length - 1]?.revision ?? 0;
      await informer.waitForRevision(last);
      const order = (a: { revision: number; key: string }, b: { revision: number; key: string }) =>
        a.revision - b.revision || (a.key < b.key ? -1 : 1);
      expect([...log].sort(order)).toEqual([...expected].sort(order));
      expect(log.map((e) => e.revision)).toEqual([...log].sort(order).map((e) => e.revision));
      expect(informer.list()).toEqual(await etcdState(stack.client, dir, last));
      expect(informer.stats.expired).toBe(0);
      expect(informer.stats.watches).toBeGreaterThan(1);
    } finally {
      await informer.stop();
      await proxy.close();
    }
  });
});

describe('the client in a Worker', () => {
  it('keeps a live map of a prefix in a Durable Object, through the edge, and reads its own writes', async () => {
    const script = await bundleScript('test/fixtures/config-mirror-worker.ts');
    const mirror = new Miniflare({
      modules: [
        { type: 'ESModule', path: path.join(root, 'test/fixtures/config-mirror.js'), contents: script },
      ],
      compatibilityDate: '2026-04-01',
      durableObjects: { MIRROR: 'ConfigMirror' },
      bindings: { EDGEWATCH_URL: stack.worker?.url ?? '' },
    });
    try {
      const writer = edge();
      const key = `${PREFIX}configmaps/default/app`;
      const first = await writer.put(key, '{"replicas":3}');
      const read = async (minRevision: number) => {
        const res = await mirror.dispatchFetch(
          `http://mirror/?key=${encodeURIComponent(key)}&minRevision=${minRevision}`,
        );
        return (await res.json()) as { revision: number; object: KvObject | null; keys: string[] };
      };
      expect((await read(first.revision)).object).toEqual(first.object);
      const second = await writer.put(key, '{"replicas":4}', { ifMatch: first.revision });
      const after = await read(second.revision);
      expect(after.object).toEqual(second.object);
      expect(after.revision).toBeGreaterThanOrEqual(second.revision);
    } finally {
      await mirror.dispose();
    }
  });
});

describe('the client in a browser', () => {
  it('writes, reads its write and keeps an informer in headless Chromium, against the edge', async () => {
    const bundle = await build({
      entryPoints: [path.join(root, 'client/index.ts')],
      bundle: true,
      format: 'iife',
      globalName: 'edgewatch',
      platform: 'browser',
      target: 'es2022',
      write: false,
    });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      // The edge's own origin: the page's requests are same-origin (the Worker sends no CORS headers).
      await page.goto(`${stack.worker?.url}/healthz`);
      await page.addScriptTag({ content: bundle.outputFiles[0]?.text ?? '' });
      const result = await page.evaluate(async (prefix) => {
        const window = globalThis as unknown as {
          edgewatch: typeof import('../client/index.ts');
          location: { origin: string };
        };
        const client = new window.edgewatch.EdgewatchClient({ url: window.location.origin });
        const informer = client.informer(prefix).start();
        await informer.waitForSync();
        const written = await client.put(`${prefix}page`, 'from the browser');
        const read = await client.get(`${prefix}page`, { minRevision: written.revision });
        await informer.waitForRevision(written.revision);
        const seen = informer.get(`${prefix}page`);
        await informer.stop();
        return { written, read: read.object, seen };
      }, `${PREFIX}browser/`);
      expect(result.read).toEqual(result.written.object);
      expect(result.seen).toEqual(result.written.object);
      expect(result.written.object.value).toBe('from the browser');
    } finally {
      await browser.close();
    }
  });
});
