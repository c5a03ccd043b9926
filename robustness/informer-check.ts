/**
 * The verdict on the informers of a robustness run (robustness/informers.ts): does what each
 * informer's store showed agree with etcd's recorded history?
 *
 * The record is the informer's own story, in order: every add/update/delete its handlers got,
 * every `sync(R)` (the store claims to be exactly etcd's state under its prefix at R), and now
 * and then a copy of the store itself. Replaying the handler calls rebuilds the store; then:
 *
 * - at each sync R, the rebuilt store equals etcd's state under the prefix at R (`informer-state`);
 * - syncs never go back (`backwards`) and never claim a revision etcd did not reach
 *   (`future-revision`);
 * - each handler call fits what the store held: an add for a key it did not hold, an update or
 *   delete for one it did, an update moving the key's modRevision forward (a repeated event
 *   would not), a delete not older than what it deletes (`watch-duplicate`, `watch-wrong-event`);
 * - each copy of the store equals the rebuilt one: the handlers told the whole story
 *   (`informer-state`).
 *
 * Linear in the history and the record: etcd's state is advanced revision by revision as the
 * syncs move, and only keys changed since the last sync are compared.
 */
import type { InformerRecord, ModelObject, Truth } from './model.ts';
import { compareKeys, objectText } from './model.ts';

export type { InformerEntry, InformerRecord } from './model.ts';

export type InformerViolationKind =
  | 'informer-state'
  | 'backwards'
  | 'future-revision'
  | 'watch-duplicate'
  | 'watch-wrong-event';

export interface InformerViolation {
  readonly kind: InformerViolationKind;
  readonly message: string;
  /** `informer:<name>`. */
  readonly refs: readonly string[];
}

export interface InformerStats {
  informers: number;
  /** Syncs whose store was compared with etcd's state. */
  syncsChecked: number;
  /** Handler calls replayed. */
  changes: number;
  snapshots: number;
  /**
   * Syncs that matched no history but exactly the documented splice: an old history's state with
   * a later, unbumped one's changes after the revision the informer resumed from.
   */
  splicedSyncs: number;
}

/** Reported per informer at most; the first ones say what went wrong. */
const MAX_VIOLATIONS = 20;

function emptyInformerStats(informers: number): InformerStats {
  return { informers, syncsChecked: 0, changes: 0, snapshots: 0, splicedSyncs: 0 };
}

export function checkInformers(
  truth: Truth,
  records: readonly InformerRecord[],
): { violations: InformerViolation[]; stats: InformerStats } {
  const violations: InformerViolation[] = [];
  const stats = emptyInformerStats(records.length);
  for (const record of records) checkOne(truth, record, violations, stats);
  return { violations, stats };
}

function checkOne(
  truth: Truth,
  record: InformerRecord,
  out: InformerViolation[],
  stats: InformerStats,
): void {
  const { prefix } = record;
  const refs = [`informer:${record.name}`];
  let reported = 0;
  const fail = (kind: InformerViolationKind, message: string) => {
    if (reported++ < MAX_VIOLATIONS) out.push({ kind, message: `${record.name}: ${message}`, refs });
  };
  /** The store rebuilt from the handler calls. */
  const held = new Map<string, ModelObject>();
  /** etcd's state under the prefix at `etcdAt`. */
  const etcd = new Map<string, ModelObject>();
  let etcdAt = 1;
  /** Keys changed on either side since the last comparison. */
  const dirty = new Set<string>();
  let lastSync = 0;

  for (const entry of record.entries) {
    if (entry.op === 'list') continue;
    if (entry.op === 'sync') {
      const R = entry.revision;
      if (R < lastSync) {
        fail('backwards', `sync at ${R} after a sync at ${lastSync}`);
        continue;
      }
      if (R > truth.head) {
        fail('future-revision', `sync at ${R}, beyond etcd's head ${truth.head}`);
        continue;
      }
      lastSync = R;
      for (let r = truth.nextPrefixRevision(prefix, etcdAt); r !== undefined && r <= R; ) {
        for (const e of truth.eventsAt(prefix, r)) {
          if (e.type === 'PUT' && e.object) etcd.set(e.key, e.object);
          else etcd.delete(e.key);
          dirty.add(e.key);
        }
        r = truth.nextPrefixRevision(prefix, r);
      }
      etcdAt = Math.max(etcdAt, R);
      stats.syncsChecked++;
      for (const key of dirty) {
        const mine = held.get(key);
        const theirs = etcd.get(key);
        if (objectText(mine) === objectText(theirs)) continue;
        fail('informer-state', `at ${R} the store held ${objectText(mine)}, etcd ${objectText(theirs)}`);
        // Take etcd's version, so one wrong key is reported once, not at every later sync.
        if (theirs) held.set(key, theirs);
        else held.delete(key);
      }
      dirty.clear();
      continue;
    }
    if (entry.op === 'snapshot') {
      stats.snapshots++;
      const copy = new Map(entry.objects.map((o) => [o.key, o]));
      const keys = new Set([...copy.keys(), ...held.keys()]);
      for (const key of keys) {
        if (objectText(copy.get(key)) !== objectText(held.get(key))) {
          fail(
            'informer-state',
            `the store at ${entry.revision} held ${objectText(copy.get(key))} where its handlers said ${objectText(held.get(key))}`,
          );
          break;
        }
      }
      continue;
    }
    stats.changes++;
    dirty.add(entry.object.key);
    replay(held, entry, true, fail);
  }
}

/**
 * Applies one handler call to the rebuilt store, checking that it fits: an add of a key not
 * held, an update or delete of one held, and — when `forwardOnly` (anything but a relist into
 * another history) — an update moving the key forward and a delete not older than what it deletes.
 */
function replay(
  held: Map<string, ModelObject>,
  entry: { readonly op: 'add' | 'update' | 'delete'; readonly object: ModelObject },
  forwardOnly: boolean,
  fail: (kind: InformerViolationKind, message: string) => void,
): void {
  const { object } = entry;
  const previous = held.get(object.key);
  if (entry.op === 'add') {
    if (previous) fail('watch-wrong-event', `add of ${object.key} it already held (${objectText(previous)})`);
    held.set(object.key, object);
  } else if (entry.op === 'update') {
    if (!previous) fail('watch-wrong-event', `update of ${object.key} it did not hold`);
    else if (forwardOnly && object.modRevision <= previous.modRevision) {
      fail(
        'watch-duplicate',
        `update of ${object.key} to modRevision ${object.modRevision} from ${previous.modRevision}`,
      );
    }
    held.set(object.key, object);
  } else {
    if (!previous) fail('watch-wrong-event', `delete of ${object.key} it did not hold`);
    else if (forwardOnly && object.modRevision < previous.modRevision) {
      fail(
        'watch-duplicate',
        `delete of ${object.key} at ${object.modRevision}, older than ${previous.modRevision}`,
      );
    }
    held.delete(object.key);
  }
}

/** One of the run's etcd histories and when it began and settled (robustness/checker.ts). */
export interface HistoryWindow {
  readonly truth: Truth;
  readonly startedAt: number;
  readonly settledAt: number;
}

/**
 * The same verdict for a run in which etcd's history changed (wiped or restored): each sync is
 * judged against the histories a tier could have answered from when it was claimed (in effect
 * then, or left less than `graceMs` before), and the store must equal one of them at that
 * revision in full. Handler calls must still fit the store; only a relist (after a tier said the
 * history changed) may move keys, and the sync that ends it, back.
 *
 * One store is judged otherwise, README's "What it cannot guarantee without `--bump-revision`":
 * an informer whose last matching sync was at R0 in history A and which, without relisting,
 * resumed its watch after R0 from a tier on a later history B that also has R0 (B starts at or
 * below R0: a wipe, or a restore without `--bump-revision`) gets B's changes after R0 on top of
 * A's state at R0, and no revision number could have told it. Until its next relist, such a sync
 * must equal exactly that splice (A at R0, then B's changes in (R0, R]); anything else, and any
 * splice into a bumped history (which starts above R0), is still `informer-state`.
 */
export function checkInformersAcrossHistories(
  histories: readonly HistoryWindow[],
  records: readonly InformerRecord[],
  graceMs: number,
): { violations: InformerViolation[]; stats: InformerStats } {
  const violations: InformerViolation[] = [];
  const stats = emptyInformerStats(records.length);
  for (const record of records) {
    const refs = [`informer:${record.name}`];
    let reported = 0;
    const fail = (kind: InformerViolationKind, message: string) => {
      if (reported++ < MAX_VIOLATIONS) violations.push({ kind, message: `${record.name}: ${message}`, refs });
    };
    const held = new Map<string, ModelObject>();
    let lastSync = 0;
    let listing = false;
    /** The histories the last matching sync fitted, and its revision (none since the last relist). */
    let lastFit: { readonly histories: readonly number[]; readonly revision: number } | undefined;
    /** Splices of A at R0 with a later B's changes after R0 (see above), advanced lazily. */
    let splices: Splice[] | undefined;
    for (const entry of record.entries) {
      if (entry.op === 'list') {
        listing = true;
        lastFit = undefined;
        splices = undefined;
        continue;
      }
      if (entry.op === 'snapshot') continue; // copies are compared by the single-history check
      if (entry.op !== 'sync') {
        stats.changes++;
        replay(held, entry, !listing, fail);
        continue;
      }
      const R = entry.revision;
      if (R < lastSync && !listing) fail('backwards', `sync at ${R} after a sync at ${lastSync}`);
      lastSync = R;
      listing = false;
      const at = entry.at ?? Number.POSITIVE_INFINITY;
      const candidates = histories.filter((h, i) => {
        const next = histories[i + 1];
        return at >= h.startedAt && !(next && at >= next.settledAt + graceMs);
      });
      const mine = [...held.values()]
        .sort((a, b) => compareKeys(a.key, b.key))
        .map(objectText)
        .join('\n');
      const fitting = histories.flatMap((h, i) =>
        candidates.includes(h) &&
        R <= h.truth.head &&
        h.truth.listAt(record.prefix, R).map(objectText).join('\n') === mine
          ? [i]
          : [],
      );
      stats.syncsChecked++;
      if (fitting.length > 0) {
        if (!splices) lastFit = { histories: fitting, revision: R };
        continue;
      }
      if (!splices && lastFit) splices = unboundSplices(histories, record.prefix, lastFit);
      const spliced = splices?.some(
        (s) => candidates.includes(s.into) && R <= s.into.truth.head && spliceText(s, R) === mine,
      );
      if (spliced) {
        stats.splicedSyncs++;
        continue;
      }
      fail(
        'informer-state',
        `at ${R} the store (${held.size} keys) matched none of the ${candidates.length} histories in effect${
          splices?.length ? ' (nor a resume into a later, unbumped one)' : ''
        }`,
      );
    }
  }
  return { violations, stats };
}

/** History A's state under a prefix at `from`, with history `into`'s changes after it up to `at`. */
interface Splice {
  readonly into: HistoryWindow;
  readonly prefix: string;
  readonly state: Map<string, ModelObject>;
  at: number;
}

/**
 * The splices an informer whose last matching sync fitted `lastFit` could be in without being
 * told: into each later history that also has that revision (it starts at or below it).
 */
function unboundSplices(
  histories: readonly HistoryWindow[],
  prefix: string,
  lastFit: { readonly histories: readonly number[]; readonly revision: number },
): Splice[] {
  const R0 = lastFit.revision;
  const out: Splice[] = [];
  for (const a of lastFit.histories) {
    const from = histories[a];
    if (!from) continue;
    for (const into of histories.slice(a + 1)) {
      if (into.truth.baseRevision > R0 || into.truth.head < R0) continue;
      out.push({
        into,
        prefix,
        state: new Map(from.truth.listAt(prefix, R0).map((o) => [o.key, o])),
        at: R0,
      });
    }
  }
  return out;
}

/** The splice's store at `at` (≥ every earlier call's), as the comparison text. */
function spliceText(s: Splice, at: number): string {
  for (let r = s.into.truth.nextPrefixRevision(s.prefix, s.at); r !== undefined && r <= at; ) {
    for (const e of s.into.truth.eventsAt(s.prefix, r)) {
      if (e.type === 'PUT' && e.object) s.state.set(e.key, e.object);
      else s.state.delete(e.key);
    }
    r = s.into.truth.nextPrefixRevision(s.prefix, r);
  }
  s.at = Math.max(s.at, at);
  return [...s.state.values()]
    .sort((a, b) => compareKeys(a.key, b.key))
    .map(objectText)
    .join('\n');
}
