/**
 * The relay as a child process (`node --import tsx relay/main.ts`), exactly as it is deployed, so
 * its CPU time and memory can be read from /proc without the benchmark client's own work in them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { repoRoot } from './machine.ts';
import { progress, waitFor } from './stats.ts';

export interface RelayProcess {
  readonly url: string;
  readonly pid: number;
  /** How many log lines the relay wrote, by `msg` (e.g. "replica silent, cutting it"). */
  readonly logs: ReadonlyMap<string, number>;
  /** Resolves when /readyz says every prefix's cache has loaded. */
  ready(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface RelayProcessOptions {
  etcd: string;
  prefixes: string[];
  secret?: string;
  /** Extra node flags, e.g. `--max-old-space-size=4096`. */
  nodeArgs?: string[];
}

export async function spawnRelay(options: RelayProcessOptions): Promise<RelayProcess> {
  const args = [
    ...(options.nodeArgs ?? []),
    '--import',
    'tsx',
    'relay/main.ts',
    '--port',
    '0',
    '--etcd',
    options.etcd,
    ...options.prefixes.flatMap((p) => ['--prefix', p]),
    ...(options.secret ? ['--secret', options.secret] : []),
    '--insecure-no-auth',
  ];
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('relay did not start');
  let stderrTail = '';
  const logs = new Map<string, number>();
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`relay did not listen within 30 s: ${stderrTail}`)),
      30_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`relay exited (${code}) during start: ${stderrTail}`));
    });
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-4000);
      for (const msg of chunk.matchAll(/"msg":"([^"]*)"/g)) {
        const name = msg[1] ?? '';
        logs.set(name, (logs.get(name) ?? 0) + 1);
      }
      for (const line of chunk.split('\n')) {
        if (!line.includes('"listening"')) continue;
        try {
          const parsed = JSON.parse(line) as { url?: string };
          if (parsed.url) {
            clearTimeout(timer);
            resolve(parsed.url);
          }
        } catch {
          // a partial line; the next chunk completes it
        }
      }
      if (/"level":"(warn|error)"/.test(chunk)) progress(`  relay: ${chunk.trim().slice(0, 300)}`);
    });
  });
  return {
    url,
    pid,
    logs,
    async ready(timeoutMs = 120_000) {
      await waitFor(
        'relay /readyz',
        async () => {
          const res = await fetch(`${url}/readyz`);
          await res.arrayBuffer();
          return res.ok;
        },
        timeoutMs,
        20,
      );
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}
