import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { encodeContinue } from './continue.ts';
import { kvShape } from './format.ts';
import { makeObject } from './object.ts';
import { execute, type ReadTier } from './read-api.ts';
import { parseReadRequest, type ReadRequest } from './request.ts';
import { planRead, type ReadAt, type ServePlan, type Tier, type TierFacts } from './rules.ts';
import { FetchedPage } from './store.ts';
import { WatchCache } from './watch-cache.ts';

const request = (path: string, query = ''): ReadRequest =>
  parseReadRequest(path, new URLSearchParams(query), { exposedPrefixes: ['/r/'] });

/** A tier current to revision 100 that can reproduce every state since 50. */
const ready: TierFacts = { ready: true, revision: 100, oldestRevision: 50, consistentReadsFromCache: true };
const noProof: TierFacts = { ...ready, consistentReadsFromCache: false };
const notReady: TierFacts = { ready: false, revision: 0, oldestRevision: 0, consistentReadsFromCache: true };

const continueAt = (rv: number) => `continue=${encodeContinue({ rv, prefix: '/r/', start: '/r/b' })}`;

type Row = [string, string, string, TierFacts, ServePlan, ServePlan];
// [case, path, query, facts, relay plan, edge plan]

const GET = '/v1/kv/r/a';
const LIST = '/v1/list/r/';

const getAndListRows: Row[] = [
  // any
  [
    'a get at rv=0',
    GET,
    'resourceVersion=0',
    ready,
    { serve: 'local', at: 'current' },
    { serve: 'local', at: 'current' },
  ],
  [
    'a list at rv=0',
    LIST,
    'resourceVersion=0',
    ready,
    { serve: 'local', at: 'current' },
    { serve: 'local', at: 'current' },
  ],
  [
    'a paginated list at rv=0',
    LIST,
    'resourceVersion=0&limit=10',
    ready,
    { serve: 'local', at: 'current' },
    { serve: 'local', at: 'current' },
  ],
  // not older than
  [
    'a get at rv=n',
    GET,
    'resourceVersion=80',
    ready,
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a get at rv=n ahead of the tier',
    GET,
    'resourceVersion=120',
    ready,
    { serve: 'local', at: { notOlderThan: 120 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'local', at: { notOlderThan: 120 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a list NotOlderThan n',
    LIST,
    'resourceVersionMatch=NotOlderThan&resourceVersion=80',
    ready,
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a list at rv=n without a match (not older than)',
    LIST,
    'resourceVersion=80',
    ready,
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  // most recent
  [
    'a most-recent get',
    GET,
    '',
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a most-recent list',
    LIST,
    'limit=5',
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a most-recent get without proof of freshness',
    GET,
    '',
    noProof,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  [
    'a most-recent list without proof of freshness',
    LIST,
    '',
    noProof,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  // exact
  [
    'an Exact list inside the window',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=60',
    ready,
    { serve: 'local', at: { exact: 60 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'fallback', at: { exact: 60 } },
  ],
  [
    'an Exact list at the oldest revision held',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=50',
    ready,
    { serve: 'local', at: { exact: 50 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'fallback', at: { exact: 50 } },
  ],
  [
    'an Exact list older than the window (maybe not compacted)',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=49',
    ready,
    { serve: 'fallback', at: { exact: 49 } },
    { serve: 'fallback', at: { exact: 49 } },
  ],
  [
    'an Exact list ahead of the tier',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=120',
    ready,
    { serve: 'local', at: { exact: 120 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'fallback', at: { exact: 120 } },
  ],
  [
    'a paginated list at rv=n (legacy Exact)',
    LIST,
    'resourceVersion=60&limit=5',
    ready,
    { serve: 'local', at: { exact: 60 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'fallback', at: { exact: 60 } },
  ],
  [
    'a continue inside the window',
    LIST,
    `limit=5&${continueAt(70)}`,
    ready,
    { serve: 'local', at: { exact: 70 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'fallback', at: { exact: 70 } },
  ],
  [
    'a continue older than the window',
    LIST,
    `limit=5&${continueAt(10)}`,
    ready,
    { serve: 'fallback', at: { exact: 10 } },
    { serve: 'fallback', at: { exact: 10 } },
  ],
  // not ready
  [
    'a most-recent get, not ready',
    GET,
    '',
    notReady,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  [
    'a get at rv=0, not ready',
    GET,
    'resourceVersion=0',
    notReady,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  [
    'a get at rv=n, not ready',
    GET,
    'resourceVersion=7',
    notReady,
    { serve: 'fallback', at: { notOlderThan: 7 } },
    { serve: 'fallback', at: { notOlderThan: 7 } },
  ],
  [
    'a list at rv=0, not ready',
    LIST,
    'resourceVersion=0',
    notReady,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  [
    'an Exact list, not ready',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=7',
    notReady,
    { serve: 'fallback', at: { exact: 7 } },
    { serve: 'fallback', at: { exact: 7 } },
  ],
  [
    'a continue, not ready',
    LIST,
    continueAt(7),
    notReady,
    { serve: 'fallback', at: { exact: 7 } },
    { serve: 'fallback', at: { exact: 7 } },
  ],
];

const W = 'watch=true';
const SIE = 'sendInitialEvents=true&resourceVersionMatch=NotOlderThan';
const NO_SIE = 'sendInitialEvents=false&resourceVersionMatch=NotOlderThan';

const watchRows: Row[] = [
  // initial events
  [
    'a legacy watch at rv=0',
    LIST,
    `${W}&resourceVersion=0`,
    ready,
    { serve: 'local', at: 'current' },
    { serve: 'local', at: 'current' },
  ],
  [
    'a watch-list at rv=0',
    LIST,
    `${W}&${SIE}&resourceVersion=0`,
    ready,
    { serve: 'local', at: 'current' },
    { serve: 'local', at: 'current' },
  ],
  [
    'a watch-list not older than n',
    LIST,
    `${W}&${SIE}&resourceVersion=80`,
    ready,
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge', onGone: 'fallback' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a legacy watch with rv unset',
    LIST,
    W,
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a watch-list with rv unset',
    LIST,
    `${W}&${SIE}`,
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a legacy watch with rv unset, without proof',
    LIST,
    W,
    noProof,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  [
    'a watch-list with rv unset, without proof',
    LIST,
    `${W}&${SIE}`,
    noProof,
    { serve: 'fallback', at: 'latest' },
    { serve: 'fallback', at: 'latest' },
  ],
  // changes only
  [
    'a watch without initial events at rv=0',
    LIST,
    `${W}&${NO_SIE}&resourceVersion=0`,
    ready,
    { serve: 'local', at: 'current' },
    { serve: 'local', at: 'current' },
  ],
  [
    'a watch without initial events with rv unset',
    LIST,
    `${W}&${NO_SIE}`,
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a watch without initial events with rv unset, without proof (no wait is needed)',
    LIST,
    `${W}&${NO_SIE}`,
    noProof,
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
    { serve: 'local', at: 'latest', onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a watch from rv=n inside the window',
    LIST,
    `${W}&resourceVersion=60`,
    ready,
    { serve: 'local', at: { exact: 60 }, onTimeout: 'tooLarge', onGone: 'expired' },
    { serve: 'local', at: { exact: 60 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a watch from the oldest revision held',
    LIST,
    `${W}&${NO_SIE}&resourceVersion=50`,
    ready,
    { serve: 'local', at: { exact: 50 }, onTimeout: 'tooLarge', onGone: 'expired' },
    { serve: 'local', at: { exact: 50 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a watch from rv=n ahead of the tier',
    LIST,
    `${W}&resourceVersion=120`,
    ready,
    { serve: 'local', at: { exact: 120 }, onTimeout: 'tooLarge', onGone: 'expired' },
    { serve: 'local', at: { exact: 120 }, onTimeout: 'fallback', onGone: 'fallback' },
  ],
  [
    'a watch from rv=n older than the window',
    LIST,
    `${W}&resourceVersion=49`,
    ready,
    { serve: 'reject', reason: 'expired' },
    { serve: 'fallback', at: { exact: 49 } },
  ],
  // not ready
  [
    'a watch, not ready',
    LIST,
    W,
    notReady,
    { serve: 'reject', reason: 'notReady' },
    { serve: 'reject', reason: 'notReady' },
  ],
  [
    'a watch from rv=n, not ready',
    LIST,
    `${W}&resourceVersion=60`,
    notReady,
    { serve: 'reject', reason: 'notReady' },
    { serve: 'reject', reason: 'notReady' },
  ],
];

describe.each<[string, Row[]]>([
  ['get and list', getAndListRows],
  ['watch', watchRows],
])('planRead for %s', (_kind, rows) => {
  it.each(rows)('serves %s (%s?%s)', (_name, path, query, facts, relayPlan, edgePlan) => {
    const parsed = request(path, query);
    expect(planRead(parsed, 'relay', facts)).toEqual(relayPlan);
    expect(planRead(parsed, 'edge', facts)).toEqual(edgePlan);
  });
});

describe('planRead invariants', () => {
  it('never lets the edge serve an Exact read or a continue itself', () => {
    for (const query of ['resourceVersionMatch=Exact&resourceVersion=100', `limit=1&${continueAt(100)}`]) {
      expect(planRead(request(LIST, query), 'edge', ready).serve).toBe('fallback');
    }
  });

  it('never answers 504 at the edge: a wait that runs out goes to the relay', () => {
    for (const [, path, query, facts] of [...getAndListRows, ...watchRows]) {
      const plan = planRead(request(path, query), 'edge', facts);
      if (plan.serve === 'local' && plan.at !== 'current') expect(plan.onTimeout).toBe('fallback');
    }
  });
});

// ---- executing every row ------------------------------------------------------------------
//
// Each row's plan, for both tiers, carried out by core/read-api.ts against a real WatchCache and a
// fake fallback, in three situations:
// - "now": the cache already holds the state (revision 200, window from 50; etcd is at 200);
// - "timeout": the cache is at 40 and gets no further before the wait runs out (etcd at 200);
// - "gone": the cache is at 40 and relists at 300 while the read waits (its window moves past
//   every revision the rows name).
// What must happen follows from the plan: waiting plans are served locally when the state is
// there, else as `onTimeout` / `onGone` say; a watch of the changes after "latest" never waits.

const utf8 = new TextEncoder();
const kv = (key: string, rev: number) =>
  makeObject({ key, value: utf8.encode(`v${rev}`), createRevision: rev, modRevision: rev, version: 1 });
const BASE = [kv('/r/a', 10), kv('/r/b', 20)];

type Situation = 'now' | 'timeout' | 'gone';
/** What the fake fallback answers with, so a response can be traced to it. */
const FALLBACK_REVISION = 77;

function setUp(situation: Situation, facts: TierFacts, tierName: Tier) {
  const clock = new ManualClock();
  const cache = new WatchCache({ clock, maxAgeMs: Number.POSITIVE_INFINITY });
  const asked: ReadAt[] = [];
  if (facts.ready) {
    if (situation === 'now') {
      cache.replace(50, BASE);
      for (let rev = 51; rev <= 200; rev++) {
        cache.apply({ revision: rev, events: [{ type: 'PUT', object: kv(`/r/c${rev}`, rev) }] });
      }
    } else {
      cache.replace(40, BASE);
      cache.onWait(() =>
        queueMicrotask(() =>
          situation === 'timeout' ? void clock.advance(3_000) : cache.replace(300, BASE),
        ),
      );
    }
  }
  const tier: ReadTier = {
    tier: tierName,
    exposedPrefixes: ['/r/'],
    clock,
    waitTimeoutMs: 3_000,
    consistentReadsFromCache: facts.consistentReadsFromCache,
    cache: () => cache,
    latestRevision: async () => 200,
    fallback: async (_request, at) => {
      asked.push(at);
      if (tierName === 'edge') {
        return {
          kind: 'response',
          response: new Response('{}', { headers: { 'X-Served-By': 'relay' } }),
        };
      }
      return { kind: 'state', servedBy: 'etcd', reader: new FetchedPage(FALLBACK_REVISION, BASE, 0) };
    },
  };
  return { tier, cache, asked };
}

type Outcome = 'local' | 'fallback' | 410 | 429 | 504;

function expectedOutcome(plan: ServePlan, situation: Situation, parsed: ReadRequest): Outcome {
  if (plan.serve === 'reject') return plan.reason === 'notReady' ? 429 : 410;
  if (plan.serve === 'fallback') return 'fallback';
  if (plan.at === 'current' || situation === 'now') return 'local';
  const watchAfterLatest = parsed.verb === 'watch' && !parsed.initialEvents && plan.at === 'latest';
  if (situation === 'timeout') {
    if (watchAfterLatest) return 'local';
    return plan.onTimeout === 'fallback' ? 'fallback' : 504;
  }
  // gone: only an exact state (or the changes after it) can leave the window.
  if (plan.at !== 'latest' && 'exact' in plan.at) return plan.onGone === 'fallback' ? 'fallback' : 410;
  return 'local';
}

async function outcomeOf(res: Response, parsed: ReadRequest, tierName: Tier): Promise<Outcome> {
  // A watch that ends at once with an ERROR event names no revision; an open one does.
  if (parsed.verb === 'watch' && res.status === 200 && !res.headers.has('X-Resource-Version')) {
    const reader = res.body?.getReader();
    const first = await reader?.read();
    await reader?.cancel();
    const text = new TextDecoder().decode(first?.value);
    if (text.includes('"type":"ERROR"')) return JSON.parse(text).object.code;
  } else {
    await res.body?.cancel();
  }
  if (res.status !== 200) return res.status as Outcome;
  const by = res.headers.get('X-Served-By');
  if (by === tierName) return 'local';
  if (by === (tierName === 'edge' ? 'relay' : 'etcd')) return 'fallback';
  throw new Error(`served by ${by}`);
}

describe.each<[string, Row[]]>([
  ['get and list', getAndListRows],
  ['watch', watchRows],
])('executing the plan for %s', (_kind, rows) => {
  const cases = rows.flatMap((row) =>
    (['relay', 'edge'] as const).flatMap((tierName) =>
      (['now', 'timeout', 'gone'] as const).map((situation) => [row[0], tierName, situation, row] as const),
    ),
  );
  it.each(cases)('%s at the %s, %s', async (_name, tierName, situation, row) => {
    const [, path, query, facts] = row;
    const parsed = request(path, query);
    const plan = planRead(parsed, tierName, facts);
    const { tier, cache, asked } = setUp(situation, facts, tierName);
    const raw = new Request(`http://tier${path}?${query}`);
    // As serveParsed does: what execute throws is answered by the shape.
    const res = await execute(tier, cache, plan, parsed, raw, kvShape).catch((e) =>
      kvShape.error(e, tierName),
    );
    const expected = expectedOutcome(plan, situation, parsed);
    expect(await outcomeOf(res, parsed, tierName)).toBe(expected);
    if (expected === 'fallback') {
      // The fallback is asked for exactly the state the plan names.
      expect(asked).toEqual([plan.serve === 'local' || plan.serve === 'fallback' ? plan.at : undefined]);
      if (tierName === 'relay') expect(res.headers.get('X-Resource-Version')).toBe(String(FALLBACK_REVISION));
    } else {
      expect(asked).toEqual([]);
    }
    if (expected === 'local' && parsed.verb !== 'watch' && plan.serve === 'local') {
      // Served from the state the plan asked for: exactly n, or the cache's current revision.
      const at = plan.at;
      const revision = at !== 'current' && at !== 'latest' && 'exact' in at ? at.exact : cache.revision;
      expect(res.headers.get('X-Resource-Version')).toBe(String(revision));
    }
  });
});
