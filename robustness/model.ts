/**
 * The records a robustness run produces and the checker (robustness/checker.ts) judges: etcd's
 * history as an independent recorder saw it, every read and watch session the clients made
 * through the tiers under test, and every fault injected. All plain JSON, so that a failing run
 * can be written to a file and checked again without any server.
 *
 * `Truth` indexes the recorded history so that "etcd's state of key k (or prefix p) at revision
 * R" and "the changes under p after revision n" are cheap questions.
 */
import type { ModelObject } from '../test/contract/etcd-model.ts';

export type { ModelObject };

/** One change of one key at one revision, as etcd's own watch (with prev_kv) reported it. */
export interface RecordedEvent {
  readonly type: 'PUT' | 'DELETE';
  readonly key: string;
  /** The key's state after a PUT; absent for a DELETE. */
  readonly object?: ModelObject;
  /** The key's state before the change; absent when the key did not exist. */
  readonly prev?: ModelObject;
}

/** Every change etcd made at one revision, in etcd's order, and when the recorder got it. */
export interface RecordedRevision {
  readonly revision: number;
  readonly events: readonly RecordedEvent[];
  /** Wall-clock ms when the recorder received it (for age-based window reasoning). */
  readonly at: number;
}

/**
 * etcd's history from revision 1 (the empty store) to `head`, plus the compactions the run made.
 * Invariant (checked by `Truth.problem`): every revision in (1, head] is present exactly once —
 * each etcd revision is made by at least one change, and the recorder watches every key.
 */
export interface GroundTruth {
  /**
   * Where this history starts: the whole keyspace at `revision` (absent: empty at revision 1).
   * A history that etcd was restored into from a snapshot starts with the snapshot's state.
   */
  readonly base?: { readonly revision: number; readonly objects: readonly ModelObject[] };
  readonly revisions: readonly RecordedRevision[];
  readonly head: number;
  /** Compactions in the order made: revisions below `revision` are gone from etcd after `at`. */
  readonly compactions: readonly { readonly revision: number; readonly at: number }[];
}

/** Which snapshot a read asked for (API.md "Which snapshot a read sees"). */
export type ReadMode = 'mostRecent' | 'any' | 'notOlderThan' | 'exact' | 'continue';

/** One get or one list page, as a client sent it and got it back. */
export interface ReadRecord {
  readonly id: number;
  readonly client: string;
  /** The read target's name (`relay`, `edge`, …). */
  readonly target: string;
  readonly verb: 'get' | 'list';
  /** Get: the key. List: the prefix. */
  readonly key: string;
  readonly mode: ReadMode;
  /** The rv the request carried (notOlderThan, exact); for `continue`, the first page's revision. */
  readonly rv?: number;
  readonly limit?: number;
  /** Continue pages: the last key of the previous page (this page holds only keys after it). */
  readonly after?: string;
  /** The highest etcd revision any client had observed committed before this request was sent. */
  readonly floor: number;
  readonly sentAt: number;
  readonly receivedAt: number;
  /** HTTP status; 0 when no response arrived (connection refused, reset, timeout). */
  readonly status: number;
  /** `X-Resource-Version` of a 200/404. */
  readonly served?: number;
  readonly servedBy?: string;
  /** Get 200: the object. */
  readonly object?: ModelObject;
  /** List 200: the page. */
  readonly items?: readonly ModelObject[];
  readonly continued?: boolean;
  readonly remaining?: number;
  /** Error responses: the Status reason (or the network error). */
  readonly reason?: string;
}

/** A watch event as it came off the wire. */
export interface WireEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: Record<string, unknown>;
}

/** Where a watch session started. */
export type WatchStart =
  /** The changes after `rv` (a resume, or an explicit rv=n). */
  | { readonly kind: 'after'; readonly rv: number }
  /** Synthetic ADDED events for a state (rv unset: most recent; `0`: any; n: not older than n), then the changes. */
  | {
      readonly kind: 'initial';
      readonly mode: 'mostRecent' | 'any' | 'notOlderThan';
      readonly rv?: number;
      /** sendInitialEvents=true: a BOOKMARK with initialEventsEnd must close the initial events. */
      readonly sendInitialEvents: boolean;
    };

/**
 * How a session ended. `clean`: the server ended the stream (every revision it sent is whole);
 * `broken`: the connection failed; `clientClosed`: the client hung up; `running`: still open
 * when the run ended; `refused`: no stream (non-200 or no connection).
 */
export type SessionEnd = 'clean' | 'broken' | 'clientClosed' | 'running' | 'refused';

/** One HTTP watch request and everything it delivered. */
export interface WatchSession {
  readonly id: number;
  /** The watcher (a client that keeps one logical watch going across sessions). */
  readonly watcher: string;
  readonly target: string;
  readonly prefix: string;
  readonly start: WatchStart;
  readonly floor: number;
  readonly sentAt: number;
  readonly endedAt: number;
  readonly status: number;
  readonly headerRv?: number;
  readonly events: readonly WireEvent[];
  readonly end: SessionEnd;
  /** The client stopped reading during this session (a slow consumer may be expired). */
  readonly slow: boolean;
  /** The tier's history start, sampled when an ERROR event arrived (when the target can tell). */
  readonly windowStart?: number;
}

/**
 * What an informer (robustness/informers.ts, the `edgewatch/client` informer) told, in order:
 * each handler call, each sync claim, and now and then a copy of its store.
 */
export type InformerEntry =
  | { readonly op: 'add' | 'update' | 'delete'; readonly object: ModelObject }
  /** The store is exactly etcd's state under the prefix at `revision` (claimed at wall time `at`). */
  | { readonly op: 'sync'; readonly revision: number; readonly at?: number }
  /** The informer (re)listed: the handler calls up to the next sync are that list's differences. */
  | { readonly op: 'list' }
  /** A copy of the store (at the informer's `revision`, possibly mid-revision). */
  | { readonly op: 'snapshot'; readonly revision: number; readonly objects: readonly ModelObject[] };

/** One informer of the run, kept on one target and prefix throughout. */
export interface InformerRecord {
  readonly name: string;
  readonly target: string;
  readonly prefix: string;
  readonly entries: readonly InformerEntry[];
}

/**
 * What a fault does (robustness/faults.ts). `etcdLeaderKill` needs a 3-member cluster; the
 * `edge…` kinds need the edge Worker; every other kind fits every setup.
 */
export type FaultKind =
  | 'etcdKill'
  | 'etcdLeaderKill'
  | 'compactNearHead'
  | 'relayRestart'
  | 'relayKill'
  | 'linkCut'
  | 'linkDelay'
  | 'blackHole'
  | 'slowWatcher'
  | 'edgeEvict'
  | 'edgeLinkCut'
  | 'edgeLinkDelay'
  | 'edgeBlackHole'
  | HistoryFaultKind;

/**
 * Faults that give etcd another history (robustness/faults.ts): its data wiped (an empty
 * member), or every member restored from a snapshot taken a moment earlier, without or with
 * `--bump-revision --mark-compacted`; `…Stopped`: with the relay and the edge stopped meanwhile,
 * so that they start again (the replica warm) on the old history's state.
 */
export type HistoryFaultKind =
  | 'etcdWipe'
  | 'etcdWipeStopped'
  | 'etcdRestore'
  | 'etcdRestoreStopped'
  | 'etcdRestoreBumped'
  | 'etcdRestoreBumpedStopped';

/**
 * How long after a new history settles a tier may still answer a read or stream from the old
 * one: it notices on its next etcd watch reconnect (backoff ≤ 5 s) and tells its replicas at once.
 */
export const HISTORY_GRACE_MS = 15_000;

export const HISTORY_FAULT_KINDS: readonly HistoryFaultKind[] = [
  'etcdWipe',
  'etcdWipeStopped',
  'etcdRestore',
  'etcdRestoreStopped',
  'etcdRestoreBumped',
  'etcdRestoreBumpedStopped',
];

export const FAULT_KINDS: readonly FaultKind[] = [
  'etcdKill',
  'etcdLeaderKill',
  'compactNearHead',
  'relayRestart',
  'relayKill',
  'linkCut',
  'linkDelay',
  'blackHole',
  'slowWatcher',
  'edgeEvict',
  'edgeLinkCut',
  'edgeLinkDelay',
  'edgeBlackHole',
  ...HISTORY_FAULT_KINDS,
];

/** The fault kinds a run with (or without) the edge and a cluster can inject. */
export function faultKindsFor(setup: { readonly edge: boolean; readonly cluster: boolean }): FaultKind[] {
  return FAULT_KINDS.filter(
    (k) => (setup.cluster || k !== 'etcdLeaderKill') && (setup.edge || !k.startsWith('edge')),
  );
}

/** One injected fault, from when it began to when the system was put back. */
export interface FaultRecord {
  readonly kind: FaultKind;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly detail?: string;
}

/**
 * A later etcd history of the run (after a wipe or restore fault): from `startedAt` (etcd went
 * down) answers may come from it; from `settledAt` (etcd and the tiers are back) etcd holds only
 * it, and a most-recent read must be answered from it.
 */
export interface Epoch {
  readonly startedAt: number;
  readonly settledAt: number;
  readonly truth: GroundTruth;
}

/** Everything one run recorded. */
export interface RunRecord {
  readonly seed: number;
  readonly prefix: string;
  /** The run's first history. */
  readonly truth: GroundTruth;
  /** The histories that followed it, in order (none without history faults). */
  readonly epochs?: readonly Epoch[];
  readonly reads: readonly ReadRecord[];
  readonly sessions: readonly WatchSession[];
  readonly faults: readonly FaultRecord[];
  /** Absent in records written before informers ran. */
  readonly informers?: readonly InformerRecord[];
}

const encoder = new TextEncoder();

/** etcd's key order: by UTF-8 bytes (differs from `<` on strings for astral characters). */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

interface Version {
  readonly revision: number;
  readonly object: ModelObject | undefined;
}

/** An index over a `GroundTruth`. Read-only after construction. */
export class Truth {
  readonly head: number;
  readonly #byRevision = new Map<number, RecordedRevision>();
  readonly #timelines = new Map<string, Version[]>();
  readonly #prefixRevisions = new Map<string, number[]>();
  readonly #sorted: readonly RecordedRevision[];
  readonly #compactions: GroundTruth['compactions'];

  readonly #baseRevision: number;

  constructor(truth: GroundTruth) {
    this.head = truth.head;
    this.#sorted = [...truth.revisions].sort((a, b) => a.revision - b.revision);
    this.#compactions = truth.compactions;
    this.#baseRevision = truth.base?.revision ?? 1;
    for (const object of truth.base?.objects ?? []) {
      this.#timelines.set(object.key, [{ revision: this.#baseRevision, object }]);
    }
    for (const r of this.#sorted) {
      this.#byRevision.set(r.revision, r);
      for (const e of r.events) {
        let timeline = this.#timelines.get(e.key);
        if (!timeline) {
          timeline = [];
          this.#timelines.set(e.key, timeline);
        }
        timeline.push({ revision: r.revision, object: e.type === 'PUT' ? e.object : undefined });
      }
    }
  }

  /** Why the recorded history cannot serve as ground truth, or undefined when it can. */
  problem(): string | undefined {
    let expected = this.#baseRevision + 1;
    for (const r of this.#sorted) {
      if (r.revision !== expected) return `recorded history jumps from ${expected - 1} to ${r.revision}`;
      expected++;
    }
    if (expected - 1 !== this.head) return `recorded history ends at ${expected - 1}, head is ${this.head}`;
    return undefined;
  }

  /** The key's state at `revision` (undefined: absent). */
  keyAt(key: string, revision: number): ModelObject | undefined {
    const timeline = this.#timelines.get(key);
    if (!timeline) return undefined;
    let lo = 0;
    let hi = timeline.length - 1;
    let found: Version | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = timeline[mid];
      if (v === undefined) break;
      if (v.revision <= revision) {
        found = v;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found?.object;
  }

  /** The objects under `prefix` at `revision` in key order, only keys after `after` when given. */
  listAt(prefix: string, revision: number, after?: string): ModelObject[] {
    const items: ModelObject[] = [];
    for (const key of this.#timelines.keys()) {
      if (!key.startsWith(prefix)) continue;
      if (after !== undefined && compareKeys(key, after) <= 0) continue;
      const object = this.keyAt(key, revision);
      if (object) items.push(object);
    }
    return items.sort((a, b) => compareKeys(a.key, b.key));
  }

  /** The revisions with at least one change under `prefix`, ascending. */
  prefixRevisions(prefix: string): readonly number[] {
    let revisions = this.#prefixRevisions.get(prefix);
    if (!revisions) {
      revisions = this.#sorted
        .filter((r) => r.events.some((e) => e.key.startsWith(prefix)))
        .map((r) => r.revision);
      this.#prefixRevisions.set(prefix, revisions);
    }
    return revisions;
  }

  /** The first revision after `n` with a change under `prefix`, or undefined (none recorded). */
  nextPrefixRevision(prefix: string, n: number): number | undefined {
    const revisions = this.prefixRevisions(prefix);
    let lo = 0;
    let hi = revisions.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((revisions[mid] ?? 0) <= n) lo = mid + 1;
      else hi = mid;
    }
    return revisions[lo];
  }

  /** The changes under `prefix` at `revision`, in etcd's order. */
  eventsAt(prefix: string, revision: number): RecordedEvent[] {
    return (this.#byRevision.get(revision)?.events ?? []).filter((e) => e.key.startsWith(prefix));
  }

  /** The revision this history starts at (1, or a restored snapshot's). */
  get baseRevision(): number {
    return this.#baseRevision;
  }

  /** The highest compaction revision made at or before `time` (0: none). */
  compactedAt(time: number): number {
    let revision = 0;
    for (const c of this.#compactions) if (c.at <= time && c.revision > revision) revision = c.revision;
    return revision;
  }
}

/** Canonical text of an object, for equality and messages. Fields in a fixed order; absent fields left out. */
export function objectText(o: ModelObject | undefined): string {
  if (o === undefined) return '(absent)';
  return JSON.stringify({
    key: o.key,
    value: o.value,
    valueBase64: o.valueBase64,
    createRevision: o.createRevision,
    modRevision: o.modRevision,
    version: o.version,
    lease: o.lease,
  });
}
