/**
 * The whole stack for a test file: a throw-away etcd, a relay in this process, and the Worker in
 * workerd. `stop()` tears down all three and is safe to call from `afterAll` even after a failure.
 */
import { Etcd3 } from 'etcd3';
import { parseConfig } from '../../relay/config.ts';
import { type Logger, silentLogger } from '../../relay/log.ts';
import { type RunningRelay, startRelay } from '../../relay/server.ts';
import { type EtcdProcess, startEtcd } from '../../scripts/lib/etcd-process.ts';
import { type RunningWorker, startWorker } from './worker.ts';

export const TEST_SECRET = 'test-replication-secret';

export interface Stack {
  etcd: EtcdProcess;
  /** A plain etcd3 client for the test's own writes and reference reads. */
  client: Etcd3;
  relay: RunningRelay;
  worker: RunningWorker | undefined;
  /** Stops the relay (if running) and starts a fresh one on the same port: a relay restart. */
  restartRelay(): Promise<void>;
  /** Stops the relay; `restartRelay` brings it back. */
  stopRelay(): Promise<void>;
  stop(): Promise<void>;
}

export interface StackOptions {
  prefixes?: string[];
  /** Start the Worker too (default true). */
  worker?: boolean;
  relayArgs?: string[];
  workerVars?: Record<string, string>;
  /** The relay's logger (default: silent). */
  log?: Logger;
  /** Writes to etcd before the relay starts (history no cache can hold). */
  beforeRelay?: (client: Etcd3) => Promise<void>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const prefixes = options.prefixes ?? ['/registry/'];
  const etcd = await startEtcd();
  const client = new Etcd3({ hosts: etcd.endpoint });
  let relay: RunningRelay | undefined;
  let worker: RunningWorker | undefined;
  const stop = async () => {
    await worker?.stop();
    await relay?.stop();
    client.close();
    await etcd.stop();
  };
  try {
    await options.beforeRelay?.(client);
    const config = parseConfig(
      [
        '--port',
        '0',
        '--etcd',
        etcd.endpoint,
        '--secret',
        TEST_SECRET,
        ...prefixes.flatMap((p) => ['--prefix', p]),
        // Local development mode unless the test configures tokens itself.
        ...(options.relayArgs?.includes('--tokens-file') ? [] : ['--insecure-no-auth']),
        ...(options.relayArgs ?? []),
      ],
      {},
    );
    relay = await startRelay(config, options.log ?? silentLogger);
    await relay.ready();
    const port = relay.port;
    let relayRunning = true;
    const stopRelay = async () => {
      if (relayRunning) await relay?.stop();
      relayRunning = false;
    };
    const restartRelay = async () => {
      await stopRelay();
      relay = await startRelay({ ...config, port }, options.log ?? silentLogger);
      relayRunning = true;
      await relay.ready();
    };
    if (options.worker !== false) {
      worker = await startWorker({
        relayUrl: relay.url,
        prefixes,
        replicationSecret: TEST_SECRET,
        ...(options.workerVars ? { vars: options.workerVars } : {}),
      });
    }
    return {
      etcd,
      client,
      get relay() {
        if (!relay) throw new Error('no relay');
        return relay;
      },
      worker,
      restartRelay,
      stopRelay,
      stop: async () => {
        await worker?.stop();
        await stopRelay();
        client.close();
        await etcd.stop();
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
