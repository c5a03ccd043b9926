/**
 * `npm start`: the whole stack on this machine — etcd (embedded unless ETCD_ENDPOINTS is set),
 * the relay, and the edge Worker under `wrangler dev` — plus a few demo keys under /registry/.
 *
 * Ctrl-C (or SIGTERM) stops all three. The relay and wrangler each run in their own process
 * group and the whole group is signalled, because wrangler spawns workerd and would otherwise
 * leave it running.
 *
 * Flags (env in brackets): --etcd-port 2379, --relay-port 8080 [RELAY_PORT], --edge-port 8787
 * [EDGE_PORT], --prefix /registry/ [EDGEWATCH_PREFIXES], --no-seed; ETCD_ENDPOINTS=url,… uses a
 * running etcd instead of starting one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { type EtcdProcess, startEtcd } from './lib/etcd-process.ts';
import { demoObjects, putObjects } from './lib/k8s-demo.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values: flags } = parseArgs({
  options: {
    'etcd-port': { type: 'string', default: '2379' },
    'relay-port': { type: 'string', default: process.env.RELAY_PORT ?? '8080' },
    'edge-port': { type: 'string', default: process.env.EDGE_PORT ?? '8787' },
    prefix: { type: 'string', multiple: true },
    'no-seed': { type: 'boolean', default: false },
  },
});
const prefixes = flags.prefix ?? (process.env.EDGEWATCH_PREFIXES ?? '/registry/').split(',');
const relayPort = Number(flags['relay-port']);
const edgePort = Number(flags['edge-port']);
const relayUrl = `http://127.0.0.1:${relayPort}`;
const edgeUrl = `http://127.0.0.1:${edgePort}`;
// A fresh secret per run: only this relay and this worker know it.
const replicationSecret = process.env.REPLICATION_SECRET ?? randomBytes(24).toString('base64url');

const say = (msg: string) => process.stdout.write(`${msg}\n`);
const children: ChildProcess[] = [];
let etcd: EtcdProcess | undefined;
let stopping = false;

async function main() {
  const dataDir = path.join(root, '.data');
  mkdirSync(dataDir, { recursive: true });

  let etcdEndpoints = process.env.ETCD_ENDPOINTS;
  if (etcdEndpoints) {
    say(`etcd:  using ${etcdEndpoints} (ETCD_ENDPOINTS); no embedded etcd started`);
  } else {
    const port = Number(flags['etcd-port']);
    etcd = await startEtcd({
      dataDir: path.join(dataDir, 'etcd'),
      clientPort: port,
      peerPort: port + 1,
      logFile: path.join(dataDir, 'etcd.log'),
    });
    etcdEndpoints = etcd.endpoint;
    say(`etcd:  ${etcdEndpoints} (data in .data/etcd, log in .data/etcd.log)`);
  }

  if (!flags['no-seed']) await seed(etcdEndpoints, prefixes[0] ?? '/registry/');

  const devVars = path.join(dataDir, 'dev.vars');
  writeFileSync(devVars, `REPLICATION_SECRET=${replicationSecret}\n`, { mode: 0o600 });
  const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' };
  children.push(
    launch(
      'relay',
      process.execPath,
      [
        '--import',
        'tsx',
        'relay/main.ts',
        '--port',
        String(relayPort),
        '--etcd',
        etcdEndpoints,
        ...prefixes.flatMap((p) => ['--prefix', p]),
        '--insecure-no-auth',
      ],
      { ...env, REPLICATION_SECRET: replicationSecret },
    ),
  );
  await waitHealthy('relay', `${relayUrl}/healthz`);

  children.push(
    launch(
      'edge',
      path.join(root, 'node_modules/.bin/wrangler'),
      [
        'dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(edgePort),
        '--var',
        `RELAY_URL:${relayUrl}`,
        '--var',
        `PREFIXES:${prefixes.join(',')}`,
        '--var',
        'EDGEWATCH_INSECURE_NO_AUTH:1',
        // Through an env file, not --var: wrangler prints vars but hides values from env files.
        '--env-file',
        devVars,
        '--persist-to',
        path.join(dataDir, 'wrangler'),
        '--inspector-port',
        '0',
        '--show-interactive-dev-session=false',
      ],
      env,
    ),
  );
  await waitHealthy('edge', `${edgeUrl}/healthz`, 60_000);

  const example = `${prefixes[0] ?? '/registry/'}configmaps/default/app`.replace(/^\//, '');
  say('');
  say('edgewatch is up. Ctrl-C stops everything.');
  say(`  etcd   ${etcdEndpoints}`);
  say(`  relay  ${relayUrl}   curl '${relayUrl}/v1/list/${prefixes[0]?.replace(/^\//, '') ?? 'registry/'}'`);
  say(`  edge   ${edgeUrl}   curl '${edgeUrl}/v1/kv/${example}?resourceVersion=0'`);
  say(
    `  watch  curl -N '${edgeUrl}/v1/list/${prefixes[0]?.replace(/^\//, '') ?? 'registry/'}?watch=true&resourceVersion=0'`,
  );
  if ('/registry/'.startsWith(prefixes[0] ?? '/registry/')) {
    const created =
      '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-curl","namespace":"default"}}';
    say(
      `  write  curl -X PUT --data-binary '${created}' '${edgeUrl}/v1/kv/registry/configmaps/default/from-curl'`,
    );
    say(
      `  kubectl --server ${edgeUrl} get configmaps -A        (also: get widgets -n default, get cm -A -w)`,
    );
  } else {
    say(`  write  curl -X PUT --data-binary '{"replicas":4}' '${edgeUrl}/v1/kv/${example}'`);
  }
  say('');
  say('!! LOCAL DEVELOPMENT MODE: no client credentials are checked on either tier.');
  say('!! Anyone who can reach these ports can read everything under the exposed prefixes,');
  say('!! and write it: PUT and DELETE /v1/kv/{key} are open at both tiers (the edge forwards them).');
  say('!! Deploy with --tokens-file on the relay (README: "Client tokens and scopes").');
}

/** Starts a child in its own process group, with its output prefixed by its name. */
function launch(name: string, command: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(command, args, { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = (chunk: Buffer) =>
    chunk
      .toString()
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => `[${name}] ${l}\n`)
      .join('');
  child.stdout?.on('data', (c: Buffer) => process.stdout.write(prefix(c)));
  child.stderr?.on('data', (c: Buffer) => process.stderr.write(prefix(c)));
  child.once('exit', (code, signal) => {
    if (!stopping) {
      say(`${name} exited (${code ?? signal}); stopping the stack`);
      void stop(1);
    }
  });
  return child;
}

async function waitHealthy(name: string, url: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (stopping) throw new Error('stopping');
    if (Date.now() > deadline) throw new Error(`${name} not healthy at ${url} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Seeds JSON objects at the Kubernetes etcd layout (scripts/lib/k8s-demo.ts) under the first
 * prefix when it holds `/registry/`, so both the /v1 API and kubectl have something to show.
 */
async function seed(endpoints: string, prefix: string) {
  const client = new Etcd3({ hosts: endpoints.split(',') });
  try {
    const objects = '/registry/'.startsWith(prefix) ? demoObjects() : [];
    if (objects.length === 0) {
      await client.put(`${prefix}demo`).value(JSON.stringify({ replicas: 3 }));
      say(`seeded 1 demo key under ${prefix}`);
      return;
    }
    await putObjects(client, objects);
    say(
      `seeded ${objects.length} Kubernetes objects (JSON) under /registry/: namespaces, ConfigMaps, a Widget and its CRD`,
    );
  } finally {
    client.close();
  }
}

async function stop(code: number) {
  if (stopping) return;
  stopping = true;
  await Promise.all(children.map(stopGroup));
  await etcd?.stop();
  process.exit(code);
}

function stopGroup(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      killGroup(child.pid, 'SIGKILL');
      return resolve();
    }
    const timer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      // wrangler may exit before workerd does: take the rest of the group down too.
      killGroup(child.pid, 'SIGKILL');
      resolve();
    });
    killGroup(child.pid, 'SIGTERM');
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals) {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

process.once('SIGINT', () => void stop(0));
process.once('SIGTERM', () => void stop(0));
main().catch(async (error: unknown) => {
  process.stderr.write(`start: ${(error as Error).message}\n`);
  await stop(1);
});
