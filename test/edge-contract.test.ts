/**
 * The same read/watch contract suite, unchanged, against the edge: the Worker in workerd with its
 * Durable Object replica streaming from a real relay over a real etcd. Each response must come
 * from whom core/rules.ts says for its request (test/contract/served-by.ts): the replica for
 * rv=0 and what it can wait for, the relay (or etcd behind it) for Exact reads and continues.
 */
import { put } from './contract/etcd-model.ts';
import { defineContractSuite } from './contract/suite.ts';
import { startStack } from './helpers/stack.ts';

const PREFIX = '/registry/';
const RELAY_WAIT_MS = 500;
const EDGE_WAIT_MS = 300;

defineContractSuite('the edge', async () => {
  let revisionBeforeStart = 0;
  const stack = await startStack({
    prefixes: [PREFIX, '/other/'],
    relayArgs: ['--wait-timeout-ms', String(RELAY_WAIT_MS)],
    workerVars: { EDGE_WAIT_MS: String(EDGE_WAIT_MS) },
    beforeRelay: async (client) => {
      revisionBeforeStart = await put(client, `${PREFIX}seed/a`, 'a1');
      await put(client, `${PREFIX}seed/a`, 'a2');
      await put(client, `${PREFIX}seed/b`, 'b1');
    },
  });
  const worker = stack.worker;
  if (!worker) throw new Error('the edge contract needs the worker');
  return {
    baseUrl: worker.url,
    tier: 'edge',
    exposedPrefixes: [PREFIX, '/other/'],
    expectedServedBy: ['edge', 'relay', 'etcd'],
    etcd: stack.client,
    prefix: PREFIX,
    waitTimeoutMs: EDGE_WAIT_MS + RELAY_WAIT_MS,
    revisionBeforeStart,
    compact: async (revision) => {
      await stack.client.kv.compact({ revision, physical: true });
    },
    stop: stack.stop,
  };
});
