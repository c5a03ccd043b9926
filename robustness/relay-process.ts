/**
 * The relay as the operator runs it — `node --import tsx relay/main.ts …`, a child process — so
 * that a robustness run can SIGKILL it (a crash: no graceful close of watches, the replication
 * stream or etcd clients) as well as SIGTERM it (a rolling restart), and start it again on the
 * same port. Readiness is `/readyz` answering 200, polled, never slept for.
 *
 * Invariant: at most one child runs at a time; `close` leaves none behind (and so does this
 * process exiting, through a synchronous `exit` hook).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface RelayProcessOptions {
  readonly port: number;
  readonly etcdEndpoints: readonly string[];
  readonly prefixes: readonly string[];
  readonly secret: string;
  /** The relay's JSON log goes here (appended across restarts); discarded when unset. */
  readonly logFile?: string;
  /** More flags, e.g. `['--self-check-interval-ms', '2000']`. */
  readonly extraArgs?: readonly string[];
}

export interface RelayProcess {
  readonly url: string;
  readonly port: number;
  readonly pid: number | undefined;
  /** Spawns the relay; resolves once `/readyz` says 200, or after `readyTimeoutMs` when it is serving but not ready. */
  start(readyTimeoutMs?: number): Promise<void>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (the relay closes its streams) and wait for the exit; SIGKILL after 10 s. */
  stop(): Promise<void>;
  /** Stops the relay for good. Idempotent. */
  close(): Promise<void>;
}

/** Relay settings in the environment would change what the flags say; the child gets none. */
const RELAY_ENV =
  /^(ETCD_|EDGEWATCH_|RELAY_HOST$|RELAY_PORT$|REPLICATION_SECRET$|RV_WAIT_TIMEOUT_MS$|NODE_OPTIONS$)/;

export function relayProcess(options: RelayProcessOptions): RelayProcess {
  const url = `http://127.0.0.1:${options.port}`;
  const args = [
    '--import',
    'tsx',
    path.join(root, 'relay/main.ts'),
    ...['--port', String(options.port), '--etcd', options.etcdEndpoints.join(',')],
    ...options.prefixes.flatMap((p) => ['--prefix', p]),
    ...['--secret', options.secret, '--insecure-no-auth'],
    ...(options.extraArgs ?? []),
  ];
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !RELAY_ENV.test(name)));
  let child: ChildProcess | undefined;
  let closed = false;
  const killNow = () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killNow);

  const waitExit = (proc: ChildProcess, signal: NodeJS.Signals, forceAfterMs?: number) =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      const force =
        forceAfterMs !== undefined ? setTimeout(() => proc.kill('SIGKILL'), forceAfterMs) : undefined;
      proc.once('exit', () => {
        if (force) clearTimeout(force);
        resolve();
      });
      proc.kill(signal);
    });

  return {
    url,
    port: options.port,
    get pid() {
      return child?.pid;
    },
    async start(readyTimeoutMs = 30_000) {
      if (closed) throw new Error('relay process closed');
      if (child) await waitExit(child, 'SIGKILL');
      const out = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
      const proc = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', out, out] });
      child = proc;
      let exited: string | undefined;
      proc.once('exit', (code, signal) => {
        exited = `relay exited (${code ?? signal})`;
      });
      const deadline = Date.now() + readyTimeoutMs;
      let listening = false;
      for (let i = 0; i < 100_000; i++) {
        if (exited) throw new Error(`${exited} while starting`);
        try {
          const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) });
          await res.text();
          listening = true;
          if (res.status === 200) return;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) {
          if (listening) return; // serving (etcd is down, say): reads get 503s, the caches load later
          throw new Error(`relay on ${url} not listening after ${readyTimeoutMs} ms`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill() {
      if (child) await waitExit(child, 'SIGKILL');
    },
    async stop() {
      if (child) await waitExit(child, 'SIGTERM', 10_000);
    },
    async close() {
      if (closed) return;
      closed = true;
      if (child) await waitExit(child, 'SIGTERM', 5_000);
      process.removeListener('exit', killNow);
    },
  };
}
