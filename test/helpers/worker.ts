/**
 * Runs the real edge Worker in real workerd through miniflare's programmatic API: the same code
 * `wrangler dev` and `wrangler deploy` run, bundled by esbuild, with SQLite-backed Durable Objects
 * persisted to a temporary folder (so a restart of the worker is a warm restart of its replicas).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { Miniflare } from 'miniflare';
import { freePort } from '../../scripts/lib/ports.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Bundles a Worker entry (repo-relative path) as workerd runs it: ESM, `cloudflare:*` external. */
export async function bundleScript(entry: string): Promise<string> {
  const result = await build({
    entryPoints: [path.join(root, entry)],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    write: false,
    external: ['cloudflare:*'],
    mainFields: ['module', 'main'],
    conditions: ['workerd', 'worker', 'browser'],
  });
  return result.outputFiles[0]?.text ?? '';
}

let bundled: Promise<string> | undefined;

/** The Worker bundled once per test process. */
export function bundleWorker(): Promise<string> {
  bundled ??= bundleScript('worker/index.ts');
  return bundled;
}

export interface WorkerOptions {
  relayUrl: string;
  prefixes?: string[];
  replicationSecret?: string;
  /** Extra vars (string bindings), e.g. tunables for the tests. */
  vars?: Record<string, string>;
  /** Durable Object storage folder; reuse it across restarts for warm-start tests. */
  persistDir?: string;
}

export interface RunningWorker {
  readonly url: string;
  readonly persistDir: string;
  readonly miniflare: Miniflare;
  /** Stop workerd: every Durable Object is gone from memory, its SQLite stays. */
  suspend(): Promise<void>;
  /** Start workerd again on the same port and storage (stopping it first if it runs). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const script = await bundleWorker();
  const temporary = options.persistDir === undefined;
  const persistDir = options.persistDir ?? mkdtempSync(path.join(tmpdir(), 'edgewatch-do-'));
  const port = await freePort();
  const make = () =>
    new Miniflare({
      modules: [{ type: 'ESModule', path: path.join(root, 'worker/index.js'), contents: script }],
      compatibilityDate: '2026-04-01',
      compatibilityFlags: ['enable_request_signal'],
      host: '127.0.0.1',
      port,
      cf: false,
      durableObjects: { REPLICA: { className: 'Replica', useSQLite: true } },
      durableObjectsPersist: persistDir,
      bindings: {
        RELAY_URL: options.relayUrl,
        PREFIXES: (options.prefixes ?? ['/registry/']).join(','),
        DEV_COLO: 'local',
        REPLICATION_SECRET: options.replicationSecret ?? '',
        // Tests run the local-development mode unless they set this var to '' themselves.
        EDGEWATCH_INSECURE_NO_AUTH: '1',
        ...options.vars,
      },
    });
  let mf = make();
  let running = true;
  const url = (await mf.ready).toString().replace(/\/$/, '');
  const suspend = async () => {
    if (running) await mf.dispose();
    running = false;
  };
  return {
    url,
    persistDir,
    get miniflare() {
      return mf;
    },
    suspend,
    async restart() {
      await suspend();
      mf = make();
      running = true;
      await mf.ready;
    },
    async stop() {
      await suspend();
      if (temporary) rmSync(persistDir, { recursive: true, force: true });
    },
  };
}
