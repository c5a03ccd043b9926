/**
 * The edge as `npm start` runs it: `wrangler dev`, which puts a proxy worker (its own workerd
 * process) in front of the Worker's workerd. Benchmarks run it beside miniflare to see what the
 * extra hop costs. It runs in its own process group so that stopping it takes both workerd
 * processes down.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../../scripts/lib/ports.ts';
import { repoRoot } from './machine.ts';
import { waitFor } from './stats.ts';

export interface WranglerDev {
  readonly url: string;
  /** The user worker's inspector WebSocket (wrangler's inspector proxy). */
  readonly inspectorUrl: string;
  /** Process group id: every workerd it started is in it. */
  readonly pgid: number;
  stop(): Promise<void>;
}

export async function startWranglerDev(options: {
  relayUrl: string;
  prefixes: string[];
  secret: string;
}): Promise<WranglerDev> {
  const dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-wrangler-'));
  const vars = path.join(dir, 'dev.vars');
  writeFileSync(vars, `REPLICATION_SECRET=${options.secret}\n`);
  const port = await freePort();
  const inspectorPort = await freePort();
  const child: ChildProcess = spawn(
    path.join(repoRoot, 'node_modules/.bin/wrangler'),
    [
      'dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--var',
      `RELAY_URL:${options.relayUrl}`,
      '--var',
      `PREFIXES:${options.prefixes.join(',')}`,
      '--var',
      'EDGEWATCH_INSECURE_NO_AUTH:1',
      '--env-file',
      vars,
      '--persist-to',
      path.join(dir, 'state'),
      '--inspector-port',
      String(inspectorPort),
      '--show-interactive-dev-session=false',
    ],
    { cwd: repoRoot, detached: true, stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const pgid = child.pid;
  if (pgid === undefined) throw new Error('wrangler did not start');
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 500));
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      'wrangler dev /healthz',
      async () => {
        try {
          return (await fetch(`${url}/healthz`)).ok;
        } catch {
          return false;
        }
      },
      90_000,
      200,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, inspectorUrl: `ws://127.0.0.1:${inspectorPort}/ws`, pgid, stop };
}

/** Pids in a process group (Linux /proc), e.g. wrangler and its two workerd processes. */
export { groupPids } from './proc.ts';
