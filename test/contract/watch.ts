/** Contract: `GET /v1/list/{prefix}?watch=true` (API.md "Watch"). */
import { describe, expect, it } from 'vitest';
import { currentRevision, del, keyAt, type ModelObject, put, stateAt, txn } from './etcd-model.ts';
import { expectReadHeaders, listUrl, type Query } from './http.ts';
import type { ContractTarget, TargetRef } from './target.ts';
import { changes, type WatchEvent, WatchReader } from './watch-reader.ts';

/** The state a client builds by applying `events` in order (what a reflector does). */
function fold(events: readonly WatchEvent[]): ModelObject[] {
  const state = new Map<string, ModelObject>();
  for (const event of changes(events)) {
    const object = event.object as ModelObject;
    if (event.type === 'DELETED') state.delete(object.key);
    else state.set(object.key, object);
  }
  return [...state.values()].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
}

/** The event a watch must send for a put of `key` at `revision`. */
async function putEvent(t: ContractTarget, key: string, revision: number): Promise<WatchEvent> {
  const object = await keyAt(t.etcd, key, revision);
  if (!object || object.modRevision !== revision) throw new Error(`no put of ${key} at ${revision}`);
  return { type: object.version === 1 ? 'ADDED' : 'MODIFIED', object };
}

/** The event for a delete of `key` at `revision`: the last state, modRevision = the delete's. */
async function deleteEvent(t: ContractTarget, key: string, revision: number): Promise<WatchEvent> {
  const last = await keyAt(t.etcd, key, revision - 1);
  if (!last) throw new Error(`${key} did not exist before ${revision}`);
  const { version: _version, ...rest } = last;
  return { type: 'DELETED', object: expect.objectContaining({ ...rest, modRevision: revision }) };
}

async function open(t: ContractTarget, prefix: string, query: Query, sse = false): Promise<WatchReader> {
  return WatchReader.open(listUrl(t, prefix, { watch: true, ...query }), { sse });
}

export function watchContract(target: TargetRef): void {
  describe('watch', () => {
    const ns = (name: string) => `${target().prefix}watch-${name}/`;
    const readers: WatchReader[] = [];
    const watch = async (prefix: string, query: Query, sse = false) => {
      const reader = await open(target(), prefix, query, sse);
      readers.push(reader);
      expectReadHeaders(target(), reader.response);
      return reader;
    };
    const closeAll = () => {
      for (const reader of readers.splice(0)) reader.close();
    };

    for (const rv of [undefined, 0] as const) {
      it(`with resourceVersion=${rv ?? 'unset'} sends ADDED for every current object, then the changes`, async () => {
        const t = target();
        const prefix = ns(`initial-${rv ?? 'unset'}`);
        await put(t.etcd, `${prefix}a`, 'a1');
        await put(t.etcd, `${prefix}b`, 'b1');
        const before = await put(t.etcd, `${prefix}c`, 'c1');
        try {
          const w = await watch(prefix, { resourceVersion: rv });
          if (rv === undefined) {
            // Most recent: the state at the watch's X-Resource-Version, which is not before `before`.
            const start = expectReadHeaders(t, w.response);
            expect(start).toBeGreaterThanOrEqual(before);
            const initial = await w.take(3);
            expect(initial.every((e) => e.type === 'ADDED')).toBe(true);
            expect(fold(initial)).toEqual((await stateAt(t.etcd, prefix, start)).items);
          }
          const modified = await put(t.etcd, `${prefix}a`, 'a2');
          const events = await w.until((e) => e.object.modRevision === modified);
          expect(events.at(-1)).toEqual(await putEvent(t, `${prefix}a`, modified));
          expect(events.filter((e) => e.type === 'BOOKMARK' || e.type === 'ERROR')).toEqual([]);
          // rv=0 may start from an older state, but folding the stream always reaches etcd's.
          expect(fold(w.seen)).toEqual((await stateAt(t.etcd, prefix, modified)).items);
        } finally {
          closeAll();
        }
      });
    }

    it('with resourceVersion=n sends exactly the changes after n, each once, in revision order', async () => {
      const t = target();
      const prefix = ns('from-n');
      await put(t.etcd, `${prefix}a`, 'a1');
      const n = await put(t.etcd, `${prefix}b`, 'b1');
      const r3 = await put(t.etcd, `${prefix}a`, 'a2');
      const r4 = await del(t.etcd, `${prefix}b`);
      const r5 = await put(t.etcd, `${prefix}c`, 'c1');
      try {
        const w = await watch(prefix, { resourceVersion: n });
        const sentinel = await put(t.etcd, `${prefix}zz`, 'sentinel');
        const events = await w.until((e) => e.object.modRevision === sentinel);
        expect(events).toEqual([
          await putEvent(t, `${prefix}a`, r3),
          await deleteEvent(t, `${prefix}b`, r4),
          await putEvent(t, `${prefix}c`, r5),
          await putEvent(t, `${prefix}zz`, sentinel),
        ]);
      } finally {
        closeAll();
      }
    });

    it('tells ADDED from MODIFIED, and DELETED carries the last state at the deleting revision', async () => {
      const t = target();
      const prefix = ns('types');
      const key = `${prefix}k`;
      try {
        const w = await watch(prefix, { resourceVersion: await currentRevision(t.etcd) });
        const created = await put(t.etcd, key, 'one');
        const modified = await put(t.etcd, key, 'two');
        const deleted = await del(t.etcd, key);
        const recreated = await put(t.etcd, key, 'three');
        const events = await w.take(4);
        expect(events.map((e) => e.type)).toEqual(['ADDED', 'MODIFIED', 'DELETED', 'ADDED']);
        expect(events[0]).toEqual(await putEvent(t, key, created));
        expect(events[1]).toEqual(await putEvent(t, key, modified));
        expect(events[2]).toEqual(await deleteEvent(t, key, deleted));
        expect(events[2]?.object).toMatchObject({
          value: 'two',
          createRevision: created,
          modRevision: deleted,
        });
        expect(events[3]).toEqual(await putEvent(t, key, recreated));
        expect(events[3]?.object.createRevision).toBe(recreated);
      } finally {
        closeAll();
      }
    });

    it('delivers concurrent writes in revision order, each exactly once', async () => {
      const t = target();
      const prefix = ns('order');
      try {
        const w = await watch(prefix, { resourceVersion: await currentRevision(t.etcd) });
        const written = await Promise.all(
          Array.from({ length: 40 }, (_, i) => put(t.etcd, `${prefix}k${i % 7}`, `v${i}`)),
        );
        const sentinel = await put(t.etcd, `${prefix}zz`, 'sentinel');
        const events = await w.until((e) => e.object.modRevision === sentinel);
        const revisions = events.map((e) => e.object.modRevision as number);
        expect(revisions).toEqual([...written, sentinel].sort((a, b) => a - b));
      } finally {
        closeAll();
      }
    });

    it("sends a transaction's events together, in etcd's order, at one revision", async () => {
      const t = target();
      const prefix = ns('txn');
      await put(t.etcd, `${prefix}b`, 'b1');
      try {
        const w = await watch(prefix, { resourceVersion: await currentRevision(t.etcd) });
        const revision = await txn(t.etcd, [
          { put: `${prefix}c`, value: 'c1' },
          { put: `${prefix}a`, value: 'a1' },
          { delete: `${prefix}b` },
        ]);
        const sentinel = await put(t.etcd, `${prefix}zz`, 'sentinel');
        const events = await w.until((e) => e.object.modRevision === sentinel);
        expect(events).toEqual([
          await putEvent(t, `${prefix}c`, revision),
          await putEvent(t, `${prefix}a`, revision),
          await deleteEvent(t, `${prefix}b`, revision),
          await putEvent(t, `${prefix}zz`, sentinel),
        ]);
      } finally {
        closeAll();
      }
    });

    it('with sendInitialEvents=true sends ADDED for the state, a BOOKMARK with initialEventsEnd, then changes', async () => {
      const t = target();
      const prefix = ns('initial-events');
      await put(t.etcd, `${prefix}a`, 'a1');
      await del(t.etcd, `${prefix}a`);
      await put(t.etcd, `${prefix}b`, 'b1');
      const n = await put(t.etcd, `${prefix}c`, 'c1');
      try {
        for (const rv of [undefined, n]) {
          const w = await watch(prefix, {
            sendInitialEvents: true,
            resourceVersionMatch: 'NotOlderThan',
            resourceVersion: rv,
            allowWatchBookmarks: true,
          });
          const initial = await w.until((e) => e.type === 'BOOKMARK' && e.object.initialEventsEnd === true);
          const end = initial.pop();
          const revision = Number(end?.object.resourceVersion);
          expect(revision).toBeGreaterThanOrEqual(n);
          expect(initial.every((e) => e.type === 'ADDED')).toBe(true);
          expect(fold(initial)).toEqual((await stateAt(t.etcd, prefix, revision)).items);
          expect(initial).toHaveLength(2);
        }
        const modified = await put(t.etcd, `${prefix}b`, 'b2');
        for (const w of readers) {
          const events = changes(await w.until((e) => e.object.modRevision === modified));
          expect(events).toEqual([await putEvent(t, `${prefix}b`, modified)]);
        }
      } finally {
        closeAll();
      }
    });

    it('with allowWatchBookmarks=true sends a BOOKMARK once the tier is current past a write elsewhere', async () => {
      const t = target();
      const prefix = ns('bookmark');
      try {
        const w = await watch(prefix, {
          resourceVersion: await currentRevision(t.etcd),
          allowWatchBookmarks: true,
        });
        // A write outside the watched prefix moves etcd's revision; a most-recent read makes the
        // tier learn it. Either way a BOOKMARK must come within the 10 s idle bound (plus slack).
        const elsewhere = await put(t.etcd, `${ns('bookmark-elsewhere')}x`, 'x');
        const read = await fetch(listUrl(t, ns('bookmark-elsewhere')));
        expect(read.status).toBe(200);
        await read.body?.cancel();
        const events = await w.until((e) => e.type === 'BOOKMARK', 11_000);
        expect(events).toHaveLength(1);
        expect(Object.keys(events[0]?.object ?? {})).toEqual(['resourceVersion']);
        expect(Number(events[0]?.object.resourceVersion)).toBeGreaterThanOrEqual(elsewhere);
      } finally {
        closeAll();
      }
    });

    it('resumed from the last revision seen, misses nothing and repeats nothing', async () => {
      const t = target();
      const prefix = ns('resume');
      const k = (i: number) => `${prefix}k${i}`;
      try {
        const first = await watch(prefix, { resourceVersion: await currentRevision(t.etcd) });
        const r1 = await put(t.etcd, k(1), 'a');
        const r2 = await put(t.etcd, k(2), 'b');
        const r3 = await put(t.etcd, k(1), 'c');
        const seen = await first.take(2);
        expect(seen.map((e) => e.object.modRevision)).toEqual([r1, r2]);
        first.close();
        // Changes while no one watches, including the one the first watch may have had buffered.
        const r4 = await del(t.etcd, k(2));
        const second = await watch(prefix, { resourceVersion: seen.at(-1)?.object.modRevision });
        const r5 = await put(t.etcd, k(3), 'd');
        const events = await second.until((e) => e.object.modRevision === r5);
        expect(events).toEqual([
          await putEvent(t, k(1), r3),
          await deleteEvent(t, k(2), r4),
          await putEvent(t, k(3), r5),
        ]);
      } finally {
        closeAll();
      }
    });

    it('with timeoutSeconds=1 ends the stream cleanly by itself', async () => {
      const t = target();
      const prefix = ns('timeout');
      try {
        const started = Date.now();
        const w = await watch(prefix, { resourceVersion: await currentRevision(t.etcd), timeoutSeconds: 1 });
        const events = await w.toEnd(5_000);
        expect(events.filter((e) => e.type !== 'BOOKMARK')).toEqual([]);
        expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      } finally {
        closeAll();
      }
    });

    it('streams Server-Sent Events named after the event type when asked for text/event-stream', async () => {
      const t = target();
      const prefix = ns('sse');
      await put(t.etcd, `${prefix}a`, 'a1');
      try {
        const w = await watch(prefix, {}, true);
        const [initial] = await w.take(1);
        expect(initial).toEqual(
          await putEvent(t, `${prefix}a`, (initial?.object.modRevision as number) ?? 0),
        );
        const deleted = await del(t.etcd, `${prefix}a`);
        const created = await put(t.etcd, `${prefix}b`, 'b1');
        expect(await w.take(2)).toEqual([
          await deleteEvent(t, `${prefix}a`, deleted),
          await putEvent(t, `${prefix}b`, created),
        ]);
      } finally {
        closeAll();
      }
    });
  });
}
