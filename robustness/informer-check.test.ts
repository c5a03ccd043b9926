import { describe, expect, it } from 'vitest';
import {
  checkInformers,
  checkInformersAcrossHistories,
  type InformerEntry,
  type InformerViolationKind,
} from './informer-check.ts';
import { type ModelObject, type RecordedRevision, Truth } from './model.ts';

const P = '/w/';

/** etcd's history for the tests: revisions 2..6 under /w/ (a txn at 4) and one key outside. */
function history() {
  const revisions: RecordedRevision[] = [];
  const state = new Map<string, ModelObject>();
  let revision = 1;
  const txn = (ops: { key: string; value?: string }[]) => {
    revision++;
    const events = ops.map(({ key, value }) => {
      const prev = state.get(key);
      if (value === undefined) {
        state.delete(key);
        return { type: 'DELETE' as const, key, ...(prev ? { prev } : {}) };
      }
      const object: ModelObject = {
        key,
        value,
        createRevision: prev?.createRevision ?? revision,
        modRevision: revision,
        version: (prev?.version ?? 0) + 1,
      };
      state.set(key, object);
      return { type: 'PUT' as const, key, object, ...(prev ? { prev } : {}) };
    });
    revisions.push({ revision, events, at: revision });
    return new Map(state);
  };
  const at: Map<string, ModelObject>[] = [];
  at[2] = txn([{ key: '/w/a', value: '1' }]);
  at[3] = txn([{ key: '/w/b', value: '1' }]);
  at[4] = txn([
    { key: '/w/a', value: '2' },
    { key: '/w/c', value: '1' },
  ]);
  at[5] = txn([{ key: '/other', value: 'x' }]);
  at[6] = txn([{ key: '/w/b' }]);
  const obj = (rev: number, key: string) => at[rev]?.get(key) as ModelObject;
  return { truth: new Truth({ revisions, head: revision, compactions: [] }), obj };
}

/** What a correct informer records: a list at 3, then the watch events up to 6. */
function goodEntries(obj: (rev: number, key: string) => ModelObject): InformerEntry[] {
  return [
    { op: 'add', object: obj(3, '/w/a') },
    { op: 'add', object: obj(3, '/w/b') },
    { op: 'sync', revision: 3 },
    { op: 'update', object: obj(4, '/w/a') },
    { op: 'add', object: obj(4, '/w/c') },
    { op: 'sync', revision: 4 },
    { op: 'sync', revision: 5 },
    { op: 'delete', object: { ...obj(3, '/w/b'), modRevision: 6, version: 0 } },
    { op: 'sync', revision: 6 },
    { op: 'snapshot', revision: 6, objects: [obj(4, '/w/a'), obj(4, '/w/c')] },
  ];
}

function kinds(entries: InformerEntry[]): InformerViolationKind[] {
  const { truth } = history();
  return checkInformers(truth, [{ name: 'i', target: 'relay', prefix: P, entries }]).violations.map(
    (v) => v.kind,
  );
}

describe('checkInformers', () => {
  it('accepts an informer whose store matched etcd at every sync', () => {
    const { truth, obj } = history();
    const { violations, stats } = checkInformers(truth, [
      { name: 'i', target: 'relay', prefix: P, entries: goodEntries(obj) },
    ]);
    expect(violations).toEqual([]);
    expect(stats).toMatchObject({ informers: 1, syncsChecked: 4, changes: 5, snapshots: 1 });
  });

  it('finds a store that missed half of a transaction', () => {
    const { obj } = history();
    const entries = goodEntries(obj).filter((e) => !(e.op === 'add' && e.object.key === '/w/c'));
    expect(kinds(entries)).toEqual(['informer-state']);
  });

  it('finds a repeated event, a sync that goes back and one beyond the head', () => {
    const { obj } = history();
    const repeated = goodEntries(obj);
    repeated.splice(4, 0, { op: 'update', object: obj(4, '/w/a') });
    expect(kinds(repeated)).toEqual(['watch-duplicate']);
    const back = goodEntries(obj);
    back.splice(7, 0, { op: 'sync', revision: 3 });
    expect(kinds(back)).toEqual(['backwards']);
    expect(kinds([...goodEntries(obj), { op: 'sync', revision: 99 }])).toEqual(['future-revision']);
  });

  it('finds a sync claimed before a change was applied, and handler calls that do not fit the store', () => {
    const { obj } = history();
    const early = goodEntries(obj);
    const sync6 = early.findIndex((e) => e.op === 'sync' && e.revision === 6);
    early.splice(sync6 - 1, 2, { op: 'sync', revision: 6 }, early[sync6 - 1] as InformerEntry);
    expect(kinds(early)).toEqual(['informer-state', 'watch-wrong-event']);
    expect(kinds([{ op: 'update', object: obj(3, '/w/a') }])).toEqual(['watch-wrong-event']);
    expect(kinds([{ op: 'delete', object: obj(3, '/w/a') }])).toEqual(['watch-wrong-event']);
  });
});

describe('checkInformersAcrossHistories', () => {
  it('accepts a relist into a restored history at a lower revision, and nothing else going back', () => {
    const before = history();
    // The restored history: only /w/a at revision 2 (etcd went back from 6 to 2), from time 100.
    const after = new Truth({
      revisions: [
        {
          revision: 2,
          events: [{ type: 'PUT', key: '/w/a', object: before.obj(2, '/w/a') }],
          at: 100,
        },
      ],
      head: 2,
      compactions: [],
    });
    const histories = [
      { truth: before.truth, startedAt: Number.NEGATIVE_INFINITY, settledAt: Number.NEGATIVE_INFINITY },
      { truth: after, startedAt: 100, settledAt: 110 },
    ];
    const entries: InformerEntry[] = [
      ...goodEntries(before.obj).map((e) => (e.op === 'sync' ? { ...e, at: 50 } : e)),
      { op: 'list' },
      { op: 'update', object: before.obj(2, '/w/a') },
      { op: 'delete', object: before.obj(4, '/w/c') },
      { op: 'sync', revision: 2, at: 200 },
    ];
    const check = (e: InformerEntry[]) =>
      checkInformersAcrossHistories(
        histories,
        [{ name: 'i', target: 'edge', prefix: P, entries: e }],
        5_000,
      ).violations.map((v) => v.kind);
    expect(check(entries)).toEqual([]);
    // Without the relist, the same changes are a repeat and a sync going back.
    expect(check(entries.filter((e) => e.op !== 'list'))).toEqual(['watch-duplicate', 'backwards']);
    // A store that matches neither history.
    expect(
      check([
        ...entries,
        { op: 'delete', object: before.obj(2, '/w/a') },
        { op: 'sync', revision: 2, at: 300 },
      ]),
    ).toEqual(['informer-state']);
  });
});

describe('checkInformersAcrossHistories: a resume across an unbumped history change', () => {
  const object = (key: string, value: string, createRevision: number, modRevision: number, version = 1) => ({
    key,
    value,
    createRevision,
    modRevision,
    version,
  });
  /** etcd wiped at time 100 (settled 110): revisions 2..5 again, with other changes. */
  const wiped = () => {
    const b2 = object('/w/b', 'B', 2, 2);
    const a4 = object('/w/a', 'B', 4, 4);
    const truth = new Truth({
      revisions: [
        { revision: 2, events: [{ type: 'PUT', key: '/w/b', object: b2 }], at: 101 },
        { revision: 3, events: [{ type: 'PUT', key: '/w/x', object: object('/w/x', 'B', 3, 3) }], at: 102 },
        { revision: 4, events: [{ type: 'PUT', key: '/w/a', object: a4 }], at: 103 },
        { revision: 5, events: [{ type: 'DELETE', key: '/w/b', prev: b2 }], at: 104 },
      ],
      head: 5,
      compactions: [],
    });
    return { truth, a4, b5: { ...b2, modRevision: 5, version: 0 } };
  };
  const check = (histories: Parameters<typeof checkInformersAcrossHistories>[0], e: InformerEntry[]) =>
    checkInformersAcrossHistories(histories, [{ name: 'i', target: 'edge', prefix: P, entries: e }], 5_000);

  it('accepts the old state at the resume revision with the new history changes after it, until a relist', () => {
    const before = history();
    const after = wiped();
    const histories = [
      { truth: before.truth, startedAt: Number.NEGATIVE_INFINITY, settledAt: Number.NEGATIVE_INFINITY },
      { truth: after.truth, startedAt: 100, settledAt: 110 },
    ];
    // Listed at 3 in the old history; its watch resumed after 3 from a tier on the wiped one.
    const listed: InformerEntry[] = [
      { op: 'list' },
      { op: 'add', object: before.obj(3, '/w/a') },
      { op: 'add', object: before.obj(3, '/w/b') },
      { op: 'sync', revision: 3, at: 50 },
    ];
    const resumed: InformerEntry[] = [
      { op: 'update', object: after.a4 },
      { op: 'sync', revision: 4, at: 200 },
      { op: 'delete', object: after.b5 },
      { op: 'sync', revision: 5, at: 200 },
    ];
    const ok = check(histories, [...listed, ...resumed]);
    expect(ok.violations).toEqual([]);
    expect(ok.stats.splicedSyncs).toBe(2);
    // Any other store is still wrong: here the delete at 5 is missing.
    expect(
      check(histories, [...listed, ...resumed.slice(0, 2), resumed[3] as InformerEntry]).violations.map(
        (v) => v.kind,
      ),
    ).toEqual(['informer-state']);
    // A relist ends it: the same store claimed by a list matches no history.
    expect(
      check(histories, [
        ...listed,
        ...resumed,
        { op: 'list' },
        { op: 'sync', revision: 5, at: 300 },
      ]).violations.map((v) => v.kind),
    ).toEqual(['informer-state']);
  });

  it('does not accept it into a history restored with --bump-revision', () => {
    const before = history();
    const a101 = object('/w/a', 'B', 101, 101);
    const bumped = new Truth({
      base: { revision: 100, objects: [] },
      revisions: [{ revision: 101, events: [{ type: 'PUT', key: '/w/a', object: a101 }], at: 111 }],
      head: 101,
      compactions: [{ revision: 100, at: 100 }],
    });
    const histories = [
      { truth: before.truth, startedAt: Number.NEGATIVE_INFINITY, settledAt: Number.NEGATIVE_INFINITY },
      { truth: bumped, startedAt: 100, settledAt: 110 },
    ];
    const entries: InformerEntry[] = [
      { op: 'list' },
      { op: 'add', object: before.obj(3, '/w/a') },
      { op: 'add', object: before.obj(3, '/w/b') },
      { op: 'sync', revision: 3, at: 50 },
      { op: 'update', object: a101 },
      { op: 'sync', revision: 101, at: 200 },
    ];
    expect(check(histories, entries).violations.map((v) => v.kind)).toEqual(['informer-state']);
  });
});
