/**
 * Keeps one edge replica honest about etcd's history: the replica's half of "never serve another
 * history" (API.md "Histories"; the relay's half is relay/history-guard.ts).
 *
 * - **Identity at (re)connect and warm start.** A state loaded from SQLite is *unverified*: the
 *   replica forwards reads instead of serving it until the relay has vouched for it — its digest
 *   at the stored revision (sent in `hello`) is the relay's (the relay then resumes, and the first
 *   `progress`/`batches` carries the same digest), or a snapshot replaced it. A relay that finds
 *   the state in another history says so with `snapshotStart {newHistory}`: the state is dropped
 *   at once, even when the snapshot is older ("never move backwards" holds within one history).
 * - **Continuous comparison.** Every `batches`, `progress` and `snapshotEnd` carries the relay's
 *   digest at its last revision; after applying it the replica compares its own digest there.
 * - **Self-check.** Every `intervalMs` ± 50% the digest is recomputed from the cache's own objects
 *   (what SQLite loaded and the batches built) and compared with the incremental one, so a state
 *   changed behind the cache's back is found within one period.
 *
 * A mismatch drops the state (SQLite and memory), ends every watch with 410, logs one line,
 * counts a repair, and reconnects without a revision, so the relay sends a snapshot.
 *
 *     loaded (unverified) ──digest matches / snapshot──► verified ──mismatch / newHistory──► empty
 *           │                                               ▲                                 │
 *           └────────newHistory / mismatch──────────────────┼──────────► empty ──snapshot─────┘
 */
import { digestInSlices, formatDigest, parseDigest } from '../core/digest.ts';
import { HistoryChanged } from '../core/errors.ts';
import type { Cancel, Clock, Revision } from '../core/types.ts';
import type { WatchCache } from '../core/watch-cache.ts';

export interface ReplicaHistoryOptions {
  readonly cache: WatchCache;
  readonly clock: Clock;
  /** Forgets the stored state (SQLite): the next start is cold. */
  readonly clearStorage: () => void;
  /** Drops the relay stream and opens a new one (with no revision: a snapshot follows). */
  readonly reconnect: (why: string) => void;
  readonly log: (msg: string, fields: Record<string, string | number | boolean | undefined>) => void;
  /** Mean time between self-checks; 0 turns them off. */
  readonly intervalMs: number;
  readonly random?: () => number;
}

/** What `/_replica/status` shows (times are the clock's ms). */
export interface ReplicaHistoryStatus {
  /** The state was vouched for by the relay (or came from it) in this run of the replica. */
  readonly verified: boolean;
  readonly digest: string;
  /** Comparisons with the relay's digest, and how many disagreed. */
  readonly relayChecks: number;
  readonly relayMismatches: number;
  /** Self-checks (digest recomputed from the objects), and how many disagreed. */
  readonly selfChecks: number;
  readonly selfMismatches: number;
  /** States dropped: another history, or a mismatch. */
  readonly repairs: number;
  readonly lastRepairReason: string | undefined;
  readonly lastGoodAt: number | undefined;
  readonly lastGoodRevision: Revision | undefined;
}

export class ReplicaHistory {
  readonly #o: ReplicaHistoryOptions;
  readonly #random: () => number;
  #verified = false;
  #timer: Cancel | undefined;
  /** Reads that wait for a loaded state to be vouched for. */
  readonly #waiters = new Set<() => void>();
  #s = {
    relayChecks: 0,
    relayMismatches: 0,
    selfChecks: 0,
    selfMismatches: 0,
    repairs: 0,
    lastRepairReason: undefined as string | undefined,
    lastGoodAt: undefined as number | undefined,
    lastGoodRevision: undefined as Revision | undefined,
  };

  constructor(options: ReplicaHistoryOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
  }

  /** Whether reads may be served from the cache (see the module comment). */
  get verified(): boolean {
    return this.#verified && this.#o.cache.ready;
  }

  /**
   * Resolves once the state is verified, or after `ms` (a warm start waits this briefly for the
   * relay's answer to its hello, then forwards). At once when verified or when there is no state.
   */
  whenVerified(ms: number): Promise<void> {
    if (this.verified || !this.#o.cache.ready) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        cancel();
        this.#waiters.delete(done);
        resolve();
      };
      const cancel = this.#o.clock.setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  status(): ReplicaHistoryStatus {
    return { verified: this.verified, digest: formatDigest(this.#o.cache.digest), ...this.#s };
  }

  /** The digest to name in `hello` with the cache's revision (undefined when there is no state). */
  helloDigest(): string | undefined {
    return this.#o.cache.ready ? formatDigest(this.#o.cache.digest) : undefined;
  }

  /** `snapshotStart`: with `newHistory`, the stored state is from another history: drop it now. */
  onSnapshotStart(newHistory: boolean): void {
    if (newHistory && this.#o.cache.ready)
      this.#drop('the relay says the stored state is from another etcd history', false);
  }

  /** After a snapshot was swapped in: it is the relay's state, if its digest says so. */
  onSnapshot(revision: Revision, digest: string | undefined): void {
    if (digest === undefined || this.#compare(revision, digest)) this.#setVerified();
  }

  /** After `batches` or `progress` brought the cache to (or past) `revision`. */
  onMessage(revision: Revision, digest: string | undefined): void {
    if (digest === undefined) return;
    if (this.#compare(revision, digest)) this.#setVerified();
  }

  #setVerified(): void {
    this.#verified = true;
    for (const waiter of [...this.#waiters]) waiter();
  }

  /**
   * Runs one self-check now (the timer's job; tests wait on its result in the status). The
   * snapshot at revision R is hashed a slice at a time, yielding the Durable Object's thread
   * between slices; the result is compared with the digest the cache had at R.
   */
  async checkNow(): Promise<void> {
    const cache = this.#o.cache;
    if (!cache.ready) return;
    const snapshot = cache.snapshot();
    const revision = snapshot.revision;
    const expected = cache.digest;
    const stored = await digestInSlices(snapshot, () => new Promise((r) => this.#o.clock.setTimeout(r, 0)));
    // The state was dropped or replaced meanwhile: this check says nothing about the new one.
    if (!cache.ready || cache.digestAt(revision) !== expected) return;
    this.#s.selfChecks++;
    if (stored === expected) {
      this.#good(revision);
      return;
    }
    this.#s.selfMismatches++;
    this.#drop(
      `self-check: the replica's objects (digest ${formatDigest(stored)}) differ from its digest ${formatDigest(expected)} at revision ${revision}`,
      true,
    );
  }

  /** Arms the periodic self-check (idempotent); it disarms itself while `active()` is false. */
  arm(active: () => boolean): void {
    if (this.#timer !== undefined || this.#o.intervalMs <= 0) return;
    const tick = () => {
      this.#timer = undefined;
      if (!active()) return;
      this.checkNow()
        .catch((error: unknown) => this.#o.log('self-check failed', { error: String(error) }))
        .finally(() => this.arm(active));
    };
    this.#timer = this.#o.clock.setTimeout(tick, this.#o.intervalMs * (0.5 + this.#random()));
  }

  /** Compares the cache's digest at `revision` with the relay's; a mismatch drops the state. */
  #compare(revision: Revision, relayDigest: string): boolean {
    const theirs = parseDigest(relayDigest);
    const mine = this.#o.cache.digestAt(revision);
    if (theirs === undefined || mine === undefined) return false;
    this.#s.relayChecks++;
    if (mine === theirs) {
      this.#good(revision);
      return true;
    }
    this.#s.relayMismatches++;
    this.#drop(
      `the replica's digest ${formatDigest(mine)} at revision ${revision} is not the relay's ${relayDigest}`,
      true,
    );
    return false;
  }

  #good(revision: Revision): void {
    this.#s.lastGoodAt = this.#o.clock.now();
    this.#s.lastGoodRevision = revision;
  }

  /** Drops the state, ends every watch with 410 and (unless a snapshot is already coming) reconnects. */
  #drop(reason: string, reconnect: boolean): void {
    this.#s.repairs++;
    this.#s.lastRepairReason = reason;
    this.#o.log('dropping the replica state', { reason, revision: this.#o.cache.revision });
    this.#verified = false;
    this.#o.clearStorage();
    this.#o.cache.invalidate(new HistoryChanged(`the edge replica dropped its state: ${reason}`));
    if (reconnect) this.#o.reconnect(reason);
  }
}
