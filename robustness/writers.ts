/**
 * The write side of the workload, straight to etcd (never through edgewatch): puts, deletes,
 * multi-key transactions, keys bound to short leases that etcd expires, some keys outside the
 * exposed prefix and some values that are not UTF-8; plus the periodic compaction, held back to
 * revisions the recorder already holds.
 *
 * Every acknowledged write raises the shared `Observed` watermark, which is what a later
 * most-recent read must not be older than. A write that failed may still have been applied; the
 * recorder, not the writer, says what happened.
 */
import type { Etcd3, IRequestOp } from 'etcd3';
import type { Prng } from './prng.ts';
import type { Recorder } from './recorder.ts';

/** The highest revision any client has seen committed (acknowledged writes, served reads, events). */
export class Observed {
  revision = 1;
  /** Observations from requests sent before this time are ignored (they may be of an old history). */
  #since = 0;

  /** `sentAt`: when the request that observed `revision` was sent (default: now). */
  observe(revision: number, sentAt = Date.now()): void {
    if (sentAt < this.#since) return;
    if (Number.isSafeInteger(revision) && revision > this.revision) this.revision = revision;
  }

  /**
   * etcd now holds another history: what was observed in the old one bounds nothing, and
   * neither does whatever a request sent before `since` observes (a tier may still answer it
   * from the old history, until it notices).
   */
  reset(since: number): void {
    this.revision = 1;
    this.#since = since;
  }
}

/** Lets a fault stop the writer between operations and wait until none is in flight. */
export class WriterGate {
  paused = false;
  busy = false;

  /** Pauses and resolves once the operation in flight (if any) has finished. */
  async pause(): Promise<void> {
    this.paused = true;
    while (this.busy) await sleep(5);
  }

  resume(): void {
    this.paused = false;
  }
}

/** The keys of the workload: under `base` (a sub-prefix of the exposed one) and one outside. */
export function workloadKeys(base: string): string[] {
  const keys: string[] = [];
  for (let i = 0; i < 24; i++) keys.push(`${base}k${String(i).padStart(2, '0')}`);
  for (let i = 0; i < 8; i++) keys.push(`${base}sub/k${i}`);
  keys.push(`${base}ü-unicode`, `${base}\u{1F600}-astral`);
  return keys;
}

export interface WriterCounts {
  puts: number;
  deletes: number;
  txns: number;
  leasePuts: number;
  failed: number;
  compactions: number;
}

const bytes = (s: string) => Buffer.from(s, 'utf8');

function value(rng: Prng, n: number): Buffer {
  if (rng.chance(0.05)) return Buffer.from([0xff, 0xfe, n & 0xff, 0x80]); // not UTF-8
  return bytes(JSON.stringify({ n, pad: 'x'.repeat(rng.int(0, 40)) }));
}

/** Runs writes until `stop()` returns true. One op at a time, with a short pause between. */
export async function runWriter(
  client: Etcd3,
  keys: readonly string[],
  outside: string,
  rng: Prng,
  observed: Observed,
  counts: WriterCounts,
  stop: () => boolean,
  gate: WriterGate = new WriterGate(),
): Promise<void> {
  for (let n = 0; !stop() && n < 1_000_000; n++) {
    while (gate.paused && !stop()) await sleep(10);
    if (stop()) return;
    const roll = rng.next();
    const sentAt = Date.now();
    gate.busy = true;
    try {
      if (roll < 0.55) {
        const key = rng.chance(0.05) ? outside : rng.pick(keys);
        const res = await client.kv.put({ key: bytes(key), value: value(rng, n) });
        observed.observe(Number(res.header.revision), sentAt);
        counts.puts++;
      } else if (roll < 0.72) {
        const res = await client.kv.deleteRange({ key: bytes(rng.pick(keys)) });
        observed.observe(Number(res.header.revision), sentAt);
        counts.deletes++;
      } else if (roll < 0.92) {
        const chosen = rng.shuffle(keys).slice(0, rng.int(2, 4));
        const success: IRequestOp[] = chosen.map((key) =>
          rng.chance(0.3)
            ? { request_delete_range: { key: bytes(key) } }
            : { request_put: { key: bytes(key), value: value(rng, n) } },
        );
        const res = await client.kv.txn({ compare: [], success });
        observed.observe(Number(res.header.revision), sentAt);
        counts.txns++;
      } else {
        const lease = await client.leaseClient.leaseGrant({ TTL: rng.int(1, 2) });
        const res = await client.kv.put({
          key: bytes(rng.pick(keys)),
          value: value(rng, n),
          lease: lease.ID,
        });
        observed.observe(Number(res.header.revision), sentAt);
        counts.leasePuts++;
      }
    } catch {
      counts.failed++;
      gate.busy = false;
      await sleep(50);
    }
    gate.busy = false;
    await sleep(rng.int(2, 12));
  }
}

/** A compaction the run made; `at` is taken before the request (earlier = more permissive). */
export interface Compaction {
  revision: number;
  at: number;
}

/** Compacts etcd at `revision` (never beyond what the recorder holds). Records the attempt. */
export async function compact(
  client: Etcd3,
  recorder: Recorder,
  revision: number,
  compactions: Compaction[],
  counts: WriterCounts,
): Promise<number | undefined> {
  const target = Math.min(revision, recorder.revision);
  const last = compactions[compactions.length - 1]?.revision ?? 0;
  if (target <= last || target < 2) return undefined;
  const at = Date.now();
  compactions.push({ revision: target, at });
  try {
    await client.kv.compact({ revision: String(target), physical: false });
    counts.compactions++;
    return target;
  } catch {
    return undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
