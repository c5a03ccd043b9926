/**
 * The faults that give etcd another history (model.ts `HistoryFaultKind`), and the bookkeeping
 * that lets the checker judge every answer against the history it could have come from: each
 * fault ends the current `GroundTruth` and starts the next one (an `Epoch`), seeded with the
 * state it starts from (empty after a wipe; the snapshot's state after a restore).
 *
 *   restore kinds: etcdctl snapshot save (S) ─► writes go on a moment (the branch to be lost)
 *   …Stopped:      relay stopped, workerd stopped (every replica keeps its SQLite)
 *   writers paused ─► recorder catches up to etcd's head ─► recorder suspended ─► startedAt
 *   every member killed ─► wiped, or restored from S (optionally --bump-revision N --mark-compacted)
 *   ─► members started ─► recorder records the new history from its base ─► writers resume
 *   …Stopped:      relay and workerd started again (replicas warm-start on the old state)
 *   ─► settledAt
 *
 * Pausing the writers and letting the recorder catch up first keeps the old history's record
 * whole up to the kill (only a lease expiring in that instant can slip past it; the checker
 * tolerates a revision above a history's recorded head in the transition window).
 */
import path from 'node:path';
import {
  type RestorableCluster,
  restoreCluster,
  saveSnapshot,
  snapshotRevision,
  wipeCluster,
} from '../scripts/lib/etcd-history.ts';
import { type Epoch, type GroundTruth, HISTORY_GRACE_MS, type HistoryFaultKind, Truth } from './model.ts';
import type { Prng } from './prng.ts';
import type { Recorder } from './recorder.ts';
import { type Compaction, type Observed, sleep, type WriterGate } from './writers.ts';

/** How far `--bump-revision` moves a restored history's revisions. */
export const BUMP_REVISION = 100_000;

/** The run's histories: the current one is recorded, the finished ones are kept for the checker. */
export class Histories {
  readonly #recorder: Recorder;
  /** The first history and every later one, each with its compactions. */
  readonly #done: { truth: GroundTruth; startedAt: number; settledAt: number }[] = [];
  #base: GroundTruth['base'];
  #startedAt = Number.NEGATIVE_INFINITY;
  #settledAt = Number.NEGATIVE_INFINITY;
  /** The current history's compactions (the run's compaction loop appends here). */
  compactions: Compaction[] = [];

  constructor(recorder: Recorder) {
    this.#recorder = recorder;
  }

  /** The current history so far, as a checkable record (head: what the recorder holds). */
  current(head = this.#recorder.revision): GroundTruth {
    return {
      ...(this.#base ? { base: this.#base } : {}),
      revisions: this.#recorder.revisions.filter((r) => r.revision <= head),
      head,
      compactions: this.compactions,
    };
  }

  /** Ends the current history (the recorder is suspended) and starts the next from `base`. */
  next(base: NonNullable<GroundTruth['base']>, startedAt: number, compactedAt?: number): void {
    this.#recorder.suspend();
    this.#done.push({ truth: this.current(), startedAt: this.#startedAt, settledAt: this.#settledAt });
    this.#base = base;
    this.#startedAt = startedAt;
    this.#settledAt = Number.POSITIVE_INFINITY;
    this.compactions = compactedAt !== undefined ? [{ revision: base.revision, at: compactedAt }] : [];
    this.#recorder.startHistory(base.revision);
  }

  settled(at: number): void {
    this.#settledAt = at;
  }

  /** The first history and the epochs after it, the last one ending at `head`. */
  finish(head: number): { truth: GroundTruth; epochs: Epoch[] } {
    const all = [
      ...this.#done,
      { truth: this.current(head), startedAt: this.#startedAt, settledAt: this.#settledAt },
    ];
    const [first, ...rest] = all;
    if (!first) throw new Error('no history');
    return { truth: first.truth, epochs: rest };
  }
}

/** What a history fault acts on. */
export interface HistoryTargets {
  readonly cluster: RestorableCluster;
  readonly recorder: Recorder;
  readonly histories: Histories;
  readonly observed: Observed;
  readonly writers: WriterGate;
  /** etcd's current revision by a quorum read. */
  head(): Promise<number>;
  readonly relay: { stop(): Promise<void>; start(): Promise<void> };
  readonly edge?: { suspend(): Promise<void>; restart(): Promise<void> };
  /** A folder for snapshot files. */
  readonly scratch: string;
}

let snapshots = 0;

/** Injects one history fault; resolves once etcd and the tiers are back. Returns a detail line. */
export async function changeHistory(kind: HistoryFaultKind, t: HistoryTargets, rng: Prng): Promise<string> {
  const stopped = kind.endsWith('Stopped');
  const restore = kind.startsWith('etcdRestore');
  const bumped = kind.startsWith('etcdRestoreBumped');
  let snapshot: { file: string; revision: number } | undefined;
  if (restore) {
    const file = path.join(t.scratch, `snapshot-${++snapshots}.db`);
    const endpoint = t.cluster.members[0]?.endpoint;
    if (!endpoint) throw new Error('no etcd member');
    await saveSnapshot(endpoint, file);
    snapshot = { file, revision: await snapshotRevision(file) };
    await sleep(rng.int(300, 1200)); // writes the restore will take back
  }
  const phases: string[] = [];
  let mark = Date.now();
  const phase = (name: string) => {
    const now = Date.now();
    phases.push(`${name} ${now - mark} ms`);
    mark = now;
  };
  if (stopped) {
    await t.relay.stop();
    await t.edge?.suspend();
    phase('tiers stopped');
  }
  await t.writers.pause();
  await t.recorder.waitFor(await t.head(), 10_000);
  phase('recorder caught up');
  const startedAt = Date.now();
  let base: NonNullable<GroundTruth['base']>;
  if (snapshot) {
    const old = new Truth(t.histories.current());
    base = {
      revision: snapshot.revision + (bumped ? BUMP_REVISION : 0),
      objects: old.listAt('', snapshot.revision),
    };
  } else base = { revision: 1, objects: [] };
  // Suspend the recorder before etcd goes: nothing of the next history may land in this one.
  t.recorder.suspend();
  if (snapshot) await restoreCluster(t.cluster, snapshot.file, bumped ? { bumpRevision: BUMP_REVISION } : {});
  else await wipeCluster(t.cluster);
  phase(snapshot ? 'restored' : 'wiped');
  t.histories.next(base, startedAt, bumped ? startedAt : undefined);
  t.writers.resume();
  if (stopped) {
    await t.relay.start();
    phase('relay started');
    await t.edge?.restart();
    phase('edge started');
  }
  const settledAt = Date.now();
  t.histories.settled(settledAt);
  t.observed.reset(settledAt + HISTORY_GRACE_MS);
  return `${snapshot ? `restored to ${snapshot.revision}${bumped ? ` + ${BUMP_REVISION}` : ''}` : 'wiped'}${stopped ? ', tiers stopped meanwhile' : ''}: ${phases.join(', ')}`;
}
