/**
 * The read/watch contract suite (test/contract/) against the relay alone: a throw-away etcd and
 * an in-process relay, no Worker. `/registry/seed/` is written before the relay starts, so the
 * expiry tests have history that no cache can hold.
 */
import { put } from './contract/etcd-model.ts';
import { defineContractSuite } from './contract/suite.ts';
import { startStack } from './helpers/stack.ts';

const PREFIX = '/registry/';
const WAIT_TIMEOUT_MS = 500;

defineContractSuite('the relay', async () => {
  let revisionBeforeStart = 0;
  const stack = await startStack({
    worker: false,
    prefixes: [PREFIX, '/other/'],
    relayArgs: ['--wait-timeout-ms', String(WAIT_TIMEOUT_MS)],
    beforeRelay: async (client) => {
      revisionBeforeStart = await put(client, `${PREFIX}seed/a`, 'a1');
      await put(client, `${PREFIX}seed/a`, 'a2');
      await put(client, `${PREFIX}seed/b`, 'b1');
    },
  });
  return {
    baseUrl: stack.relay.url,
    tier: 'relay',
    exposedPrefixes: [PREFIX, '/other/'],
    expectedServedBy: ['relay', 'etcd'],
    etcd: stack.client,
    prefix: PREFIX,
    waitTimeoutMs: WAIT_TIMEOUT_MS,
    revisionBeforeStart,
    compact: async (revision) => {
      await stack.client.kv.compact({ revision, physical: true });
    },
    stop: stack.stop,
  };
});
