import { describe, expect, it } from 'vitest';
import { encodeContinue } from './continue.ts';
import { parseReadRequest, type ReadRequest } from './request.ts';
import { planRead, type ServePlan, type Tier, type TierFacts } from './rules.ts';

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
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'forward' },
  ],
  [
    'a get at rv=n ahead of the tier',
    GET,
    'resourceVersion=120',
    ready,
    { serve: 'local', at: { notOlderThan: 120 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { notOlderThan: 120 }, onTimeout: 'forward' },
  ],
  [
    'a list NotOlderThan n',
    LIST,
    'resourceVersionMatch=NotOlderThan&resourceVersion=80',
    ready,
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'forward' },
  ],
  [
    'a list at rv=n without a match (not older than)',
    LIST,
    'resourceVersion=80',
    ready,
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'forward' },
  ],
  // most recent
  [
    'a most-recent get',
    GET,
    '',
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'etcd' },
    { serve: 'local', at: 'latest', onTimeout: 'forward' },
  ],
  [
    'a most-recent list',
    LIST,
    'limit=5',
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'etcd' },
    { serve: 'local', at: 'latest', onTimeout: 'forward' },
  ],
  [
    'a most-recent get without proof of freshness',
    GET,
    '',
    noProof,
    { serve: 'etcd', at: 'latest' },
    { serve: 'relay' },
  ],
  [
    'a most-recent list without proof of freshness',
    LIST,
    '',
    noProof,
    { serve: 'etcd', at: 'latest' },
    { serve: 'relay' },
  ],
  // exact
  [
    'an Exact list inside the window',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=60',
    ready,
    { serve: 'local', at: { exact: 60 }, onTimeout: 'tooLarge' },
    { serve: 'relay' },
  ],
  [
    'an Exact list at the oldest revision held',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=50',
    ready,
    { serve: 'local', at: { exact: 50 }, onTimeout: 'tooLarge' },
    { serve: 'relay' },
  ],
  [
    'an Exact list older than the window (maybe not compacted)',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=49',
    ready,
    { serve: 'etcd', at: { exact: 49 } },
    { serve: 'relay' },
  ],
  [
    'an Exact list ahead of the tier',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=120',
    ready,
    { serve: 'local', at: { exact: 120 }, onTimeout: 'tooLarge' },
    { serve: 'relay' },
  ],
  [
    'a paginated list at rv=n (legacy Exact)',
    LIST,
    'resourceVersion=60&limit=5',
    ready,
    { serve: 'local', at: { exact: 60 }, onTimeout: 'tooLarge' },
    { serve: 'relay' },
  ],
  [
    'a continue inside the window',
    LIST,
    `limit=5&${continueAt(70)}`,
    ready,
    { serve: 'local', at: { exact: 70 }, onTimeout: 'tooLarge' },
    { serve: 'relay' },
  ],
  [
    'a continue older than the window',
    LIST,
    `limit=5&${continueAt(10)}`,
    ready,
    { serve: 'etcd', at: { exact: 10 } },
    { serve: 'relay' },
  ],
  // not ready
  ['a most-recent get, not ready', GET, '', notReady, { serve: 'etcd', at: 'latest' }, { serve: 'relay' }],
  [
    'a get at rv=0, not ready',
    GET,
    'resourceVersion=0',
    notReady,
    { serve: 'etcd', at: 'latest' },
    { serve: 'relay' },
  ],
  [
    'a get at rv=n, not ready',
    GET,
    'resourceVersion=7',
    notReady,
    { serve: 'etcd', at: { notOlderThan: 7 } },
    { serve: 'relay' },
  ],
  [
    'a list at rv=0, not ready',
    LIST,
    'resourceVersion=0',
    notReady,
    { serve: 'etcd', at: 'latest' },
    { serve: 'relay' },
  ],
  [
    'an Exact list, not ready',
    LIST,
    'resourceVersionMatch=Exact&resourceVersion=7',
    notReady,
    { serve: 'etcd', at: { exact: 7 } },
    { serve: 'relay' },
  ],
  [
    'a continue, not ready',
    LIST,
    continueAt(7),
    notReady,
    { serve: 'etcd', at: { exact: 7 } },
    { serve: 'relay' },
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
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { notOlderThan: 80 }, onTimeout: 'forward' },
  ],
  [
    'a legacy watch with rv unset',
    LIST,
    W,
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'tooLarge' },
    { serve: 'local', at: 'latest', onTimeout: 'forward' },
  ],
  [
    'a watch-list with rv unset',
    LIST,
    `${W}&${SIE}`,
    ready,
    { serve: 'local', at: 'latest', onTimeout: 'tooLarge' },
    { serve: 'local', at: 'latest', onTimeout: 'forward' },
  ],
  [
    'a legacy watch with rv unset, without proof',
    LIST,
    W,
    noProof,
    { serve: 'etcd', at: 'latest' },
    { serve: 'relay' },
  ],
  [
    'a watch-list with rv unset, without proof',
    LIST,
    `${W}&${SIE}`,
    noProof,
    { serve: 'etcd', at: 'latest' },
    { serve: 'relay' },
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
    { serve: 'local', at: 'latest', onTimeout: 'tooLarge' },
    { serve: 'local', at: 'latest', onTimeout: 'forward' },
  ],
  [
    'a watch without initial events with rv unset, without proof (no wait is needed)',
    LIST,
    `${W}&${NO_SIE}`,
    noProof,
    { serve: 'local', at: 'latest', onTimeout: 'tooLarge' },
    { serve: 'local', at: 'latest', onTimeout: 'forward' },
  ],
  [
    'a watch from rv=n inside the window',
    LIST,
    `${W}&resourceVersion=60`,
    ready,
    { serve: 'local', at: { exact: 60 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { exact: 60 }, onTimeout: 'forward' },
  ],
  [
    'a watch from the oldest revision held',
    LIST,
    `${W}&${NO_SIE}&resourceVersion=50`,
    ready,
    { serve: 'local', at: { exact: 50 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { exact: 50 }, onTimeout: 'forward' },
  ],
  [
    'a watch from rv=n ahead of the tier',
    LIST,
    `${W}&resourceVersion=120`,
    ready,
    { serve: 'local', at: { exact: 120 }, onTimeout: 'tooLarge' },
    { serve: 'local', at: { exact: 120 }, onTimeout: 'forward' },
  ],
  [
    'a watch from rv=n older than the window',
    LIST,
    `${W}&resourceVersion=49`,
    ready,
    { serve: 'reject', reason: 'expired' },
    { serve: 'relay' },
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
  const allRows = [...getAndListRows, ...watchRows];
  const tiers: Tier[] = ['relay', 'edge'];

  it('never sends the edge to etcd nor the relay to itself', () => {
    for (const [, path, query, facts] of allRows) {
      for (const tier of tiers) {
        const plan = planRead(request(path, query), tier, facts);
        if (tier === 'edge') expect(plan.serve).not.toBe('etcd');
        else expect(plan.serve).not.toBe('relay');
      }
    }
  });

  it('never lets the edge serve an Exact read or a continue', () => {
    for (const query of ['resourceVersionMatch=Exact&resourceVersion=100', `limit=1&${continueAt(100)}`]) {
      expect(planRead(request(LIST, query), 'edge', ready)).toEqual({ serve: 'relay' });
    }
  });
});
