/**
 * Keeps one prefix's cache honest about etcd's history: the relay's half of "never serve
 * another history" (API.md "Histories").
 *
 * Three jobs, each answered by etcd at a pinned revision (relay/etcd/history.ts):
 *
 * - **History identity** (`verify`), asked by the reflector after every broken watch before it
 *   resumes from revision r: within one history revisions never go back, so an etcd head below r
 *   proves another history; otherwise etcd's digest of the prefix at r must equal the cache's
 *   (a restore with the same member configuration keeps etcd's cluster_id, so the id alone
 *   proves nothing). A compacted r cannot be checked: the reflector then assumes nothing and
 *   relists.
 * - **Self-check** (`checkNow`, every `intervalMs` ± 50%, jittered so that relays do not
 *   synchronise on etcd): the digest recomputed from the cache's own objects at its revision R
 *   must equal both its incremental digest and etcd's range at R. A mismatch is repaired by a
 *   relist that ends every subscriber with 410 (`resync`), logged once and counted.
 * - **Compaction** (`checkExact`): an Exact read or continue token at a revision etcd has
 *   compacted is 410 even while the cache's window still holds it, as in Kubernetes. What the
 *   relay knows is a lower bound (the watch's compact_revision, earlier refusals); above it one
 *   one-key, keys-only range pinned to the revision asks etcd.
 *
 *     idle ──timer (interval ± 50%)──► checking ──ok──────────────► idle (lastGoodAt = now)
 *                                        │ ├─mismatch─► resync (relist, 410s) ─► idle
 *                                        │ └─compacted / cache relisted meanwhile: skipped ─► idle
 *                                        └─etcd unreachable: failed ─► idle
 */
import type { Etcd3 } from 'etcd3';
import { type Digest, digestInSlices, formatDigest } from '../core/digest.ts';
import { Expired } from '../core/errors.ts';
import type { Cancel, Clock, Revision } from '../core/types.ts';
import type { WatchCache } from '../core/watch-cache.ts';
import { etcdDigestAt, isCompacted } from './etcd/history.ts';
import { currentRevision, FutureRevision } from './etcd/lister.ts';
import type { Logger } from './log.ts';
import type { HistoryVerdict } from './reflector.ts';

export interface HistoryGuardOptions {
  readonly prefix: string;
  readonly client: Etcd3;
  readonly cache: WatchCache;
  readonly clock: Clock;
  readonly log: Logger;
  /** Mean time between self-checks; 0 turns them off. */
  readonly intervalMs: number;
  /** Drops the cache and relists, ending every subscriber with 410 (the reflector's `resync`). */
  readonly resync: (reason: string) => void;
  /** How many lists the reflector has made: a check that straddles a relist is void. */
  readonly lists: () => number;
  /** Keys per range request of a check. Default 1,000. */
  readonly pageSize?: number;
  /** Uniform in [0, 1), for the jitter. */
  readonly random?: () => number;
}

export type SelfCheckResult = 'ok' | 'mismatch' | 'skipped' | 'failed';

/** What `/_relay/status` shows of the checks (times are the clock's ms). */
export interface HistoryGuardStatus {
  readonly intervalMs: number;
  readonly checks: number;
  readonly ok: number;
  readonly mismatches: number;
  readonly skipped: number;
  readonly failed: number;
  readonly lastResult: SelfCheckResult | undefined;
  readonly lastReason: string | undefined;
  readonly lastRevision: Revision | undefined;
  readonly lastCheckAt: number | undefined;
  readonly lastGoodAt: number | undefined;
  readonly lastGoodRevision: Revision | undefined;
  /** The last check's cost: wall time, range requests and key+value bytes etcd sent. */
  readonly lastDurationMs: number | undefined;
  readonly lastEtcdRequests: number | undefined;
  readonly lastEtcdBytes: number | undefined;
  readonly digest: string;
  /** Verifications after a broken watch that found another history, and relists for a failed check. */
  readonly historyChanges: number;
  /** Every revision below this one is known to be compacted by etcd. */
  readonly compactedBelow: Revision;
}

export class HistoryGuard {
  readonly #o: HistoryGuardOptions;
  readonly #random: () => number;
  #timer: Cancel | undefined;
  #running = false;
  #stopped = false;
  #compactedBelow: Revision = 0;
  /** `lists()` when `noteHead` last asked for a relist (undefined: none pending). */
  #resyncAtLists: number | undefined;
  #status: Omit<HistoryGuardStatus, 'intervalMs' | 'digest' | 'compactedBelow'> = {
    checks: 0,
    ok: 0,
    mismatches: 0,
    skipped: 0,
    failed: 0,
    lastResult: undefined,
    lastReason: undefined,
    lastRevision: undefined,
    lastCheckAt: undefined,
    lastGoodAt: undefined,
    lastGoodRevision: undefined,
    lastDurationMs: undefined,
    lastEtcdRequests: undefined,
    lastEtcdBytes: undefined,
    historyChanges: 0,
  };

  constructor(options: HistoryGuardOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
  }

  status(): HistoryGuardStatus {
    return {
      ...this.#status,
      intervalMs: this.#o.intervalMs,
      digest: formatDigest(this.#o.cache.digest),
      compactedBelow: this.#compactedBelow,
    };
  }

  /** Starts the periodic self-check (nothing when the interval is 0). */
  start(): void {
    if (this.#o.intervalMs > 0 && !this.#stopped) this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.();
    this.#timer = undefined;
  }

  /**
   * The reflector's question after a broken watch: is the cache's state at `revision` etcd's?
   * Rejects when etcd cannot be reached (the reflector asks again after a backoff).
   */
  async verify(revision: Revision): Promise<HistoryVerdict> {
    const verdict = await this.#verify(revision, this.#o.cache.digestAt(revision));
    if (verdict.kind !== 'same') this.#newHistory();
    if (verdict.kind === 'other')
      this.#status = { ...this.#status, historyChanges: this.#status.historyChanges + 1 };
    return verdict;
  }

  /**
   * What a quorum read must be compared with: the cache's revision (and list count) taken just
   * before the read is sent. Call it synchronously before sending.
   */
  beforeHead(): { readonly revision: Revision; readonly lists: number } {
    return { revision: this.#o.cache.ready ? this.#o.cache.revision : 0, lists: this.#o.lists() };
  }

  /**
   * A most-recent read learned that etcd's head is `head`, by a linearizable read sent when the
   * cache was at `before.revision`. Such a read sees at least every revision the watch had
   * delivered before it was sent, so a head below that revision is another history: relist,
   * and tell the caller the cache cannot serve it (it reads from etcd instead). Compared with the
   * revision at send time, never the current one: the watch may deliver newer revisions while
   * the read is in flight. A relist meanwhile voids the comparison.
   */
  noteHead(head: Revision, before: { readonly revision: Revision; readonly lists: number }): boolean {
    if (head >= before.revision || before.lists !== this.#o.lists()) return true;
    // Many reads may learn it at once: one relist, one log line, one count.
    if (this.#resyncAtLists === this.#o.lists()) return false;
    this.#resyncAtLists = this.#o.lists();
    const reason = `etcd's head ${head} is below the revision ${before.revision} the cache had reached`;
    this.#status = { ...this.#status, historyChanges: this.#status.historyChanges + 1 };
    this.#o.log.error('etcd history changed, dropping the cache and relisting', { reason });
    this.#newHistory();
    this.#o.resync(reason);
    return false;
  }

  /** The watch said etcd compacted everything below `revision`. */
  noteCompacted(revision: Revision): void {
    if (revision > this.#compactedBelow) this.#compactedBelow = revision;
  }

  /**
   * Throws `Expired` when etcd has compacted `revision` (an Exact read or continue token at it
   * gets 410 at every tier). When etcd cannot be asked the read goes on: the window's state is
   * still exactly etcd's at that revision.
   */
  async checkExact(revision: Revision): Promise<void> {
    if (revision < this.#compactedBelow) throw compactedError(revision);
    let compacted: boolean;
    try {
      compacted = await isCompacted(this.#o.client, this.#o.prefix, revision);
    } catch {
      return;
    }
    if (!compacted) return;
    this.noteCompacted(revision + 1);
    throw compactedError(revision);
  }

  /** Runs one self-check now (the timer's job; tests call it too). */
  async checkNow(): Promise<SelfCheckResult> {
    if (this.#running) return 'skipped';
    this.#running = true;
    try {
      return await this.#check();
    } finally {
      this.#running = false;
    }
  }

  async #check(): Promise<SelfCheckResult> {
    const { cache, clock } = this.#o;
    const startedAt = clock.now();
    if (!cache.ready) return this.#record('skipped', 'the cache is not loaded', startedAt);
    // Taken in one synchronous step: both describe the state at `revision`; the snapshot is then
    // hashed a slice at a time, so a large prefix never holds the event loop for long.
    const revision = cache.revision;
    const incremental = cache.digest;
    const snapshot = cache.snapshot();
    const lists = this.#o.lists();
    const stored = await digestInSlices(snapshot, () => new Promise((r) => clock.setTimeout(r, 0)));
    let etcd: Awaited<ReturnType<typeof etcdDigestAt>>;
    try {
      etcd = await etcdDigestAt(this.#o.client, this.#o.prefix, revision, this.#o.pageSize);
    } catch (error) {
      if (error instanceof Expired)
        return this.#record('skipped', `etcd compacted revision ${revision}`, startedAt, revision);
      if (error instanceof FutureRevision)
        return this.#mismatch(`etcd has not reached the cache's revision ${revision}`, startedAt, revision);
      return this.#record('failed', `etcd unavailable: ${String(error)}`, startedAt, revision);
    }
    if (this.#o.lists() !== lists)
      return this.#record('skipped', 'the cache relisted during the check', startedAt, revision);
    const cost = { lastEtcdRequests: etcd.pages, lastEtcdBytes: etcd.bytes };
    if (stored !== incremental)
      return this.#mismatch(
        `the cache's objects (digest ${formatDigest(stored)}) differ from its own digest ${formatDigest(incremental)}`,
        startedAt,
        revision,
        cost,
      );
    if (etcd.digest !== stored)
      return this.#mismatch(
        `the cache (digest ${formatDigest(stored)}, ${cache.size} objects) differs from etcd (${formatDigest(etcd.digest)}, ${etcd.objects} objects) at revision ${revision}`,
        startedAt,
        revision,
        cost,
      );
    return this.#record('ok', undefined, startedAt, revision, cost);
  }

  async #verify(revision: Revision, digest: Digest | undefined): Promise<HistoryVerdict> {
    const { client, prefix } = this.#o;
    const head = await currentRevision(client, prefix);
    if (head < revision)
      return { kind: 'other', reason: `etcd's head ${head} is below the cache's revision ${revision}` };
    let etcd: Digest;
    try {
      etcd = (await etcdDigestAt(client, prefix, revision, this.#o.pageSize)).digest;
    } catch (error) {
      if (error instanceof Expired) return { kind: 'compacted' };
      if (error instanceof FutureRevision)
        return { kind: 'other', reason: `etcd has not reached the cache's revision ${revision}` };
      throw error;
    }
    if (digest === undefined || etcd !== digest)
      return {
        kind: 'other',
        reason: `etcd's state at revision ${revision} (digest ${formatDigest(etcd)}) is not the cache's (${digest === undefined ? 'unknown' : formatDigest(digest)})`,
      };
    return { kind: 'same' };
  }

  #mismatch(
    reason: string,
    startedAt: number,
    revision: Revision,
    cost: { lastEtcdRequests?: number; lastEtcdBytes?: number } = {},
  ): SelfCheckResult {
    this.#o.log.error('self-check failed, dropping the cache and relisting', { revision, reason });
    this.#status = { ...this.#status, historyChanges: this.#status.historyChanges + 1 };
    this.#newHistory();
    this.#o.resync(`self-check: ${reason}`);
    return this.#record('mismatch', reason, startedAt, revision, cost);
  }

  #record(
    result: SelfCheckResult,
    reason: string | undefined,
    startedAt: number,
    revision?: Revision,
    cost: { lastEtcdRequests?: number; lastEtcdBytes?: number } = {},
  ): SelfCheckResult {
    const now = this.#o.clock.now();
    const s = this.#status;
    this.#status = {
      ...s,
      checks: s.checks + 1,
      ok: s.ok + (result === 'ok' ? 1 : 0),
      mismatches: s.mismatches + (result === 'mismatch' ? 1 : 0),
      skipped: s.skipped + (result === 'skipped' ? 1 : 0),
      failed: s.failed + (result === 'failed' ? 1 : 0),
      lastResult: result,
      lastReason: reason,
      lastRevision: revision,
      lastCheckAt: now,
      lastDurationMs: now - startedAt,
      lastEtcdRequests: cost.lastEtcdRequests,
      lastEtcdBytes: cost.lastEtcdBytes,
      ...(result === 'ok' ? { lastGoodAt: now, lastGoodRevision: revision } : {}),
    };
    return result;
  }

  /** What was known of the old history's compactions says nothing about the new one. */
  #newHistory(): void {
    this.#compactedBelow = 0;
  }

  #schedule(): void {
    const delay = this.#o.intervalMs * (0.5 + this.#random());
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined;
      this.checkNow()
        .catch((error: unknown) => this.#o.log.error('self-check crashed', { error: String(error) }))
        .finally(() => {
          if (!this.#stopped) this.#schedule();
        });
    }, delay);
  }
}

function compactedError(revision: Revision): Expired {
  return Expired.tooOld(revision, 'etcd has compacted it');
}
