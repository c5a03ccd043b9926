/**
 * Starts and stops a real single-member etcd: the one `npm start` embeds and the throw-away ones
 * the tests use. The binary comes from scripts/fetch-etcd.sh (Debian trixie's 3.5.16, no root).
 *
 * Fast election flags make a fresh member healthy in ~150 ms; readiness is polled on `/health`,
 * never slept for.
 *
 * With `tls` the client URL is `https://` (a secured etcd for the TLS/auth tests); `/health` is
 * then polled on a separate plain-HTTP metrics listener on 127.0.0.1, as Kubernetes probes a
 * secured etcd, since with `--client-cert-auth` the client URL would want a client certificate.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let cachedBinary: string | undefined;

/** The etcd binary, fetched on first use (idempotent). */
export function etcdBinary(): string {
  if (cachedBinary) return cachedBinary;
  const out = execFileSync('bash', [path.join(root, 'scripts/fetch-etcd.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const bin = out.trim().split('\n').pop();
  if (!bin) throw new Error('scripts/fetch-etcd.sh printed no etcd path');
  cachedBinary = bin;
  return bin;
}

export interface EtcdOptions {
  /** Data directory; a fresh temporary one (removed on stop) when unset. */
  dataDir?: string;
  clientPort?: number;
  peerPort?: number;
  /** Where etcd's own log goes; discarded when unset. */
  logFile?: string;
  /** Extra flags, e.g. `['--auto-compaction-retention', '0']`. */
  extraArgs?: string[];
  /** Serve the client URL over TLS; plain HTTP when unset. */
  tls?: EtcdTlsOptions;
}

/** PEM files for a member that serves clients over TLS. Peers stay on plain HTTP (one member). */
export interface EtcdTlsOptions {
  /** The server certificate; it must name 127.0.0.1. */
  certFile: string;
  keyFile: string;
  /** A CA that client certificates must chain to: turns on `--client-cert-auth`. */
  clientCaFile?: string;
}

/** A running etcd member. `stop` is idempotent and safe to call from `finally`/`afterAll`. */
export interface EtcdProcess {
  readonly endpoint: string;
  readonly clientPort: number;
  readonly dataDir: string;
  /** The member's name and peer URL (what `etcdutl snapshot restore` needs to rebuild it). */
  readonly name: string;
  readonly peerUrl: string;
  readonly pid: number | undefined;
  /** SIGKILL the member (a crash, for fault tests) and wait for it to exit. */
  kill(): Promise<void>;
  /** Start it again on the same ports and data directory; resolves once healthy. */
  restart(): Promise<void>;
  /** SIGTERM, wait, and remove the data directory if it was temporary. */
  stop(): Promise<void>;
}

export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdProcess> {
  const bin = etcdBinary();
  const temporary = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'edgewatch-etcd-'));
  mkdirSync(dataDir, { recursive: true });
  const clientPort = options.clientPort ?? (await freePort());
  const peerPort = options.peerPort ?? (await freePort());
  const tls = options.tls;
  const endpoint = `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const healthEndpoint = tls ? `http://127.0.0.1:${await freePort()}` : endpoint;
  const tlsArgs = tls
    ? [
        '--cert-file',
        tls.certFile,
        '--key-file',
        tls.keyFile,
        '--listen-metrics-urls',
        healthEndpoint,
        ...(tls.clientCaFile ? ['--client-cert-auth', '--trusted-ca-file', tls.clientCaFile] : []),
      ]
    : [];
  const args = [
    '--name',
    'edgewatch',
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    endpoint,
    '--advertise-client-urls',
    endpoint,
    '--listen-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls',
    `http://127.0.0.1:${peerPort}`,
    '--initial-cluster',
    `edgewatch=http://127.0.0.1:${peerPort}`,
    '--heartbeat-interval',
    '10',
    '--election-timeout',
    '100',
    '--log-level',
    'warn',
    ...tlsArgs,
    ...(options.extraArgs ?? []),
  ];

  let child: ChildProcess | undefined;
  let stopped = false;

  const launch = async () => {
    const { openSync } = await import('node:fs');
    const out = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
    const proc = spawn(bin, args, { stdio: ['ignore', out, out], env: etcdEnv() });
    child = proc;
    const exited = new Promise<never>((_, reject) => {
      proc.once('exit', (code, signal) => reject(new Error(`etcd exited during start (${code ?? signal})`)));
      proc.once('error', reject);
    });
    await Promise.race([waitHealthy(healthEndpoint), exited]);
    exited.catch(() => {});
  };

  const waitExit = (proc: ChildProcess, signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });

  await launch();

  return {
    endpoint,
    clientPort,
    dataDir,
    name: 'edgewatch',
    peerUrl: `http://127.0.0.1:${peerPort}`,
    get pid() {
      return child?.pid;
    },
    async kill() {
      if (child) await waitExit(child, 'SIGKILL');
    },
    async restart() {
      if (child) await waitExit(child, 'SIGKILL');
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child) await waitExit(child, 'SIGTERM');
      if (temporary) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * The environment for etcd without the relay's own `ETCD_*` settings: etcd reads every `ETCD_X`
 * variable as its `--x` flag, so the relay's `ETCD_CERT_FILE` (its client certificate) would
 * otherwise become etcd's server certificate when both run from one shell (`npm start`).
 */
function etcdEnv(): NodeJS.ProcessEnv {
  const relayOnly = new Set([
    'ETCD_ENDPOINTS',
    'ETCD_CA_FILE',
    'ETCD_CERT_FILE',
    'ETCD_KEY_FILE',
    'ETCD_USERNAME',
    'ETCD_PASSWORD',
    'ETCD_PASSWORD_FILE',
  ]);
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !relayOnly.has(name)));
}

/** Polls etcd's `/health` (a plain-HTTP URL) until it reports healthy; throws after `timeoutMs`. */
export async function waitHealthy(endpoint: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${endpoint}/health`);
      const body = (await res.json()) as { health?: string };
      if (body.health === 'true') return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`etcd at ${endpoint} not healthy after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One member of an `EtcdCluster`; `kill`/`restart` act on this member alone. */
export interface EtcdMember {
  readonly name: string;
  /** Its data directory and peer URL (what `etcdutl snapshot restore` needs to rebuild it). */
  readonly dataDir: string;
  readonly peerUrl: string;
  /** This member's client URL. */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly pid: number | undefined;
  /** False between `kill()` and the end of `restart()`. */
  readonly running: boolean;
  /** SIGKILL this member and wait for it to exit. */
  kill(): Promise<void>;
  /** Start it again on its ports and data directory; resolves once it reports healthy (it has a leader). */
  restart(): Promise<void>;
}

/**
 * A throw-away etcd cluster on loopback, for fault tests that need quorum, leader election and a
 * client that fails over between members (a single member cannot lose its leader and keep
 * serving). Members are named `m0`…, bootstrapped statically (`--initial-cluster`), each on free
 * ports with its own temporary data directory. Invariant: `stop` removes every directory and is
 * idempotent.
 */
export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client URL, in member order (what a client is given). */
  readonly endpoints: readonly string[];
  /** `--initial-cluster` and `--initial-cluster-token` as the members were started with. */
  readonly initialCluster: string;
  readonly token: string;
  /**
   * The member that is leader now: a running member whose own status names itself leader. Asks
   * each running member's `/v3/maintenance/status` (etcd's gRPC gateway), retrying while an
   * election is in progress; throws after `timeoutMs`.
   */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  stop(): Promise<void>;
}

/**
 * Starts an `n`-member cluster and resolves once every member is healthy. Elections are fast
 * (heartbeat 25 ms, election timeout 250 ms) but not so fast that a loaded 2-core machine keeps
 * electing.
 */
export async function startEtcdCluster(n = 3, options: { logDir?: string } = {}): Promise<EtcdCluster> {
  const bin = etcdBinary();
  const ports = [];
  for (let i = 0; i < n; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
  const token = `edgewatch-${process.pid}-${ports[0]?.peer ?? 0}`;
  const members = ports.map((p, i) =>
    clusterMember(bin, `m${i}`, p.client, p.peer, initialCluster, token, options),
  );
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(members.map((m) => m.stop()));
  };
  try {
    await Promise.all(members.map((m) => m.restart()));
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    members,
    endpoints: members.map((m) => m.endpoint),
    initialCluster,
    token,
    async leader(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        for (const m of members) {
          if (!m.running) continue;
          const status = await memberStatus(m.endpoint);
          if (status && status.leader === status.memberId) return m;
        }
        if (Date.now() > deadline) throw new Error(`no etcd leader after ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop,
  };
}

function clusterMember(
  bin: string,
  name: string,
  clientPort: number,
  peerPort: number,
  initialCluster: string,
  token: string,
  options: { logDir?: string },
): EtcdMember & { stop(): Promise<void> } {
  const dataDir = mkdtempSync(path.join(tmpdir(), `edgewatch-etcd-${name}-`));
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    ...['--name', name, '--data-dir', dataDir],
    ...['--listen-client-urls', endpoint, '--advertise-client-urls', endpoint],
    ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer],
    ...['--initial-cluster', initialCluster, '--initial-cluster-state', 'new'],
    ...['--initial-cluster-token', token],
    ...['--heartbeat-interval', '25', '--election-timeout', '250', '--log-level', 'warn'],
  ];
  let child: ChildProcess | undefined;
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const waitExit = (proc: ChildProcess, signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  return {
    name,
    dataDir,
    peerUrl: peer,
    endpoint,
    clientPort,
    get pid() {
      return child?.pid;
    },
    get running() {
      return running();
    },
    async kill() {
      if (child) await waitExit(child, 'SIGKILL');
    },
    async restart() {
      if (child) await waitExit(child, 'SIGKILL');
      const out = options.logDir ? openSync(path.join(options.logDir, `etcd-${name}.log`), 'a') : 'ignore';
      const proc = spawn(bin, args, { stdio: ['ignore', out, out], env: etcdEnv() });
      child = proc;
      const exited = new Promise<never>((_, reject) => {
        proc.once('exit', (code, signal) =>
          reject(new Error(`etcd ${name} exited during start (${code ?? signal})`)),
        );
        proc.once('error', reject);
      });
      exited.catch(() => {});
      await Promise.race([waitHealthy(endpoint, 30_000), exited]);
    },
    async stop() {
      if (child) await waitExit(child, 'SIGTERM');
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A member's own id and the leader it follows, or undefined when it does not answer. */
async function memberStatus(endpoint: string): Promise<{ memberId: string; leader: string } | undefined> {
  try {
    const res = await fetch(`${endpoint}/v3/maintenance/status`, {
      method: 'POST',
      body: '{}',
      signal: AbortSignal.timeout(1_000),
    });
    const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
    const memberId = body.header?.member_id;
    if (!memberId || !body.leader || body.leader === '0') return undefined;
    return { memberId, leader: body.leader };
  } catch {
    return undefined;
  }
}
