/**
 * The verdict on a robustness run: does every read and every watch stream the tiers served agree
 * with etcd's recorded history (robustness/model.ts)? Pure and synchronous, so that it is unit
 * tested on synthetic histories (robustness/checker.test.ts) and re-run on a saved failure.
 *
 * Reads (API.md "Which snapshot a read sees", "Responses"):
 * - a get served at R is exactly etcd's state of the key at R (or 404 when absent at R);
 *   a list page at R is exactly the keys under the prefix after the page's start, in key order,
 *   the first `limit` of them, with `remainingItemCount` = the rest;
 * - notOlderThan n → R ≥ n; exact n and continue pages → R = n; most recent → R ≥ `floor`, the
 *   highest revision any client had seen committed before sending (linearizability);
 * - no time travel (exact and continue reads excepted): a most-recent read, or one whose rv is
 *   at least the client's highest R so far (it carries its revision across a tier switch), is
 *   never older than any earlier read of that client; other reads never go back per client,
 *   target and serving source (`X-Served-By`);
 * - a 410 only for exact/continue reads of a revision etcd had compacted; a 500 never.
 *
 * Watches, per session (API.md "Watch"):
 * - initial events are exactly the state at the session's revision (fresh as its mode demands);
 * - the changes come whole revision by whole revision, each equal to etcd's changes under the
 *   prefix at that revision (DELETED carrying the last state with modRevision = the deleting
 *   revision), the first one being the first revision after the start with a change under the
 *   prefix, and each next one the next such revision: no gap, no duplicate, no reordering;
 * - a BOOKMARK never goes back and never claims a revision whose changes were not delivered;
 * - an ERROR 410 only when the position truly left the window. Conservatively accepted causes:
 *   the client was a slow reader (API.md allows it); etcd had compacted the position; the tier
 *   said its history started after it (sampled when the error arrived; it only grows, so a later
 *   sample is more permissive); a relay restart was in progress. Targets that cannot report
 *   their window get the benefit of the doubt, counted as `unverified`.
 *
 * Informers (the `edgewatch/client` informer, robustness/informer-check.ts): at every revision an
 * informer claims its store is exact, the store equals etcd's state under its prefix there; its
 * handlers never repeat a change, and its claims never go back.
 *
 * A trailing revision of a session that did not end cleanly may be cut short by the connection;
 * it is checked only as far as it got. `resumePoint` is the rule the clients follow to resume, so
 * a resume never depends on a revision that might have been cut.
 */
import { checkInformers, checkInformersAcrossHistories } from './informer-check.ts';
import {
  type FaultRecord,
  HISTORY_FAULT_KINDS,
  HISTORY_GRACE_MS,
  type ModelObject,
  objectText,
  type ReadRecord,
  type RunRecord,
  Truth,
  type WatchSession,
  type WireEvent,
} from './model.ts';

export type ViolationKind =
  | 'wrong-state'
  | 'stale-read'
  | 'not-exact'
  | 'backwards'
  | 'future-revision'
  | 'unjustified-expiry'
  | 'server-error'
  | 'bad-response'
  | 'bad-initial-state'
  | 'watch-gap'
  | 'watch-duplicate'
  | 'watch-wrong-event'
  | 'txn-split'
  | 'bad-bookmark'
  /** An informer's store, at a revision it claimed to be exact, differed from etcd's state there. */
  | 'informer-state'
  | 'harness';

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
  /** Read ids (`read:N`) or watch session ids (`watch:N`) involved. */
  readonly refs: readonly string[];
}

export interface CheckStats {
  readsChecked: number;
  /** Reads answered with an error that the faults excuse (429, 503, 504, no response). */
  readsTolerated: number;
  sessions: number;
  /** Live change events compared with the history. */
  eventsChecked: number;
  /** Synthetic initial ADDED events compared with the history. */
  initialEventsChecked: number;
  bookmarks: number;
  /** ERROR 410 events by accepted cause. */
  expiries: Record<string, number>;
  /** Informers (robustness/informer-check.ts): syncs compared with etcd's state, handler calls replayed. */
  informerSyncs: number;
  informerChanges: number;
  /** Of the syncs, those judged as a resume into a later, unbumped history (README's limit). */
  informerSpliced: number;
}

export interface CheckResult {
  readonly violations: Violation[];
  readonly stats: CheckStats;
}

/**
 * Checks a whole run. With several histories (`run.epochs`: etcd wiped or restored during the
 * run), each record is judged against the history it could have come from: one that existed
 * while it was in flight, and — for a most-recent read — the one etcd held when it was sent, or,
 * for anything else, any history a tier might not have left yet (up to `HISTORY_GRACE_MS` after
 * the next one settled). A record only one history fits, sent after that history settled, is
 * checked in full, per-client rules included, against that history's records alone; one that
 * several fit must be exactly right for one of them (freshness floors and the order across
 * records are not checked for it, and a revision above a history's recorded head — a lease that
 * expired as etcd was taken down — is tolerated).
 */
export function checkRun(run: RunRecord): CheckResult {
  const violations: Violation[] = [];
  const stats = emptyStats();
  const epochs = run.epochs ?? [];
  const histories = [
    { truth: new Truth(run.truth), startedAt: Number.NEGATIVE_INFINITY, settledAt: Number.NEGATIVE_INFINITY },
    ...epochs.map((e) => ({ truth: new Truth(e.truth), startedAt: e.startedAt, settledAt: e.settledAt })),
  ];
  for (const [i, h] of histories.entries()) {
    const problem = h.truth.problem();
    if (problem)
      violations.push({
        kind: 'harness',
        message: `ground truth${i > 0 ? ` of history ${i}` : ''} unusable: ${problem}`,
        refs: [],
      });
  }
  const informers =
    histories.length === 1
      ? checkInformers((histories[0] as { truth: Truth }).truth, run.informers ?? [])
      : checkInformersAcrossHistories(histories, run.informers ?? [], HISTORY_GRACE_MS);
  violations.push(...informers.violations);
  stats.informerSyncs = informers.stats.syncsChecked;
  stats.informerChanges = informers.stats.changes;
  stats.informerSpliced = informers.stats.splicedSyncs;
  if (histories.length === 1) {
    const truth = histories[0]?.truth as Truth;
    checkReads(truth, run.reads, violations, stats);
    checkWatches(truth, run.sessions, run.faults, violations, stats);
    return { violations, stats };
  }
  /** The histories a record in flight over [from, to] may have been answered from. */
  const candidates = (from: number, to: number, mostRecent: boolean): number[] =>
    histories.flatMap((h, i) => {
      const next = histories[i + 1];
      if (to < h.startedAt) return [];
      if (next && from >= next.settledAt + (mostRecent ? 0 : HISTORY_GRACE_MS)) return [];
      return [i];
    });
  const exclusiveReads = histories.map((): ReadRecord[] => []);
  const exclusiveSessions = histories.map((): WatchSession[] => []);
  for (const r of run.reads) {
    const c = candidates(r.sentAt, r.receivedAt, r.mode === 'mostRecent');
    const only = c.length === 1 ? (c[0] as number) : undefined;
    if (only !== undefined && r.sentAt >= (histories[only]?.settledAt ?? 0)) exclusiveReads[only]?.push(r);
    else
      judgeAmbiguous(
        c,
        violations,
        stats,
        (truth, out, st) => checkReads(truth, [r], out, st, true),
        histories,
      );
  }
  for (const s of run.sessions) {
    const c = candidates(s.sentAt, s.endedAt, false);
    const only = c.length === 1 ? (c[0] as number) : undefined;
    if (only !== undefined && s.sentAt >= (histories[only]?.settledAt ?? 0)) exclusiveSessions[only]?.push(s);
    else
      judgeAmbiguous(
        c,
        violations,
        stats,
        (truth, out, st) => checkSession(truth, s, run.faults, out, st, true),
        histories,
      );
  }
  for (const [i, h] of histories.entries()) {
    checkReads(h.truth, exclusiveReads[i] ?? [], violations, stats);
    checkWatches(h.truth, exclusiveSessions[i] ?? [], run.faults, violations, stats);
  }
  return { violations, stats };
}

/**
 * A record several histories fit: clean against one of them is enough (its stats count); else
 * the candidate with the fewest violations is reported. No candidate at all is a violation.
 */
function judgeAmbiguous(
  candidates: readonly number[],
  out: Violation[],
  stats: CheckStats,
  check: (truth: Truth, out: Violation[], stats: CheckStats) => void,
  histories: readonly { truth: Truth }[],
): void {
  let best: { violations: Violation[]; stats: CheckStats } | undefined;
  for (const i of candidates) {
    const truth = histories[i]?.truth;
    if (!truth) continue;
    const v: Violation[] = [];
    const st = emptyStats();
    check(truth, v, st);
    if (!best || v.length < best.violations.length) best = { violations: v, stats: st };
    if (v.length === 0) break;
  }
  if (!best) {
    out.push({ kind: 'harness', message: 'a record no history of the run can have answered', refs: [] });
    return;
  }
  for (const v of best.violations) out.push(v);
  mergeStats(stats, best.stats);
}

function emptyStats(): CheckStats {
  return {
    readsChecked: 0,
    readsTolerated: 0,
    sessions: 0,
    eventsChecked: 0,
    initialEventsChecked: 0,
    bookmarks: 0,
    expiries: {},
    informerSyncs: 0,
    informerChanges: 0,
    informerSpliced: 0,
  };
}

function mergeStats(into: CheckStats, from: CheckStats): void {
  into.readsChecked += from.readsChecked;
  into.readsTolerated += from.readsTolerated;
  into.sessions += from.sessions;
  into.eventsChecked += from.eventsChecked;
  into.initialEventsChecked += from.initialEventsChecked;
  into.bookmarks += from.bookmarks;
  for (const [k, n] of Object.entries(from.expiries)) into.expiries[k] = (into.expiries[k] ?? 0) + n;
}

const TOLERATED = new Set([0, 429, 503, 504]);
const HISTORY_KINDS: ReadonlySet<string> = new Set(HISTORY_FAULT_KINDS);

/** `lenient`: a record several histories fit (see `checkRun`): no floors, no per-client order. */
function checkReads(
  truth: Truth,
  reads: readonly ReadRecord[],
  out: Violation[],
  stats: CheckStats,
  lenient = false,
): void {
  const last = new Map<string, { served: number; id: number }>();
  for (const r of [...reads].sort((a, b) => a.sentAt - b.sentAt || a.id - b.id)) {
    const ref = [`read:${r.id}`];
    const what = `${r.client} ${r.verb} ${r.key} mode=${r.mode}${r.rv !== undefined ? ` rv=${r.rv}` : ''}${r.limit !== undefined ? ` limit=${r.limit}` : ''} via ${r.target}`;
    if (r.status >= 500 && !TOLERATED.has(r.status)) {
      out.push({ kind: 'server-error', message: `${what}: HTTP ${r.status} ${r.reason ?? ''}`, refs: ref });
      continue;
    }
    if (r.status === 410) {
      const compacted = truth.compactedAt(r.receivedAt);
      const exactish = r.mode === 'exact' || r.mode === 'continue';
      if (!exactish || r.rv === undefined || r.rv >= compacted) {
        out.push({
          kind: 'unjustified-expiry',
          message: `${what}: 410 although etcd had compacted only up to ${compacted}`,
          refs: ref,
        });
      } else stats.readsTolerated++;
      continue;
    }
    if (TOLERATED.has(r.status)) {
      stats.readsTolerated++;
      continue;
    }
    const okStatus = r.status === 200 || (r.status === 404 && r.verb === 'get');
    if (!okStatus || r.served === undefined) {
      out.push({ kind: 'bad-response', message: `${what}: HTTP ${r.status} ${r.reason ?? ''}`, refs: ref });
      continue;
    }
    const R = r.served;
    stats.readsChecked++;
    if (R > truth.head && lenient) {
      stats.readsTolerated++;
      continue;
    }
    if (R > truth.head) {
      out.push({
        kind: 'future-revision',
        message: `${what}: served at ${R} > etcd head ${truth.head}`,
        refs: ref,
      });
      continue;
    }
    // Freshness.
    if (r.mode === 'mostRecent' && R < r.floor && !lenient)
      out.push({
        kind: 'stale-read',
        message: `${what}: most-recent read served at ${R}, but ${r.floor} was committed and observed before it was sent`,
        refs: ref,
      });
    if (r.mode === 'notOlderThan' && R < (r.rv ?? 0))
      out.push({ kind: 'stale-read', message: `${what}: served at ${R} < rv ${r.rv}`, refs: ref });
    if ((r.mode === 'exact' || r.mode === 'continue') && R !== r.rv)
      out.push({
        kind: 'not-exact',
        message: `${what}: served at ${R}, asked for exactly ${r.rv}`,
        refs: ref,
      });
    if (r.mode !== 'exact' && r.mode !== 'continue' && !lenient) {
      // No time travel. A read that asks for the most recent state, or carries the client's own
      // highest revision, is never served older than anything the client read before, from any
      // tier. Any other read (rv=0, an older rv) may see a tier that is behind, but one source —
      // a target's own cache (`X-Served-By`) — never goes back: not across a relay restart (it
      // relists at etcd's head), not across a Durable Object eviction (it reloads what it stored).
      const own = `${r.client}\u0000${r.target}\u0000${r.servedBy ?? ''}`;
      const anyTier = `${r.client}\u0000*`;
      const prevAny = last.get(anyTier);
      const carries =
        r.mode === 'mostRecent' ||
        (r.mode === 'notOlderThan' && prevAny !== undefined && (r.rv ?? 0) >= prevAny.served);
      const prev = carries ? prevAny : last.get(own);
      if (prev && R < prev.served)
        out.push({
          kind: 'backwards',
          message: `${what}: served at ${R} after read:${prev.id} was served at ${prev.served}${carries ? '' : ` by the same source (${r.servedBy ?? 'unnamed'})`}`,
          refs: [`read:${prev.id}`, ...ref],
        });
      for (const k of [own, anyTier]) {
        const p = last.get(k);
        if (!p || R >= p.served) last.set(k, { served: R, id: r.id });
      }
    }
    // Content.
    if (r.verb === 'get') {
      const expected = truth.keyAt(r.key, R);
      const got = r.status === 404 ? undefined : r.object;
      if (objectText(expected) !== objectText(got))
        out.push({
          kind: 'wrong-state',
          message: `${what} at ${R}: expected ${objectText(expected)}, got ${objectText(got)}`,
          refs: ref,
        });
      continue;
    }
    const expected = truth.listAt(r.key, R, r.after);
    const items = r.items ?? [];
    const n = r.limit !== undefined ? Math.min(r.limit, expected.length) : expected.length;
    const problem = pageProblem(expected, items, n, r.continued === true, r.remaining);
    if (problem)
      out.push({
        kind: 'wrong-state',
        message: `${what}${r.after !== undefined ? ` after ${r.after}` : ''} at ${R}: ${problem}`,
        refs: ref,
      });
  }
}

function pageProblem(
  expected: readonly ModelObject[],
  items: readonly ModelObject[],
  n: number,
  continued: boolean,
  remaining: number | undefined,
): string | undefined {
  for (let i = 0; i < Math.max(items.length, n); i++) {
    const want = i < n ? expected[i] : undefined;
    const got = items[i];
    if (objectText(want) !== objectText(got))
      return `item ${i}: expected ${objectText(want)}, got ${objectText(got)}`;
  }
  const rest = expected.length - items.length;
  if (rest > 0 && !continued) return `${rest} more items exist but no continue token was given`;
  if (remaining !== undefined && remaining !== rest)
    return `remainingItemCount ${remaining}, expected ${rest}`;
  return undefined;
}

/** The revision a watch event is at (its object's modRevision; a bookmark's resourceVersion). */
function eventRevision(e: WireEvent): number {
  if (e.type === 'BOOKMARK') return Number(e.object.resourceVersion);
  return Number(e.object.modRevision);
}

function isChange(e: WireEvent): boolean {
  return e.type === 'ADDED' || e.type === 'MODIFIED' || e.type === 'DELETED';
}

/**
 * Where a client resumes after `session`: the changes after the returned revision are the ones it
 * still needs; `undefined` means it must start over (relist) — after an ERROR, or when it never
 * got a whole initial state. A trailing revision of a session that did not end cleanly may have
 * been cut by the connection, so it does not count.
 */
export function resumePoint(
  session: Pick<WatchSession, 'start' | 'events' | 'end' | 'headerRv'>,
): number | undefined {
  const { start, events } = session;
  let position: number | undefined;
  let i = 0;
  if (start.kind === 'after') position = start.rv;
  else {
    const R = session.headerRv;
    if (R === undefined) return undefined;
    while (i < events.length && events[i]?.type === 'ADDED' && eventRevision(events[i] as WireEvent) <= R)
      i++;
    const next = events[i];
    const initialDone = start.sendInitialEvents
      ? next?.type === 'BOOKMARK' && next.object.initialEventsEnd === true
      : next !== undefined || session.end === 'clean';
    if (!initialDone) return undefined;
    position = R;
  }
  let pending: number | undefined;
  for (; i < events.length; i++) {
    const e = events[i] as WireEvent;
    if (e.type === 'ERROR') return undefined;
    const rev = eventRevision(e);
    if (e.type === 'BOOKMARK') {
      if (pending !== undefined) position = pending;
      pending = undefined;
      if (rev > position) position = rev;
      continue;
    }
    if (pending !== undefined && rev !== pending) position = pending;
    pending = rev;
  }
  if (pending !== undefined && session.end === 'clean') position = pending;
  return position;
}

function checkWatches(
  truth: Truth,
  sessions: readonly WatchSession[],
  faults: readonly FaultRecord[],
  out: Violation[],
  stats: CheckStats,
): void {
  const byWatcher = new Map<string, WatchSession[]>();
  for (const s of sessions) {
    const list = byWatcher.get(s.watcher) ?? [];
    list.push(s);
    byWatcher.set(s.watcher, list);
  }
  for (const list of byWatcher.values()) {
    list.sort((a, b) => a.id - b.id);
    let resume: number | undefined;
    for (const s of list) {
      if (s.start.kind === 'after' && resume !== undefined && s.start.rv !== resume)
        out.push({
          kind: 'harness',
          message: `${s.watcher}: resumed from ${s.start.rv}, the rule says ${resume}`,
          refs: [`watch:${s.id}`],
        });
      checkSession(truth, s, faults, out, stats);
      if (s.end !== 'refused') resume = resumePoint(s);
    }
  }
}

function checkSession(
  truth: Truth,
  s: WatchSession,
  faults: readonly FaultRecord[],
  out: Violation[],
  stats: CheckStats,
  lenient = false,
): void {
  const ref = [`watch:${s.id}`];
  const what = `${s.watcher} watch ${s.prefix} ${s.start.kind === 'after' ? `after ${s.start.rv}` : `initial ${s.start.mode}${s.start.rv !== undefined ? ` rv=${s.start.rv}` : ''}`} via ${s.target}`;
  const fail = (kind: ViolationKind, message: string) =>
    out.push({ kind, message: `${what}: ${message}`, refs: ref });
  if (s.status >= 500 && !TOLERATED.has(s.status)) return void fail('server-error', `HTTP ${s.status}`);
  if (s.end === 'refused') return;
  if (s.status !== 200) return void fail('bad-response', `HTTP ${s.status}`);
  stats.sessions++;
  const { events } = s;
  let i = 0;
  let position: number;
  if (s.start.kind === 'after') position = s.start.rv;
  else {
    const R = s.headerRv;
    if (R === undefined)
      return void fail('bad-response', 'no X-Resource-Version on a watch with initial events');
    if (R > truth.head) {
      if (!lenient) fail('future-revision', `initial state at ${R} > etcd head ${truth.head}`);
      return;
    }
    if (s.start.mode === 'mostRecent' && R < s.floor && !lenient)
      fail('stale-read', `initial state at ${R}, but ${s.floor} was observed committed before the request`);
    if (s.start.mode === 'notOlderThan' && R < (s.start.rv ?? 0))
      fail('stale-read', `initial state at ${R} < rv ${s.start.rv}`);
    const initial = new Map<string, WireEvent>();
    while (i < events.length && events[i]?.type === 'ADDED' && eventRevision(events[i] as WireEvent) <= R) {
      const e = events[i] as WireEvent;
      const key = String(e.object.key);
      if (initial.has(key)) fail('bad-initial-state', `initial ADDED for ${key} twice`);
      initial.set(key, e);
      i++;
    }
    const next = events[i];
    const complete = s.start.sendInitialEvents
      ? next?.type === 'BOOKMARK' && next.object.initialEventsEnd === true
      : next !== undefined || s.end === 'clean';
    const expected = truth.listAt(s.prefix, R);
    const wanted = new Map(expected.map((o) => [o.key, o]));
    for (const [key, e] of initial) {
      if (objectText(wanted.get(key)) !== objectText(e.object as unknown as ModelObject))
        fail(
          'bad-initial-state',
          `initial ADDED ${objectText(e.object as unknown as ModelObject)}, state at ${R} is ${objectText(wanted.get(key))}`,
        );
    }
    if (complete)
      for (const o of expected)
        if (!initial.has(o.key)) fail('bad-initial-state', `initial events at ${R} miss ${objectText(o)}`);
    stats.initialEventsChecked += initial.size;
    if (s.start.sendInitialEvents && i < events.length) {
      const b = events[i] as WireEvent;
      if (b.type !== 'BOOKMARK' || b.object.initialEventsEnd !== true || eventRevision(b) !== R)
        fail(
          'bad-bookmark',
          `expected BOOKMARK initialEventsEnd at ${R} after the initial events, got ${JSON.stringify(b)}`,
        );
      else i++;
    }
    position = R;
  }

  let group: WireEvent[] = [];
  let groupRev = 0;
  const flush = (complete: boolean) => {
    if (group.length === 0) return;
    const expected = truth.eventsAt(s.prefix, groupRev);
    const byKey = new Map(expected.map((e) => [e.key, e]));
    const seen = new Set<string>();
    for (const e of group) {
      const key = String(e.object.key);
      if (seen.has(key)) fail('watch-duplicate', `${key} twice at revision ${groupRev}`);
      seen.add(key);
      const want = byKey.get(key);
      const problem = eventProblem(want, e, groupRev);
      if (problem) fail('watch-wrong-event', `at ${groupRev}: ${problem}`);
      stats.eventsChecked++;
    }
    if (complete && seen.size < expected.length) {
      const missing = expected.filter((e) => !seen.has(e.key)).map((e) => e.key);
      fail(
        'txn-split',
        `revision ${groupRev} delivered ${seen.size} of ${expected.length} changes (missing ${missing.join(', ')})`,
      );
    }
    group = [];
  };

  let ended = false;
  for (; i < events.length; i++) {
    const e = events[i] as WireEvent;
    if (ended) {
      fail('bad-response', `event after the ERROR: ${JSON.stringify(e)}`);
      break;
    }
    if (e.type === 'ERROR') {
      flush(true);
      ended = true;
      const code = Number(e.object.code);
      if (code === 410) {
        const cause = expiryCause(truth, s, position, faults);
        if (cause === undefined)
          fail(
            'unjustified-expiry',
            `410 at position ${position}; etcd compacted ${truth.compactedAt(s.endedAt)}, tier window starts ${s.windowStart}`,
          );
        else stats.expiries[cause] = (stats.expiries[cause] ?? 0) + 1;
      } else if (code >= 500 && !TOLERATED.has(code))
        fail('server-error', `ERROR event ${JSON.stringify(e.object)}`);
      continue;
    }
    const rev = eventRevision(e);
    if (!Number.isSafeInteger(rev)) {
      fail('bad-response', `event without a revision: ${JSON.stringify(e)}`);
      continue;
    }
    if (e.type === 'BOOKMARK') {
      flush(true);
      stats.bookmarks++;
      if (rev < position) fail('bad-bookmark', `BOOKMARK ${rev} after position ${position}`);
      const next = truth.nextPrefixRevision(s.prefix, position);
      if (next !== undefined && next <= rev)
        fail('watch-gap', `BOOKMARK ${rev} but the change at ${next} was not delivered`);
      position = Math.max(position, rev);
      continue;
    }
    if (!isChange(e)) continue;
    if (group.length > 0 && rev === groupRev) {
      group.push(e);
      continue;
    }
    flush(true);
    if (rev > truth.head) {
      if (!lenient) fail('future-revision', `event at ${rev} > etcd head ${truth.head}`);
      break;
    }
    if (rev <= position) {
      fail('watch-duplicate', `event at ${rev} after position ${position} (duplicate or out of order)`);
      break;
    }
    const next = truth.nextPrefixRevision(s.prefix, position);
    if (next !== rev) {
      fail('watch-gap', `expected the change at ${next ?? '(none)'} next, got ${rev}`);
      break;
    }
    position = rev;
    groupRev = rev;
    group = [e];
  }
  flush(s.end === 'clean');
}

/** What is wrong with `got` as the wire form of the recorded change `want` at `revision`. */
function eventProblem(
  want: { type: 'PUT' | 'DELETE'; key: string; object?: ModelObject; prev?: ModelObject } | undefined,
  got: WireEvent,
  revision: number,
): string | undefined {
  if (want === undefined) return `unexpected ${got.type} ${JSON.stringify(got.object)}`;
  const object = got.object as unknown as ModelObject;
  if (want.type === 'PUT') {
    const type = want.object && want.object.createRevision === want.object.modRevision ? 'ADDED' : 'MODIFIED';
    if (got.type !== type) return `${want.key}: expected ${type}, got ${got.type}`;
    if (objectText(want.object) !== objectText(object))
      return `${want.key}: expected ${objectText(want.object)}, got ${objectText(object)}`;
    return undefined;
  }
  if (got.type !== 'DELETED') return `${want.key}: expected DELETED, got ${got.type}`;
  if (object.modRevision !== revision)
    return `${want.key}: DELETED modRevision ${object.modRevision}, expected ${revision}`;
  if (want.prev === undefined) return undefined; // etcd no longer had the previous state
  // The last state with modRevision = the deleting revision; version 0 (etcd's) or the last one.
  const last = { ...want.prev, modRevision: revision };
  const asLast = objectText({ ...object, version: want.prev.version });
  if (asLast !== objectText(last) || (object.version !== 0 && object.version !== want.prev.version))
    return `${want.key}: DELETED should carry the last state ${objectText(last)}, got ${objectText(object)}`;
  return undefined;
}

function expiryCause(
  truth: Truth,
  s: WatchSession,
  position: number,
  faults: readonly FaultRecord[],
): string | undefined {
  if (s.slow) return 'slowReader';
  // etcd got another history while the session was open (or just before it): every tier ends
  // its watches with 410 once it notices (API.md "Histories").
  if (
    faults.some(
      (f) =>
        HISTORY_KINDS.has(f.kind) && s.endedAt >= f.startedAt && s.sentAt <= f.endedAt + HISTORY_GRACE_MS,
    )
  )
    return 'historyChange';
  if (position < truth.compactedAt(s.endedAt)) return 'compacted';
  if (s.windowStart !== undefined && position < s.windowStart) return 'window';
  if (
    faults.some(
      (f) =>
        (f.kind === 'relayRestart' || f.kind === 'relayKill') &&
        s.endedAt >= f.startedAt &&
        s.endedAt <= f.endedAt + 1000,
    )
  )
    return 'relayRestart';
  if (s.windowStart === undefined) return 'unverified';
  return undefined;
}
