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

let fromWrangler: Promise<WranglerOptions> | undefined;
type WranglerOptions = Awaited<ReturnType<typeof readWranglerToml>>;

/**
 * What wrangler.toml says the Worker runs with — compatibility date and flags, the Durable Object
 * bindings (SQLite-backed), the [vars] — as wrangler itself translates it for miniflare, so the
 * tests run what `wrangler dev` and `wrangler deploy` run and nothing is written twice. Read once
 * per test process (importing wrangler takes a few seconds).
 */
function wranglerOptions(): Promise<WranglerOptions> {
  fromWrangler ??= readWranglerToml();
  return fromWrangler;
}

async function readWranglerToml() {
  const { unstable_getMiniflareWorkerOptions } = await import('wrangler');
  const { compatibilityDate, compatibilityFlags, durableObjects, bindings } =
    unstable_getMiniflareWorkerOptions(path.join(root, 'wrangler.toml')).workerOptions;
  return { compatibilityDate, compatibilityFlags, durableObjects, bindings };
}

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
  /** Opens workerd's V8 inspector here (benchmark CPU profiles; path `/core:user:`). */
  inspectorPort?: number;
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
  const [script, wrangler] = await Promise.all([bundleWorker(), wranglerOptions()]);
  const temporary = options.persistDir === undefined;
  const persistDir = options.persistDir ?? mkdtempSync(path.join(tmpdir(), 'edgewatch-do-'));
  const port = await freePort();
  const make = () =>
    new Miniflare({
      modules: [{ type: 'ESModule', path: path.join(root, 'worker/index.js'), contents: script }],
      ...wrangler,
      host: '127.0.0.1',
      port,
      cf: false,
      ...(options.inspectorPort !== undefined ? { inspectorPort: options.inspectorPort } : {}),
      durableObjectsPersist: persistDir,
      bindings: {
        ...wrangler.bindings,
        RELAY_URL: options.relayUrl,
        PREFIXES: (options.prefixes ?? ['/registry/']).join(','),
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
