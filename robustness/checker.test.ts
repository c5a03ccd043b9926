import { describe, expect, it } from 'vitest';
import { checkRun, resumePoint, type ViolationKind } from './checker.ts';
import type {
  GroundTruth,
  ModelObject,
  ReadRecord,
  RecordedEvent,
  RecordedRevision,
  RunRecord,
  WatchSession,
  WireEvent,
} from './model.ts';

/** A tiny etcd of its own: applies puts/deletes/txns and records them as the recorder would. */
class SyntheticEtcd {
  revision = 1;
  readonly state = new Map<string, ModelObject>();
  readonly revisions: RecordedRevision[] = [];

  txn(ops: ({ put: string; value: string } | { del: string })[]): number {
    const revision = ++this.revision;
    const events: RecordedEvent[] = [];
    for (const op of ops) {
      if ('put' in op) {
        const prev = this.state.get(op.put);
        const object: ModelObject = {
          key: op.put,
          value: op.value,
          createRevision: prev?.createRevision ?? revision,
          modRevision: revision,
          version: (prev?.version ?? 0) + 1,
        };
        this.state.set(op.put, object);
        events.push(prev ? { type: 'PUT', key: op.put, object, prev } : { type: 'PUT', key: op.put, object });
      } else {
        const prev = this.state.get(op.del);
        if (!prev) throw new Error('synthetic delete of an absent key');
        this.state.delete(op.del);
        events.push({ type: 'DELETE', key: op.del, prev });
      }
    }
    this.revisions.push({ revision, events, at: revision * 10 });
    return revision;
  }

  put(key: string, value: string): number {
    return this.txn([{ put: key, value }]);
  }

  del(key: string): number {
    return this.txn([{ del: key }]);
  }

  truth(compactions: GroundTruth['compactions'] = []): GroundTruth {
    return { revisions: this.revisions, head: this.revision, compactions };
  }
}

/** The synthetic history every test starts from: revisions 2..9, one txn at 6, one key outside the prefix. */
function scenario() {
  const etcd = new SyntheticEtcd();
  etcd.put('/r/a', 'a1'); // 2
  etcd.put('/r/b', 'b1'); // 3
  etcd.put('/other/x', 'x'); // 4
  etcd.put('/r/a', 'a2'); // 5
  etcd.txn([{ put: '/r/c', value: 'c1' }, { del: '/r/b' }]); // 6
  etcd.put('/r/d', 'd1'); // 7
  etcd.del('/r/a'); // 8
  etcd.put('/r/c', 'c2'); // 9
  return etcd;
}

const at = (etcd: SyntheticEtcd, key: string, revision: number): ModelObject | undefined => {
  let found: ModelObject | undefined;
  for (const r of etcd.revisions) {
    if (r.revision > revision) break;
    for (const e of r.events) if (e.key === key) found = e.type === 'PUT' ? e.object : undefined;
  }
  return found;
};

function read(over: Partial<ReadRecord>): ReadRecord {
  return {
    id: 1,
    client: 'c1',
    target: 'relay',
    verb: 'get',
    key: '/r/a',
    mode: 'any',
    floor: 0,
    sentAt: 100,
    receivedAt: 101,
    status: 200,
    ...over,
  };
}

/** The wire events a correct tier sends for the changes under `prefix` in (from, to]. */
function liveEvents(etcd: SyntheticEtcd, prefix: string, from: number, to: number): WireEvent[] {
  const out: WireEvent[] = [];
  for (const r of etcd.revisions) {
    if (r.revision <= from || r.revision > to) continue;
    for (const e of r.events) {
      if (!e.key.startsWith(prefix)) continue;
      if (e.type === 'PUT' && e.object) {
        const type = e.object.createRevision === e.object.modRevision ? 'ADDED' : 'MODIFIED';
        out.push({ type, object: { ...e.object } });
      } else if (e.prev)
        out.push({ type: 'DELETED', object: { ...e.prev, modRevision: r.revision, version: 0 } });
    }
  }
  return out;
}

function session(over: Partial<WatchSession>): WatchSession {
  return {
    id: 1,
    watcher: 'w1',
    target: 'relay',
    prefix: '/r/',
    start: { kind: 'after', rv: 1 },
    floor: 0,
    sentAt: 100,
    endedAt: 200,
    status: 200,
    events: [],
    end: 'running',
    slow: false,
    ...over,
  };
}

function run(etcd: SyntheticEtcd, parts: Partial<RunRecord>): RunRecord {
  return { seed: 1, prefix: '/r/', truth: etcd.truth(), reads: [], sessions: [], faults: [], ...parts };
}

function kinds(record: RunRecord): ViolationKind[] {
  return checkRun(record).violations.map((v) => v.kind);
}

describe('the checker on reads', () => {
  const etcd = scenario();

  it('accepts gets and lists that match etcd at their revision, and counts them', () => {
    const result = checkRun(
      run(etcd, {
        reads: [
          read({ id: 1, served: 5, object: at(etcd, '/r/a', 5) }),
          read({ id: 2, served: 8, status: 404, sentAt: 110, receivedAt: 111 }),
          read({
            id: 3,
            client: 'c2',
            verb: 'list',
            key: '/r/',
            served: 6,
            items: [at(etcd, '/r/a', 6), at(etcd, '/r/c', 6)] as ModelObject[],
            sentAt: 120,
          }),
          read({
            id: 4,
            verb: 'list',
            key: '/r/',
            mode: 'exact',
            rv: 7,
            limit: 2,
            served: 7,
            items: [at(etcd, '/r/a', 7), at(etcd, '/r/c', 7)] as ModelObject[],
            continued: true,
            remaining: 1,
            sentAt: 130,
          }),
          read({
            id: 5,
            verb: 'list',
            key: '/r/',
            mode: 'continue',
            rv: 7,
            limit: 2,
            after: '/r/c',
            served: 7,
            items: [at(etcd, '/r/d', 7)] as ModelObject[],
            sentAt: 140,
          }),
        ],
      }),
    );
    expect(result.violations).toEqual([]);
    expect(result.stats.readsChecked).toBe(5);
  });

  it('flags a get whose value is from another revision', () => {
    expect(kinds(run(etcd, { reads: [read({ served: 6, object: at(etcd, '/r/a', 2) })] }))).toEqual([
      'wrong-state',
    ]);
  });

  it('flags a 404 for a key that existed at the served revision', () => {
    expect(kinds(run(etcd, { reads: [read({ served: 6, status: 404 })] }))).toEqual(['wrong-state']);
  });

  it('flags a list page with a missing item and one with an extra item', () => {
    const missing = read({
      id: 1,
      verb: 'list',
      key: '/r/',
      served: 7,
      items: [at(etcd, '/r/a', 7)] as ModelObject[],
    });
    const extra = read({
      id: 2,
      client: 'c2',
      verb: 'list',
      key: '/r/',
      served: 3,
      sentAt: 120,
      items: [at(etcd, '/r/a', 3), at(etcd, '/r/b', 3), at(etcd, '/r/c', 9)] as ModelObject[],
    });
    expect(kinds(run(etcd, { reads: [missing, extra] }))).toEqual(['wrong-state', 'wrong-state']);
  });

  it('flags a wrong remainingItemCount on a page', () => {
    const page = read({
      verb: 'list',
      key: '/r/',
      mode: 'exact',
      rv: 7,
      limit: 1,
      served: 7,
      items: [at(etcd, '/r/a', 7)] as ModelObject[],
      continued: true,
      remaining: 1,
    });
    expect(kinds(run(etcd, { reads: [page] }))).toEqual(['wrong-state']);
  });

  it('flags a most-recent read older than a revision observed before it was sent (linearizability)', () => {
    expect(
      kinds(
        run(etcd, {
          reads: [read({ mode: 'mostRecent', floor: 6, served: 5, object: at(etcd, '/r/a', 5) })],
        }),
      ),
    ).toEqual(['stale-read']);
  });

  it('flags notOlderThan served below its rv, and exact served at another revision', () => {
    const older = read({ id: 1, mode: 'notOlderThan', rv: 6, served: 5, object: at(etcd, '/r/a', 5) });
    const inexact = read({
      id: 2,
      client: 'c2',
      mode: 'exact',
      rv: 5,
      served: 6,
      object: at(etcd, '/r/a', 6),
    });
    expect(kinds(run(etcd, { reads: [older, inexact] }))).toEqual(['stale-read', 'not-exact']);
  });

  it('flags a client whose served revision goes backwards at one target', () => {
    const first = read({ id: 1, served: 8, status: 404, sentAt: 100 });
    const second = read({ id: 2, served: 5, object: at(etcd, '/r/a', 5), sentAt: 200 });
    expect(kinds(run(etcd, { reads: [first, second] }))).toEqual(['backwards']);
  });

  it('flags a client that carries its revision to another tier and is served an older one', () => {
    const relay = read({ id: 1, served: 8, status: 404, sentAt: 100 });
    const edge = read({
      id: 2,
      target: 'edge',
      mode: 'notOlderThan',
      rv: 8,
      served: 5,
      object: at(etcd, '/r/a', 5),
      sentAt: 200,
    });
    expect(kinds(run(etcd, { reads: [relay, edge] }))).toEqual(['stale-read', 'backwards']);
    const fresh = { ...edge, mode: 'mostRecent' as const, floor: 0 };
    expect(kinds(run(etcd, { reads: [relay, fresh] }))).toEqual(['backwards']);
  });

  it('accepts an older state from another tier for rv=0 or an rv below what the client saw', () => {
    const relay = read({ id: 1, served: 8, status: 404, sentAt: 100 });
    const any = read({ id: 2, target: 'edge', served: 5, object: at(etcd, '/r/a', 5), sentAt: 200 });
    const older = { ...any, id: 3, mode: 'notOlderThan' as const, rv: 4, sentAt: 300 };
    expect(kinds(run(etcd, { reads: [relay, any, older] }))).toEqual([]);
  });

  it('accepts rv=0 from a cache behind the etcd read before it, but not a cache that goes back', () => {
    const fromEtcd = read({
      id: 1,
      mode: 'mostRecent',
      served: 8,
      status: 404,
      servedBy: 'etcd',
      sentAt: 100,
    });
    const cached = (id: number, served: number, sentAt: number) =>
      read({ id, served, object: at(etcd, '/r/a', served), servedBy: 'relay', sentAt });
    expect(kinds(run(etcd, { reads: [fromEtcd, cached(2, 5, 200)] }))).toEqual([]);
    expect(kinds(run(etcd, { reads: [fromEtcd, cached(2, 5, 200), cached(3, 3, 300)] }))).toEqual([
      'backwards',
    ]);
  });

  it('flags a revision beyond etcd head, a 500, and a 410 for a revision that was not compacted', () => {
    const future = read({ id: 1, served: 10, status: 404 });
    const crash = read({ id: 2, client: 'c2', status: 500 });
    const expired = read({ id: 3, client: 'c3', mode: 'exact', rv: 3, status: 410, receivedAt: 50 });
    const record = run(etcd, { reads: [future, crash, expired] });
    expect(kinds({ ...record, truth: etcd.truth([{ revision: 3, at: 40 }]) })).toEqual([
      'future-revision',
      'server-error',
      'unjustified-expiry',
    ]);
  });

  it('accepts a 410 for an exact read of a compacted revision and tolerates 503/504', () => {
    const expired = read({ id: 1, mode: 'exact', rv: 3, status: 410, receivedAt: 50 });
    const down = read({ id: 2, status: 503 });
    const record = { ...run(etcd, { reads: [expired, down] }), truth: etcd.truth([{ revision: 5, at: 40 }]) };
    const result = checkRun(record);
    expect(result.violations).toEqual([]);
    expect(result.stats.readsTolerated).toBe(2);
  });
});

describe('the checker on watches', () => {
  const etcd = scenario();
  const all = liveEvents(etcd, '/r/', 1, 9);

  it('accepts a stream of every change, resumed exactly across sessions, with bookmarks', () => {
    const first = session({
      id: 1,
      start: { kind: 'after', rv: 1 },
      events: liveEvents(etcd, '/r/', 1, 6),
      end: 'broken',
    });
    // The first session broke right after revision 6: it might have been cut, so the client resumes from 5.
    expect(resumePoint(first)).toBe(5);
    const second = session({
      id: 2,
      start: { kind: 'after', rv: 5 },
      events: [
        ...liveEvents(etcd, '/r/', 5, 7),
        { type: 'BOOKMARK', object: { resourceVersion: '7' } },
        ...liveEvents(etcd, '/r/', 7, 9),
      ],
      end: 'clean',
    });
    expect(resumePoint(second)).toBe(9);
    const result = checkRun(run(etcd, { sessions: [first, second] }));
    expect(result.violations).toEqual([]);
    expect(result.stats.eventsChecked).toBe(all.length + 2); // revision 6 (two changes) delivered twice
    expect(result.stats.bookmarks).toBe(1);
  });

  it('accepts initial events equal to the state, then the changes', () => {
    const initial = [at(etcd, '/r/a', 5), at(etcd, '/r/b', 5)].map((o) => ({
      type: 'ADDED' as const,
      object: { ...o },
    }));
    const s = session({
      start: { kind: 'initial', mode: 'mostRecent', sendInitialEvents: true },
      floor: 5,
      headerRv: 5,
      events: [
        ...initial,
        { type: 'BOOKMARK', object: { resourceVersion: '5', initialEventsEnd: true } },
        ...liveEvents(etcd, '/r/', 5, 9),
      ],
    });
    const result = checkRun(run(etcd, { sessions: [s] }));
    expect(result.violations).toEqual([]);
    expect(result.stats.initialEventsChecked).toBe(2);
  });

  it('flags initial events that miss a key, and a stale most-recent initial state', () => {
    const s = session({
      start: { kind: 'initial', mode: 'mostRecent', sendInitialEvents: true },
      floor: 6,
      headerRv: 5,
      events: [
        { type: 'ADDED', object: { ...at(etcd, '/r/a', 5) } },
        { type: 'BOOKMARK', object: { resourceVersion: '5', initialEventsEnd: true } },
      ],
    });
    expect(kinds(run(etcd, { sessions: [s] }))).toEqual(['stale-read', 'bad-initial-state']);
  });

  it('flags a gap: a revision skipped', () => {
    const events = all.filter((e) => e.object.modRevision !== 5);
    expect(kinds(run(etcd, { sessions: [session({ events })] }))).toEqual(['watch-gap']);
  });

  it('flags a duplicate and a reordering', () => {
    const dup = session({
      id: 1,
      events: [...liveEvents(etcd, '/r/', 1, 5), ...liveEvents(etcd, '/r/', 3, 5)],
    });
    const swapped = liveEvents(etcd, '/r/', 1, 5);
    const reordered = session({
      id: 2,
      watcher: 'w2',
      events: [swapped[0], swapped[2], swapped[1]] as WireEvent[],
    });
    expect(kinds(run(etcd, { sessions: [dup, reordered] }))).toEqual(['watch-duplicate', 'watch-gap']);
  });

  it('flags a resume that repeats the revision it resumed from', () => {
    const s = session({ start: { kind: 'after', rv: 5 }, events: liveEvents(etcd, '/r/', 4, 9) });
    expect(kinds(run(etcd, { sessions: [s] }))).toEqual(['watch-duplicate']);
  });

  it('flags a transaction split across a later revision', () => {
    const events = all.filter((e) => !(e.type === 'DELETED' && e.object.key === '/r/b'));
    expect(kinds(run(etcd, { sessions: [session({ events })] }))).toEqual(['txn-split']);
  });

  it('flags a DELETED without the last state, and a wrong value', () => {
    const badDelete = all.map((e) =>
      e.type === 'DELETED' && e.object.key === '/r/a'
        ? { type: e.type, object: { ...e.object, value: 'a1' } }
        : e,
    );
    const badValue = all.map((e) =>
      e.object.modRevision === 7 ? { type: e.type, object: { ...e.object, value: 'zz' } } : e,
    );
    const record = run(etcd, {
      sessions: [session({ id: 1, events: badDelete }), session({ id: 2, watcher: 'w2', events: badValue })],
    });
    expect(kinds(record)).toEqual(['watch-wrong-event', 'watch-wrong-event']);
  });

  it('flags a bookmark that claims a revision whose change was not delivered', () => {
    const events: WireEvent[] = [
      ...liveEvents(etcd, '/r/', 1, 3),
      { type: 'BOOKMARK', object: { resourceVersion: '6' } },
      ...liveEvents(etcd, '/r/', 6, 9),
    ];
    expect(kinds(run(etcd, { sessions: [session({ events })] }))).toEqual(['watch-gap']);
  });

  it('flags a 410 while the position was inside the window, and accepts it once it left', () => {
    const expired: WireEvent = { type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } };
    const inside = session({
      id: 1,
      start: { kind: 'after', rv: 5 },
      events: [expired],
      end: 'clean',
      windowStart: 3,
    });
    const outside = session({
      id: 2,
      watcher: 'w2',
      start: { kind: 'after', rv: 2 },
      events: [expired],
      end: 'clean',
      windowStart: 3,
    });
    const result = checkRun(run(etcd, { sessions: [inside, outside] }));
    expect(result.violations.map((v) => v.kind)).toEqual(['unjustified-expiry']);
    expect(result.stats.expiries).toEqual({ window: 1 });
  });

  it('flags a client that resumed somewhere the rule does not say (a harness error)', () => {
    const first = session({ id: 1, events: liveEvents(etcd, '/r/', 1, 5), end: 'clean' });
    const second = session({ id: 2, start: { kind: 'after', rv: 3 }, events: liveEvents(etcd, '/r/', 3, 5) });
    expect(kinds(run(etcd, { sessions: [first, second] }))).toEqual(['harness']);
  });
});

describe('the ground truth', () => {
  it('is refused when the recorder missed a revision', () => {
    const etcd = scenario();
    const truth = { ...etcd.truth(), revisions: etcd.revisions.filter((r) => r.revision !== 4) };
    expect(checkRun({ ...run(etcd, {}), truth }).violations.map((v) => v.kind)).toEqual(['harness']);
  });
});

describe('checkRun across etcd histories (a wipe or restore during the run)', () => {
  /** History 0: the scenario. History 1: etcd restored from a snapshot at 5, then written to. */
  function twoHistories() {
    const old = scenario();
    const base = { revision: 5, objects: ['/r/a', '/r/b', '/other/x'].flatMap((k) => at(old, k, 5) ?? []) };
    const next = new SyntheticEtcd();
    next.revision = 5;
    for (const o of base.objects) next.state.set(o.key, o);
    next.put('/r/z', 'z1'); // 6: not the old history's 6
    next.put('/r/a', 'a9'); // 7
    const epoch = { startedAt: 1_000, settledAt: 2_000, truth: { ...next.truth(), base } };
    return { old, next, epoch };
  }
  const served = (etcd: SyntheticEtcd, key: string, rev: number) => {
    const object = at(etcd, key, rev) ?? etcd.state.get(key);
    return object ? { status: 200, served: rev, object } : { status: 404, served: rev };
  };

  it('accepts each answer from the history it could have come from', () => {
    const { old, next, epoch } = twoHistories();
    const record: RunRecord = {
      ...run(old, {}),
      epochs: [epoch],
      reads: [
        read({ id: 1, key: '/r/c', ...served(old, '/r/c', 6), sentAt: 100, receivedAt: 101 }),
        // Sent before the new history settled: the tier may not know yet; either history fits.
        read({ id: 2, key: '/r/c', ...served(old, '/r/c', 9), sentAt: 1_500, receivedAt: 1_501 }),
        read({
          id: 3,
          client: 'c2',
          key: '/r/z',
          ...served(next, '/r/z', 6),
          sentAt: 30_000,
          receivedAt: 30_001,
        }),
        read({
          id: 4,
          key: '/r/a',
          mode: 'mostRecent',
          ...served(next, '/r/a', 7),
          sentAt: 2_100,
          receivedAt: 2_101,
        }),
      ],
    };
    expect(kinds(record)).toEqual([]);
  });

  it('refuses an old-history answer once the tier could know, and a most-recent one at once', () => {
    const { old, epoch } = twoHistories();
    const late = read({ id: 1, key: '/r/c', ...served(old, '/r/c', 6), sentAt: 30_000, receivedAt: 30_001 });
    const recent = read({
      id: 2,
      key: '/r/c',
      mode: 'mostRecent',
      ...served(old, '/r/c', 6),
      sentAt: 2_100,
      receivedAt: 2_101,
    });
    for (const r of [late, recent])
      expect(kinds({ ...run(old, {}), epochs: [epoch], reads: [r] })).toEqual(['wrong-state']);
  });

  it('justifies a watch that ends with 410 across the history change', () => {
    const { old, epoch } = twoHistories();
    const ended = session({
      start: { kind: 'after', rv: 5 },
      sentAt: 500,
      endedAt: 1_200,
      events: [...liveEvents(old, '/r/', 5, 6), { type: 'ERROR', object: { code: 410, reason: 'Expired' } }],
      end: 'clean',
      windowStart: 0,
    });
    const record: RunRecord = { ...run(old, {}), epochs: [epoch], sessions: [ended], faults: [] };
    expect(kinds(record)).toEqual(['unjustified-expiry']);
    const faults = [{ kind: 'etcdRestore' as const, startedAt: 1_000, endedAt: 2_000 }];
    expect(kinds({ ...record, faults })).toEqual([]);
  });
});
