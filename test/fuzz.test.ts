/**
 * Property-based fuzzing of hostile input against the relay and the edge (issue 7): random
 * paths, parameters, continue tokens and headers (test/fuzz/arbitraries.ts), each response
 * judged against API.md and the shared parser (test/fuzz/oracle.ts), and watches abandoned
 * mid-stream. Afterwards both tiers must still answer /healthz and hold exactly as many open
 * watches as before. The tally of outcomes is printed at the end, so the figures can be quoted.
 *
 * Every batch is one fast-check run from the fixed SEED (FUZZ_SEED overrides it), so a failure
 * replays; nothing is written to etcd while requests are fuzzed, so the oracle knows the state.
 */
import type { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KEEPALIVE_MS } from '../core/watch-stream.ts';
import { abandonedWatchArb, hostileRequestArb } from './fuzz/arbitraries.ts';
import { type Target, targetOf } from './fuzz/http.ts';
import { Tally } from './fuzz/oracle.ts';
import { runFuzz } from './fuzz/runner.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 72_024);
const PREFIXES = ['/registry/', '/other/'];
const BATCH = 64;
const POOL = 8;
/** Per tier: 63 × 64 = 4,032 hostile requests and 19 × 64 = 1,216 abandoned watches. */
const HOSTILE_RUNS = 63;
const WATCH_RUNS = 19;
/** Short waits for an rv past the state, so the 504s the fuzz provokes stay cheap. */
const RELAY_WAIT_MS = 100;
const EDGE_WAIT_MS = 300;
/** The hang deadline (every wait is well under it), and how long a quiet watch is read. */
const SEND = { deadlineMs: 10_000, chunkWaitMs: 100 };
/**
 * Abandoned streams close asynchronously. The relay notices the reset socket at once; workerd
 * when a write fails, so the edge needs a keep-alive (KEEPALIVE_MS) at worst. The edge runs with
 * its stall cut off (EDGE_WATCH_STALL_MS=0), which would otherwise end every abandoned watch by
 * itself and hide a leak.
 */
const LEAK_DEADLINE_MS = KEEPALIVE_MS + 5_000;

type Tier = 'relay' | 'edge';

let stack: Stack | undefined;
let world: { revision: number; tokens: string[]; exposedPrefixes: string[] } | undefined;
let initialWatchers: Record<string, number> | undefined;
const targets = new Map<Tier, Target>();
const tally = new Tally();
/** Health checks after a fuzz run that a tier did not answer with 200. */
let crashes = 0;

async function put(client: Etcd3, key: string, value: string | Uint8Array): Promise<number> {
  const res = await client.kv.put({ key: Buffer.from(key), value: Buffer.from(value) });
  return Number(res.header.revision);
}

/** Keys that are awkward to address: Unicode, NUL, a space, a 12 KB key, a non-UTF-8 value. */
async function seed(client: Etcd3): Promise<number> {
  await put(client, '/registry/a', 'a1');
  await put(client, '/registry/b', 'b1');
  await put(client, '/registry/c/d', 'd1');
  await put(client, '/registry/é☃', 'snow');
  await put(client, '/registry/\u0000nul', 'nul');
  await put(client, '/registry/sp ace', 'space');
  await put(client, `/registry/${'k'.repeat(12_000)}`, 'long');
  await put(client, '/registry/bin', new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28]));
  await client.delete().key('/registry/b');
  return put(client, '/other/x', 'x1');
}

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`${what} is missing: did beforeAll fail?`);
  return value;
}

async function replicaStatus(
  s: Stack,
  prefix: string,
): Promise<{ ready: boolean; revision: number; watchers: number }> {
  const res = await fetch(`${s.worker?.url}/_replica/status${prefix}`);
  return (await res.json()) as { ready: boolean; revision: number; watchers: number };
}

/** Open watch streams: the relay's counter and each edge replica's (GET /_replica/status/…). */
async function watchers(s: Stack): Promise<Record<string, number>> {
  const counts: Record<string, number> = { relay: s.relay.watchers };
  for (const prefix of PREFIXES) counts[`edge ${prefix}`] = (await replicaStatus(s, prefix)).watchers;
  return counts;
}

const RELAY_KEYS = ['relay'];
/** The edge forwards some watches (rv older than its window) to the relay: count those too. */
const EDGE_KEYS = ['relay', ...PREFIXES.map((p) => `edge ${p}`)];

/** Both tiers answer /healthz (nothing crashed), and the open watches return to `before`. */
async function expectHealthyWithoutLeaks(
  before: Record<string, number>,
  keys: readonly string[],
): Promise<void> {
  const s = need(stack, 'the stack');
  for (const url of [s.relay.url, s.worker?.url]) {
    const status = await fetch(`${url}/healthz`)
      .then(async (res) => {
        await res.body?.cancel();
        return res.status;
      })
      .catch((error: unknown) => String(error));
    if (status !== 200) crashes++;
    expect(status, `${url}/healthz`).toBe(200);
  }
  const pick = (counts: Record<string, number>) => Object.fromEntries(keys.map((k) => [k, counts[k]]));
  await vi.waitFor(
    async () => expect(pick(await watchers(s)), 'open watches after the fuzz').toEqual(pick(before)),
    { timeout: LEAK_DEADLINE_MS, interval: 50 },
  );
}

async function fuzz(tier: Tier, kind: 'hostile' | 'watch'): Promise<void> {
  const w = need(world, 'the world');
  const keys = tier === 'relay' ? RELAY_KEYS : EDGE_KEYS;
  const before = await watchers(need(stack, 'the stack'));
  await runFuzz({
    tier,
    target: need(targets.get(tier), tier),
    arbitrary: kind === 'hostile' ? hostileRequestArb(w) : abandonedWatchArb(w),
    runs: kind === 'hostile' ? HOSTILE_RUNS : WATCH_RUNS,
    batch: BATCH,
    pool: POOL,
    seed: SEED,
    send: SEND,
    world: w,
    tally,
    urlStack: tier === 'relay' ? 'node' : 'workerd',
  });
  await expectHealthyWithoutLeaks(before, keys);
}

describe('hostile input against the relay and the edge', () => {
  beforeAll(async () => {
    const s = await startStack({
      prefixes: PREFIXES,
      relayArgs: ['--wait-timeout-ms', String(RELAY_WAIT_MS)],
      workerVars: { EDGE_WAIT_MS: String(EDGE_WAIT_MS), EDGE_RATE_LIMIT_RPS: '0', EDGE_WATCH_STALL_MS: '0' },
      // History from before the relay started: reads at those revisions can only come from etcd.
      beforeRelay: async (client) => {
        await put(client, '/registry/old', 'o1');
        await put(client, '/registry/old', 'o2');
      },
    });
    stack = s;
    const revision = await seed(s.client);
    const worker = need(s.worker, 'the worker');
    targets.set('relay', targetOf(s.relay.url, POOL));
    targets.set('edge', targetOf(worker.url, POOL));

    // Real continue tokens from both tiers, for the tampering generators.
    const tokens: string[] = [];
    for (const base of [s.relay.url, worker.url]) {
      for (const query of ['limit=1', 'limit=2', `limit=1&resourceVersion=${revision}`]) {
        const res = await fetch(`${base}/v1/list/registry/?${query}`);
        const body = (await res.json()) as { metadata: { continue?: string } };
        if (body.metadata.continue) tokens.push(body.metadata.continue);
      }
    }
    expect(tokens.length).toBeGreaterThan(0);
    // Both replicas awake and caught up, so the oracle's "revision" holds at the edge too.
    for (const prefix of PREFIXES) {
      await fetch(`${worker.url}/v1/list${prefix}?limit=1`).then((r) => r.body?.cancel());
      await vi.waitFor(
        async () => expect(await replicaStatus(s, prefix)).toMatchObject({ ready: true, revision }),
        { timeout: 10_000, interval: 50 },
      );
    }
    world = { revision, tokens, exposedPrefixes: PREFIXES };
    initialWatchers = await watchers(s);
  }, 60_000);

  afterAll(async () => {
    let leaked = 'unknown';
    if (stack && initialWatchers) {
      const now = await watchers(stack).catch(() => undefined);
      const start = initialWatchers;
      if (now)
        leaked = Object.entries(now)
          .map(([k, v]) => `${k} ${v - (start[k] ?? 0)}`)
          .join(', ');
    }
    console.log(
      [
        `fuzz summary (seed ${SEED}, etcd revision ${world?.revision ?? '?'})`,
        tally.summary(),
        `contract violations: ${tally.failures}`,
        `crashes: ${crashes} (tiers not answering /healthz after a fuzz run)`,
        `open watches left over at the end: ${leaked}`,
      ].join('\n'),
    );
    await stack?.stop();
  });

  // The relay first: afterwards the relay's count also holds the watches the edge forwarded.
  it('answers every hostile request at the relay with a Status or a read, never a 5xx, hang or crash', async () => {
    await fuzz('relay', 'hostile');
  }, 120_000);

  it('closes every watch abandoned after 0–2 chunks at the relay', async () => {
    await fuzz('relay', 'watch');
  }, 120_000);

  it('answers every hostile request at the edge with a Status or a read, never a 5xx, hang or crash', async () => {
    await fuzz('edge', 'hostile');
  }, 120_000);

  it('closes every watch abandoned after 0–2 chunks at the edge, and those it forwarded to the relay', async () => {
    await fuzz('edge', 'watch');
  }, 120_000);

  it('sent at least 10,000 requests, at least 5,000 to each tier', () => {
    expect(tally.total('relay')).toBeGreaterThanOrEqual(5_000);
    expect(tally.total('edge')).toBeGreaterThanOrEqual(5_000);
    expect(tally.requests).toBeGreaterThanOrEqual(10_000);
  });
});
