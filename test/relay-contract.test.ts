/**
 * The read/watch contract suite (test/contract/) against the relay alone: a throw-away etcd and
 * an in-process relay, no Worker.
 *
 * Not `startStack`: the expiry tests need etcd history from before the relay started (no cache
 * can hold it), so this setup writes `/registry/seed/` first and only then starts the relay.
 */
import { Etcd3 } from 'etcd3';
import { parseConfig } from '../relay/config.ts';
import { silentLogger } from '../relay/log.ts';
import { type RunningRelay, startRelay } from '../relay/server.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { put } from './contract/etcd-model.ts';
import { defineContractSuite } from './contract/suite.ts';
import { TEST_SECRET } from './helpers/stack.ts';

const PREFIX = '/registry/';
const WAIT_TIMEOUT_MS = 500;

/** Polls `/readyz` (every prefix's cache loaded) with a deadline, as etcd-process polls `/health`. */
async function untilReady(url: string, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    const res = await fetch(`${url}/readyz`);
    await res.body?.cancel();
    if (res.status === 200) return;
    if (Date.now() > deadline) throw new Error(`relay not ready within ${deadlineMs} ms: ${res.status}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

defineContractSuite('the relay', async () => {
  const etcd = await startEtcd();
  const client = new Etcd3({ hosts: etcd.endpoint });
  let relay: RunningRelay | undefined;
  const stop = async () => {
    await relay?.stop();
    client.close();
    await etcd.stop();
  };
  try {
    const revisionBeforeStart = await put(client, `${PREFIX}seed/a`, 'a1');
    await put(client, `${PREFIX}seed/a`, 'a2');
    await put(client, `${PREFIX}seed/b`, 'b1');
    const config = parseConfig(
      [
        '--port',
        '0',
        '--etcd',
        etcd.endpoint,
        '--secret',
        TEST_SECRET,
        '--prefix',
        PREFIX,
        '--prefix',
        '/other/',
        '--wait-timeout-ms',
        String(WAIT_TIMEOUT_MS),
      ],
      {},
    );
    relay = await startRelay(config, silentLogger);
    await untilReady(relay.url);
    return {
      baseUrl: relay.url,
      expectedServedBy: ['relay', 'etcd'],
      etcd: client,
      prefix: PREFIX,
      waitTimeoutMs: WAIT_TIMEOUT_MS,
      revisionBeforeStart,
      compact: async (revision) => {
        await client.kv.compact({ revision, physical: true });
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
});
