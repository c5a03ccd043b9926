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
 * end inside a line), until `until()` is given a revision and an event at or past it arrived, or
 * the stream ended or sent an ERROR.
 */
function collect(url: string) {
  const abort = new AbortController();
  const seen: Change[] = [];
  const errors: string[] = [];
  let last = 0;
  let target = Number.POSITIVE_INFINITY;
  let wake: () => void = () => {};
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
        else if (event.type !== 'BOOKMARK') {
          last = event.object.modRevision ?? 0;
          seen.push(`${last} ${event.object.key ?? ''}`);
        }
      }
      if (last >= target || errors.length > 0) break;
    }
    abort.abort();
  })();
  // Wakes `done` if the target is already reached when it is set.
  const reached = new Promise<void>((resolve) => {
    wake = resolve;
  });
  return {
    seen,
    errors,
    // After `until` is met the stream is aborted: its rejection then is expected.
    done: Promise.race([done, reached]).finally(() => done.catch(() => {})),
    until(revision: number) {
      target = revision;
      if (last >= revision) wake();
    },
    close: () => abort.abort(),
  };
}

/**
 * Every change under the prefix after `from` up to `to`, as etcd itself reports them (a watch
 * on etcd from `from + 1`): the truth the tiers' watchers are compared with. Taken from etcd and
 * not from the writers' answers, because a client may retry a put whose answer was lost, and
 * etcd then holds it twice.
 */
async function etcdChanges(s: Stack, from: number, to: number): Promise<Change[]> {
  const out: Change[] = [];
  const watcher = await s.client
    .watch()
    .prefix(PREFIX)
    .startRevision(String(from + 1))
    .create();
  try {
    await new Promise<void>((resolve, reject) => {
      watcher.on('error', reject);
      watcher.on('data', (res) => {
        for (const event of res.events) {
          const revision = Number(event.kv.mod_revision);
          if (revision <= to) out.push(`${revision} ${event.kv.key.toString()}`);
        }
        if (out.length > 0 && Number(out.at(-1)?.split(' ')[0]) >= to) resolve();
      });
    });
  } finally {
    await watcher.cancel();
  }
  return out;
}

/**
 * Puts from several writers at once plus multi-key transactions (keys named after `run`, so each
 * run creates its own); returns the last revision written.
 */
async function write(s: Stack, run: number, count: number, value: string): Promise<number> {
  let last = 0;
  const writers = 8;
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = w; i < count; i += writers) {
        let revision: number;
        if (i % 25 === 0) {
          const keys = [0, 1, 2].map((j) => `${PREFIX}txn-${run}-${i}-${j}`);
          const res = await s.client
            .if(keys[0] ?? '', 'Create', '==', 0)
            .then(...keys.map((k) => s.client.put(k).value(value)))
            .commit();
          if (!res.succeeded) throw new Error(`transaction ${keys[0]} did not apply`);
          revision = Number(res.header.revision);
        } else {
          const res = await s.client
            .put(`${PREFIX}k${i % 40}`)
            .value(value)
            .exec();
          revision = Number(res.header.revision);
        }
        last = Math.max(last, revision);
      }
    }),
  );
  return last;
}

/**
 * The same truth for puts of large values, which a watch on etcd would carry over the client's
 * message size limit: for each revision, the key whose modRevision it is (keys only).
 */
async function putsByRevision(s: Stack, prefix: string, from: number, to: number): Promise<Change[]> {
  const out: Change[] = [];
  const key = Buffer.from(prefix);
  const end = Buffer.from(
    prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1),
  );
  for (let revision = from + 1; revision <= to; revision++) {
    const res = await s.client.kv.range({ key, range_end: end, revision: String(revision), keys_only: true });
    for (const kv of res.kvs)
      if (Number(kv.mod_revision) === revision) out.push(`${revision} ${kv.key.toString()}`);
  }
  return out;
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
    const watchers = Array.from({ length: WATCHERS }, () => collect(url));
    try {
      // A watch sends no byte before its first event: wait until the tier counts them all.
      await expect
        .poll(() => watcherCount(tier, base()), { timeout: 30_000, interval: 50 })
        .toBeGreaterThanOrEqual(WATCHERS);
      const to = await write(s, from, count, 'v');
      const changes = await etcdChanges(s, from, to);
      // At least every write once (a put retried after a lost answer is in etcd twice).
      expect(changes.length).toBeGreaterThanOrEqual(expected);
      for (const w of watchers) w.until(to);
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
    const fast = Array.from({ length: 10 }, () => collect(url));
    try {
      await expect
        .poll(() => watcherCount(tier, base()), { timeout: 30_000, interval: 50 })
        .toBeGreaterThanOrEqual(11);
      const value = 'y'.repeat(64 * 1024);
      let to = 0;
      for (let i = 0; i < count; i++) {
        const res = await s.client
          .put(`${PREFIX}big${i % 10}`)
          .value(value)
          .exec();
        to = Number(res.header.revision);
      }
      for (const w of fast) w.until(to);
      await Promise.all(fast.map((w) => w.done));
      // Only now does the stalled one read (before anything else, so that it stays well within
      // the tier's stall limit): everything is there, nothing was dropped or cut.
      const reader = stalled.body?.getReader();
      const decoder = new TextDecoder();
      const got: { type: string; object: { key?: string; modRevision?: number } }[] = [];
      let buffered = '';
      while ((got.at(-1)?.object.modRevision ?? 0) < to && got.every((e) => e.type !== 'ERROR')) {
        const chunk = await reader?.read();
        if (chunk === undefined || chunk.done) break;
        buffered += decoder.decode(chunk.value, { stream: true });
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) if (line.startsWith('{')) got.push(JSON.parse(line));
      }
      await reader?.cancel();
      const changes = await putsByRevision(s, `${PREFIX}big`, from, to);
      for (const w of fast) expect(w.seen).toEqual(changes);
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
