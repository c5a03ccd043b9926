/**
 * Contract: revisions older than every tier's window, before and after etcd compacts them
 * (API.md: 410 Expired rows, "A watch from a revision older than the serving tier still holds").
 *
 * Declared last: compaction is irreversible, and the reference model cannot read compacted
 * revisions either.
 */
import { describe, expect, it } from 'vitest';
import { currentRevision, type ModelObject, stateAt } from './etcd-model.ts';
import { expectList, expectOk, expectStatus, getUrl, listUrl } from './http.ts';
import type { TargetRef } from './target.ts';
import { WatchReader } from './watch-reader.ts';

/** A watch from `rv` must get exactly one ERROR event with a 410 Expired Status, then end. */
async function expectExpiredWatch(url: string): Promise<void> {
  const w = await WatchReader.open(url);
  try {
    const events = await w.toEnd(5_000);
    expect(events).toHaveLength(1);
    expect(events[0]?.type).toBe('ERROR');
    expect(events[0]?.object).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      code: 410,
      reason: 'Expired',
    });
  } finally {
    w.close();
  }
}

export function expiryContract(target: TargetRef): void {
  describe('revisions before the tiers started, then compacted', () => {
    const seed = () => `${target().prefix}seed/`;

    it('serves an Exact list older than every cache from etcd history, exactly as etcd had it', async () => {
      const t = target();
      const rv = t.revisionBeforeStart;
      const { body, revision } = await expectList<ModelObject>(
        t,
        await fetch(listUrl(t, seed(), { resourceVersion: rv, resourceVersionMatch: 'Exact' })),
      );
      expect(revision).toBe(rv);
      const expected = (await stateAt(t.etcd, seed(), rv)).items;
      expect(expected.length).toBeGreaterThan(0);
      expect(body.items).toEqual(expected);
      expect(body.items).not.toEqual((await stateAt(t.etcd, seed())).items);
    });

    it('answers a watch from a revision older than the tier holds with one ERROR 410 Expired, then ends', async () => {
      const t = target();
      await expectExpiredWatch(listUrl(t, seed(), { watch: true, resourceVersion: t.revisionBeforeStart }));
    });

    it('answers Exact lists of a revision etcd compacted with 410 Expired', async () => {
      const t = target();
      const rv = t.revisionBeforeStart;
      await t.compact(await currentRevision(t.etcd));
      for (const query of [
        { resourceVersion: rv, resourceVersionMatch: 'Exact' },
        { resourceVersion: rv, limit: 10 },
      ]) {
        await expectStatus(await fetch(listUrl(t, seed(), query)), 410, 'Expired');
      }
    });

    it('answers a watch from a revision etcd compacted with one ERROR 410 Expired, then ends', async () => {
      const t = target();
      await expectExpiredWatch(listUrl(t, seed(), { watch: true, resourceVersion: t.revisionBeforeStart }));
    });

    it('still serves NotOlderThan reads of a compacted revision from newer state', async () => {
      const t = target();
      const rv = t.revisionBeforeStart;
      const list = await expectList<ModelObject>(t, await fetch(listUrl(t, seed(), { resourceVersion: rv })));
      expect(list.revision).toBeGreaterThanOrEqual(rv);
      const now = await stateAt(t.etcd, seed());
      expect(list.body.items).toEqual(now.items);
      const key = now.items[0]?.key ?? `${seed()}a`;
      const got = await expectOk<ModelObject>(t, await fetch(getUrl(t, key, { resourceVersion: rv })));
      expect(got.body).toEqual(now.items[0]);
    });
  });
}
