/**
 * Fan-out correctness at both tiers, against a real etcd, relay and workerd: many watchers of one
 * prefix each get every event exactly once and in revision order (a multi-key transaction as
 * consecutive events at one revision), whatever chunks the tier coalesced them into; and a
 * watcher that stops reading does not hold back the others, is buffered, not dropped, and gets
 * everything once it reads again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './helpers/stack.ts';

const PREFIX = '/registry/fanout/';
const WATCHERS = 200;

let stack: Stack | undefined;

beforeAll(async () => {
  stack = await startStack();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

function need(): Stack {
  if (stack === undefined) throw new Error('the stack did not start');
  return stack;
}

/** One change as etcd reported it: the revision and the key, in etcd's order. */
type Change = `${number} ${string}`;

/**
 * Reads a watch stream and keeps each event's `modRevision key`, parsing every line (chunks may
 * end inside a line). Resolves `done` once `want` changes arrived, or the stream ended.
 */
function collect(url: string, want: number) {
  const abort = new AbortController();
  const seen: Change[] = [];
  const errors: string[] = [];
  const done = (async () => {
    const res = await fetch(url, { signal: abort.signal });
    if (!res.ok || res.body === null) throw new Error(`watch ${url}: ${res.status}`);
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += decoder.decode(chunk, { stream: true });
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line === '') continue;
        const event = JSON.parse(line) as { type: string; object: { key?: string; modRevision?: number } };
        if (event.type === 'ERROR') errors.push(line);
        else if (event.type !== 'BOOKMARK')
          seen.push(`${event.object.modRevision ?? 0} ${event.object.key ?? ''}`);
      }
      if (seen.length >= want || errors.length > 0) break;
    }
    abort.abort();
  })();
  return { seen, errors, done, close: () => abort.abort() };
}

/**
 * Puts from several writers at once plus multi-key transactions (keys named after `run`, so each
 * run creates its own); returns etcd's order.
 */
async function write(s: Stack, run: number, count: number, value: string): Promise<Change[]> {
  const changes: Change[] = [];
  const writers = 8;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = w; i < count; i += writers) {
        if (i % 25 === 0) {
          const keys = [0, 1, 2].map((j) => `${PREFIX}txn-${run}-${i}-${j}`);
          const res = await s.client
            .if(keys[0] ?? '', 'Create', '==', 0)
            .then(...keys.map((k) => s.client.put(k).value(value)))
            .commit();
          if (!res.succeeded) throw new Error(`transaction ${keys[0]} did not apply`);
          // One revision for the whole transaction; its events come in the order etcd applied them.
          for (const k of keys) changes.push(`${Number(res.header.revision)} ${k}`);
        } else {
          const key = `${PREFIX}k${i % 40}`;
          const res = await s.client.put(key).value(value).exec();
          changes.push(`${Number(res.header.revision)} ${key}`);
        }
      }
    }),
  );
  return changes.sort((a, b) => Number(a.split(' ')[0]) - Number(b.split(' ')[0]));
}

async function revisionNow(s: Stack): Promise<number> {
  const res = await s.client.get(`${PREFIX}none`).exec();
  return Number(res.header.revision);
}

/** The replica for the default location has synced at least `revision`. */
async function replicaAt(url: string, revision: number): Promise<void> {
  await expect
    .poll(
      async () => {
        const res = await fetch(`${url}/_replica/status/registry/`);
        const st = (await res.json()) as { ready: boolean; revision: number };
        return st.ready && st.revision >= revision;
      },
      { timeout: 30_000, interval: 50 },
    )
    .toBe(true);
}

describe.each(['relay', 'edge'] as const)('fan-out at the %s', (tier) => {
  const base = () => (tier === 'relay' ? need().relay.url : (need().worker?.url ?? ''));

  it(`gives each of ${WATCHERS} watchers every event once, in revision order`, async () => {
    const s = need();
    const from = await revisionNow(s);
    if (tier === 'edge') await replicaAt(base(), from);
    const count = 300;
    // Transactions add two events each beyond their one write.
    const expected = count + 2 * Math.ceil(count / 25);
    const url = `${base()}/v1/list${PREFIX}?watch=true&resourceVersion=${from}`;
    const watchers = Array.from({ length: WATCHERS }, () => collect(url, expected));
    try {
      // A watch sends no byte before its first event: wait until the tier counts them all.
      await expect
        .poll(() => watcherCount(tier, base()), { timeout: 30_000, interval: 50 })
        .toBeGreaterThanOrEqual(WATCHERS);
      const changes = await write(s, from, count, 'v');
      expect(changes).toHaveLength(expected);
      await Promise.all(watchers.map((w) => w.done));
      for (const w of watchers) {
        expect(w.errors).toEqual([]);
        expect(w.seen).toEqual(changes);
      }
    } finally {
      for (const w of watchers) w.close();
    }
  }, 120_000);

  it('keeps feeding the others while one watcher stops reading, and buffers that one', async () => {
    const s = need();
    const from = await revisionNow(s);
    if (tier === 'edge') await replicaAt(base(), from);
    const url = `${base()}/v1/list${PREFIX}?watch=true&resourceVersion=${from}`;
    // 100 × 64 KB: far more than the tier's 1 MB per-watcher buffer and the sockets' buffers,
    // so the stalled watcher really backs up while the others read.
    const count = 100;
    const stalled = await fetch(url);
    const fast = Array.from({ length: 10 }, () => collect(url, count));
    try {
      await expect
        .poll(() => watcherCount(tier, base()), { timeout: 30_000, interval: 50 })
        .toBeGreaterThanOrEqual(11);
      const value = 'y'.repeat(64 * 1024);
      const changes: Change[] = [];
      for (let i = 0; i < count; i++) {
        const key = `${PREFIX}big${i % 10}`;
        const res = await s.client.put(key).value(value).exec();
        changes.push(`${Number(res.header.revision)} ${key}`);
      }
      await Promise.all(fast.map((w) => w.done));
      for (const w of fast) expect(w.seen).toEqual(changes);
      // Only now does the stalled one read: everything is there, nothing was dropped or cut.
      const reader = stalled.body?.getReader();
      const decoder = new TextDecoder();
      let text = '';
      for (let lines = 0; lines < count; ) {
        const chunk = await reader?.read();
        if (chunk === undefined || chunk.done) break;
        const piece = decoder.decode(chunk.value, { stream: true });
        text += piece;
        lines += piece.split('\n').length - 1;
      }
      await reader?.cancel();
      const got = text
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { type: string; object: { key?: string; modRevision?: number } });
      expect(got.filter((e) => e.type === 'ERROR')).toEqual([]);
      expect(got.map((e) => `${e.object.modRevision ?? 0} ${e.object.key ?? ''}`)).toEqual(changes);
    } finally {
      for (const w of fast) w.close();
      await stalled.body?.cancel().catch(() => {});
    }
  }, 120_000);
});

/** Open watches as the tier counts them. */
async function watcherCount(tier: 'relay' | 'edge', url: string): Promise<number> {
  if (tier === 'relay') {
    const st = (await (await fetch(`${url}/_relay/status`)).json()) as { watchers: number };
    return st.watchers;
  }
  const st = (await (await fetch(`${url}/_replica/status/registry/`)).json()) as { watchers: number };
  return st.watchers;
}
