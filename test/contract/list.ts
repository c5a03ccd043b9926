/** Contract: `GET /v1/list/{prefix}` (API.md list table, paging, "Responses"). */
import { describe, expect, it } from 'vitest';
import { currentRevision, del, type ModelObject, put, putMany, stateAt } from './etcd-model.ts';
import { expectList, expectStatus, listUrl, type Query } from './http.ts';
import type { ContractTarget, TargetRef } from './target.ts';

type Rv = 'unset' | '0' | 'n';
type Match = 'unset' | 'NotOlderThan' | 'Exact';
type Outcome = 'most recent' | 'any' | 'not older than n' | 'exactly n' | 400;

/** API.md's list table (limit unset), cell by cell. */
const TABLE: { match: Match; rv: Rv; outcome: Outcome }[] = [
  { match: 'unset', rv: 'unset', outcome: 'most recent' },
  { match: 'unset', rv: '0', outcome: 'any' },
  { match: 'unset', rv: 'n', outcome: 'not older than n' },
  { match: 'NotOlderThan', rv: 'unset', outcome: 400 },
  { match: 'NotOlderThan', rv: '0', outcome: 'any' },
  { match: 'NotOlderThan', rv: 'n', outcome: 'not older than n' },
  { match: 'Exact', rv: 'unset', outcome: 400 },
  { match: 'Exact', rv: '0', outcome: 400 },
  { match: 'Exact', rv: 'n', outcome: 'exactly n' },
];

/**
 * Writes a, b, c (n = the revision of c), then changes the prefix after n: modifies a, deletes
 * b, adds d. Returns n and the latest revision.
 */
async function historyAfterN(t: ContractTarget, prefix: string): Promise<{ n: number; latest: number }> {
  await put(t.etcd, `${prefix}a`, 'a1');
  await put(t.etcd, `${prefix}b`, 'b1');
  const n = await put(t.etcd, `${prefix}c`, 'c1');
  await put(t.etcd, `${prefix}a`, 'a2');
  await del(t.etcd, `${prefix}b`);
  const latest = await put(t.etcd, `${prefix}d`, 'd1');
  return { n, latest };
}

export function listContract(target: TargetRef): void {
  describe('list', () => {
    const ns = (name: string) => `${target().prefix}list-${name}/`;

    for (const cell of TABLE) {
      const name =
        cell.outcome === 400
          ? `with resourceVersionMatch=${cell.match} and resourceVersion=${cell.rv} is 400 BadRequest`
          : `with resourceVersionMatch=${cell.match} and resourceVersion=${cell.rv} answers ${cell.outcome}, equal to etcd at the served revision`;
      it(name, async () => {
        const t = target();
        const prefix = ns(`table-${cell.match}-${cell.rv}`);
        const { n, latest } = await historyAfterN(t, prefix);
        const query: Query = {
          resourceVersion: cell.rv === 'unset' ? undefined : cell.rv === '0' ? 0 : n,
          resourceVersionMatch: cell.match === 'unset' ? undefined : cell.match,
        };
        const res = await fetch(listUrl(t, prefix, query));
        if (cell.outcome === 400) {
          await expectStatus(res, 400, 'BadRequest');
          return;
        }
        const { body, revision } = await expectList<ModelObject>(t, res);
        if (cell.outcome === 'most recent') expect(revision).toBeGreaterThanOrEqual(latest);
        if (cell.outcome === 'not older than n') expect(revision).toBeGreaterThanOrEqual(n);
        if (cell.outcome === 'exactly n') expect(revision).toBe(n);
        expect(body.items).toEqual((await stateAt(t.etcd, prefix, revision)).items);
        expect(body.metadata.continue).toBeUndefined();
        expect(body.metadata.remainingItemCount).toBeUndefined();
      });
    }

    it('with resourceVersion=n in the future answers 504 ResourceVersionTooLarge within the wait', async () => {
      const t = target();
      const future = (await currentRevision(t.etcd)) + 1000;
      for (const match of [undefined, 'NotOlderThan', 'Exact']) {
        const started = Date.now();
        const query = { resourceVersion: future, resourceVersionMatch: match };
        const status = await expectStatus(await fetch(listUrl(t, ns('future'), query)), 504, 'Timeout');
        expect(Date.now() - started).toBeLessThan(t.waitTimeoutMs + 2_000);
        expect(status.details?.causes?.[0]?.reason).toBe('ResourceVersionTooLarge');
      }
    });

    it('with Exact n returns etcd state at n after later writes and deletes', async () => {
      const t = target();
      const prefix = ns('exact-history');
      const { n } = await historyAfterN(t, prefix);
      const res = await fetch(listUrl(t, prefix, { resourceVersion: n, resourceVersionMatch: 'Exact' }));
      const { body, revision } = await expectList<ModelObject>(t, res);
      expect(revision).toBe(n);
      expect(body.items.map((o) => [o.key.slice(prefix.length), o.value])).toEqual([
        ['a', 'a1'],
        ['b', 'b1'],
        ['c', 'c1'],
      ]);
      expect(body.items).toEqual((await stateAt(t.etcd, prefix, n)).items);
    });

    it('returns items in etcd key order (bytewise, not UTF-16)', async () => {
      const t = target();
      const prefix = ns('order');
      // U+FFFD sorts before U+1F600 in UTF-16 but after it in UTF-8 bytes, as etcd orders keys.
      const names = ['b', 'B', 'a/', 'a', 'é', 'z', '\uFFFD', '😀', 'a0', '_', ' '];
      for (const name of names) await put(t.etcd, `${prefix}${name}`, name);
      const { body, revision } = await expectList<ModelObject>(t, await fetch(listUrl(t, prefix)));
      const expected = (await stateAt(t.etcd, prefix, revision)).items;
      expect(body.items.map((o) => o.key)).toEqual(expected.map((o) => o.key));
      expect(body.items).toEqual(expected);
    });

    it('pages with limit and continue at the first page revision while writes land between pages', async () => {
      const t = target();
      const prefix = ns('paging');
      await putMany(t.etcd, prefix, 25);
      const first = await expectList<ModelObject>(t, await fetch(listUrl(t, prefix, { limit: 10 })));
      const snapshot = first.revision;
      expect(first.body.items).toHaveLength(10);
      expect(first.body.metadata.remainingItemCount).toBe(15);
      expect(first.body.metadata.continue).toEqual(expect.any(String));

      // Changes after the first page, on both sides of the cursor: none may show up in later pages.
      await put(t.etcd, `${prefix}k03`, 'changed');
      await put(t.etcd, `${prefix}k15`, 'changed');
      await del(t.etcd, `${prefix}k16`);
      await put(t.etcd, `${prefix}k17x`, 'new');

      const second = await expectList<ModelObject>(
        t,
        await fetch(listUrl(t, prefix, { limit: 10, continue: first.body.metadata.continue })),
      );
      expect(second.revision).toBe(snapshot);
      expect(second.body.items).toHaveLength(10);
      expect(second.body.metadata.remainingItemCount).toBe(5);

      // rv=0 with continue is allowed and changes nothing: the token's snapshot wins.
      const third = await expectList<ModelObject>(
        t,
        await fetch(
          listUrl(t, prefix, { limit: 10, continue: second.body.metadata.continue, resourceVersion: 0 }),
        ),
      );
      expect(third.revision).toBe(snapshot);
      expect(third.body.items).toHaveLength(5);
      expect(third.body.metadata.continue).toBeUndefined();
      expect(third.body.metadata.remainingItemCount).toBeUndefined();

      const all = [...first.body.items, ...second.body.items, ...third.body.items];
      expect(all).toEqual((await stateAt(t.etcd, prefix, snapshot)).items);
    });

    it('rejects continue with resourceVersion=n, and a tampered or truncated continue, with 400', async () => {
      const t = target();
      const prefix = ns('continue-errors');
      const revisions = await putMany(t.etcd, prefix, 3);
      const first = await expectList<ModelObject>(t, await fetch(listUrl(t, prefix, { limit: 1 })));
      const token = first.body.metadata.continue ?? '';
      expect(token).not.toBe('');
      const last = revisions[revisions.length - 1];

      await expectStatus(
        await fetch(listUrl(t, prefix, { limit: 1, continue: token, resourceVersion: last })),
        400,
        'BadRequest',
      );
      const middle = Math.floor(token.length / 2);
      const flipped = token[middle] === 'A' ? 'B' : 'A';
      const bad = [
        `${token.slice(0, middle)}${flipped}${token.slice(middle + 1)}`,
        token.slice(0, -3),
        token.slice(0, middle),
        `${token}x`,
        'not-a-token',
      ];
      for (const tampered of bad) {
        await expectStatus(
          await fetch(listUrl(t, prefix, { limit: 1, continue: tampered })),
          400,
          'BadRequest',
        );
      }
      // A token is bound to its list prefix.
      await expectStatus(
        await fetch(listUrl(t, ns('other'), { limit: 1, continue: token })),
        400,
        'BadRequest',
      );
    });

    it('with limit and resourceVersion=n and no match reads exactly n, as Kubernetes does', async () => {
      const t = target();
      const prefix = ns('limit-exact');
      const { n } = await historyAfterN(t, prefix);
      const res = await fetch(listUrl(t, prefix, { limit: 100, resourceVersion: n }));
      const { body, revision } = await expectList<ModelObject>(t, res);
      expect(revision).toBe(n);
      expect(body.items).toEqual((await stateAt(t.etcd, prefix, n)).items);
    });

    it('answers every list with exactly etcd state at its revision while writes race it', async () => {
      const t = target();
      const prefix = ns('racing');
      await putMany(t.etcd, prefix, 10);
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing; i++) {
          const key = `${prefix}k${String(i % 12).padStart(2, '0')}`;
          if (i % 5 === 4) await del(t.etcd, key);
          else await put(t.etcd, key, `w${i}`);
        }
      })();
      try {
        for (let i = 0; i < 15; i++) {
          const query: Query = i % 3 === 0 ? {} : i % 3 === 1 ? { resourceVersion: 0 } : { limit: 4 };
          const { body, revision } = await expectList<ModelObject>(t, await fetch(listUrl(t, prefix, query)));
          const expected = (await stateAt(t.etcd, prefix, revision)).items;
          expect(body.items).toEqual(query.limit ? expected.slice(0, 4) : expected);
        }
      } finally {
        writing = false;
        await writer;
      }
    });
  });
}
