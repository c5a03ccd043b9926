/**
 * A list is streamed in chunks from a snapshot (core/list-body.ts): while its body is being read,
 * etcd takes a storm of writes — values changed, keys deleted and created — and the body must
 * still be exactly etcd's state at the revision it names, at the relay and at the edge.
 */
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { listAt } from '../relay/etcd/lister.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const PREFIX = '/registry/';
const LIST = `${PREFIX}storm/`;
/**
 * A body of ~17 MB: more than the loopback socket buffers and the client's read-ahead hold, so
 * the tier writes most of it only as the client reads, and the client reads a chunk only after
 * one more write storm transaction.
 */
const KEYS = 15_000;
const value = (i: number, round: number) => `{"i":${i},"round":${round},"pad":"${'x'.repeat(1_000)}"}`;
const keyOf = (i: number) => `${LIST}${String(i).padStart(5, '0')}`;

interface Item {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
}

/** Transactions of puts, deletes and creates, one after another, until stopped. */
function writeStorm(client: Etcd3) {
  let round = 0;
  let stopped = false;
  let lastRevision = 0;
  let failed: unknown;
  let waiter: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  const done = (async () => {
    try {
      while (!stopped) {
        round++;
        const puts = new Set<number>();
        for (let j = 0; j < 20; j++) puts.add((round * 37 + j * 101) % KEYS);
        const ops: object[] = [...puts].map((i) => ({
          request_put: { key: Buffer.from(keyOf(i)), value: Buffer.from(value(i, round)) },
        }));
        // etcd refuses a txn that names one key twice.
        const gone = (round * 13 + 7) % KEYS;
        if (!puts.has(gone)) ops.push({ request_delete_range: { key: Buffer.from(keyOf(gone)) } });
        ops.push({
          request_put: { key: Buffer.from(`${LIST}new-${round}`), value: Buffer.from(value(-1, round)) },
        });
        const res = await client.kv.txn({ success: ops });
        lastRevision = Number(res.header.revision);
        waiter?.resolve();
      }
    } catch (error) {
      failed = error;
      waiter?.reject(error);
    }
  })();
  return {
    get lastRevision() {
      return lastRevision;
    },
    /** Resolves once the next transaction has been committed. */
    next: () =>
      new Promise<void>((resolve, reject) => {
        if (failed !== undefined) reject(failed);
        else waiter = { resolve, reject };
      }),
    stop: async () => {
      stopped = true;
      await done;
      if (failed !== undefined) throw failed;
    },
  };
}

describe('a list streamed under a concurrent write storm', () => {
  let stack: Stack;
  let seeded = 0;

  beforeAll(async () => {
    stack = await startStack({ prefixes: [PREFIX] });
    for (let from = 0; from < KEYS; from += 100) {
      const ops = [];
      for (let i = from; i < Math.min(KEYS, from + 100); i++) {
        ops.push({ request_put: { key: Buffer.from(keyOf(i)), value: Buffer.from(value(i, 0)) } });
      }
      seeded = Number((await stack.client.kv.txn({ success: ops })).header.revision);
    }
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const tiers = [
    ['relay', () => stack.relay.url],
    ['edge', () => stack.worker?.url ?? ''],
  ] as const;

  it.each(tiers)('is exactly one snapshot at the %s', { timeout: 120_000 }, async (tier, baseUrl) => {
    if (tier === 'edge') {
      await vi.waitFor(
        async () => {
          const res = await fetch(`${baseUrl()}/_replica/status${PREFIX}`);
          const status = (await res.json()) as { ready: boolean; revision: number };
          expect(status.ready && status.revision >= seeded).toBe(true);
        },
        { timeout: 60_000, interval: 50 },
      );
    }
    const storm = writeStorm(stack.client);
    const chunks: Uint8Array[] = [];
    let revision: number;
    let lastWrite: number;
    try {
      await storm.next();
      const res = await fetch(`${baseUrl()}/v1/list${LIST}?resourceVersion=0`);
      expect(res.status).toBe(200);
      expect(res.headers.get('X-Served-By')).toBe(tier);
      revision = Number(res.headers.get('X-Resource-Version'));
      const reader = res.body?.getReader();
      if (!reader) throw new Error('no body');
      for (;;) {
        const { value: chunk, done } = await reader.read();
        if (done) break;
        chunks.push(chunk);
        // Every few chunks the storm commits at least one more transaction.
        if (chunks.length % 4 === 0) await storm.next();
      }
      lastWrite = storm.lastRevision;
    } finally {
      await storm.stop();
    }
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      metadata: { resourceVersion: string };
      items: Item[];
    };

    // The stream really overlapped the writes: many chunks, and writes after its revision.
    expect(chunks.length).toBeGreaterThan(100);
    expect(lastWrite - revision).toBeGreaterThanOrEqual(Math.floor(chunks.length / 4));
    expect(body.metadata.resourceVersion).toBe(String(revision));

    // And it is etcd's state at exactly that revision: every key, value and revision.
    // (read page by page, pinned to that revision: the whole prefix is more than one gRPC message)
    const atRevision = await listAt(stack.client, LIST, { revision });
    const expected = atRevision.objects.map((o) => ({ ...o }));
    expect(body.items.length).toBe(expected.length);
    expect(body.items).toEqual(expected);
  });
});
