/**
 * The relay's configuration: flags first, then environment variables, then defaults.
 *
 * | flag               | env                   | default                  |
 * |--------------------|-----------------------|--------------------------|
 * | --host             | RELAY_HOST            | 127.0.0.1                |
 * | --port             | RELAY_PORT            | 8080                     |
 * | --etcd             | ETCD_ENDPOINTS        | http://127.0.0.1:2379    |
 * | --prefix (repeat)  | EDGEWATCH_PREFIXES    | /registry/               |
 * | --secret (repeat)  | REPLICATION_SECRET    | (none: replication off)  |
 * | --tokens-file      | EDGEWATCH_TOKENS_FILE | (none: every read 401)   |
 * | (env only)         | EDGEWATCH_TOKENS (JSON) | (none)                 |
 * | --insecure-no-auth | EDGEWATCH_INSECURE_NO_AUTH=1 | off               |
 * | --wait-timeout-ms  | RV_WAIT_TIMEOUT_MS    | 3000                     |
 * | --continue-secret  | CONTINUE_SECRET       | (built-in: forgeable)    |
 * | --ready-etcd-timeout-ms | READY_ETCD_TIMEOUT_MS | 10000 (then /readyz 503) |
 * | --self-check-interval-ms | SELF_CHECK_INTERVAL_MS | 60000 (0: off)     |
 * | --etcd-ca          | ETCD_CA_FILE          | (system roots for https) |
 * | --etcd-cert        | ETCD_CERT_FILE        | (no client certificate)  |
 * | --etcd-key         | ETCD_KEY_FILE         | (no client certificate)  |
 * | --etcd-user        | ETCD_USERNAME         | (no etcd auth)           |
 * | --etcd-password-file | ETCD_PASSWORD_FILE  | (none; needs --etcd-user)|
 * | (no flag)          | ETCD_PASSWORD         | the password itself      |
 * | --k8s-resources    | K8S_RESOURCES_FILE, or the JSON in K8S_RESOURCES | (from the data) |
 * | --k8s-resource (repeat) | (none)           | (from the data)          |
 *
 * The etcd TLS flags are PEM file paths and need `https://` endpoints (`https://` alone is TLS with
 * the system roots). There is deliberately no flag that takes the password itself: a command
 * line is visible to every user through `ps`; it comes from a file or the environment. Files
 * are read here, so a missing or unreadable one stops the relay at start-up.
 */
import { readFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type ExplicitResource, parseExplicitResources, parseResourceFlag } from '../core/k8s/resources.ts';
import type { EtcdAuth, EtcdTls } from './etcd/client.ts';

export interface RelayConfig {
  host: string;
  port: number;
  etcdEndpoints: string[];
  prefixes: string[];
  /**
   * Secrets the edge replicas may present on the replication stream (two while one is rotated;
   * REPLICATION_SECRET takes a comma-separated list); none refuses them all.
   */
  replicationSecrets: string[];
  /** Client tokens and their read scopes (core/auth.ts), reloaded when the file changes. */
  tokensFile: string | undefined;
  /** The same table given inline as JSON (EDGEWATCH_TOKENS), for platforms that inject env only. */
  tokensJson: string | undefined;
  /** Local development: no client credentials checked. Never the default. */
  insecureNoAuth: boolean;
  /**
   * Signs continue tokens (core/continue.ts). The Worker's CONTINUE_SECRET must be the same: the
   * edge forwards second pages here, so a token minted at one tier must verify at the other.
   */
  continueSecret: string | undefined;
  /** How long a read for rv=n waits for the cache before 504 / etcd fallback. */
  waitTimeoutMs: number;
  /** `/readyz` answers 503 once etcd has been unreachable this long (relay/readiness.ts). */
  readyEtcdTimeoutMs?: number | undefined;
  /** Mean time between each cache's self-checks against etcd (relay/history-guard.ts); 0 = off. */
  selfCheckIntervalMs?: number;
  /** Kubernetes resources added to or overriding what the data says (core/k8s/resources.ts). */
  k8sResources?: ExplicitResource[] | undefined;
  /** TLS to etcd (CA, client certificate); unset for plain `http://` endpoints. Holds a secret key. */
  etcdTls?: EtcdTls | undefined;
  /** etcd username/password; unset when etcd auth is off. Holds a secret password. */
  etcdAuth?: EtcdAuth | undefined;
}

/** Reads a file given in the configuration (a seam for tests). */
export type ReadConfigFile = (path: string) => Buffer;

export function parseConfig(
  argv: string[],
  env: Record<string, string | undefined>,
  readFile: ReadConfigFile = (p) => readFileSync(p),
): RelayConfig {
  const flags = parseFlags(argv);
  // Values are trimmed: a pasted one often ends in a newline.
  const one: Lookup = (flag, envName) => flags[flag]?.trim() ?? env[envName];

  const port = Number(one('port', 'RELAY_PORT') ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port: ${port}`);
  const waitTimeoutMs = Number(one('wait-timeout-ms', 'RV_WAIT_TIMEOUT_MS') ?? 3000);
  if (!Number.isFinite(waitTimeoutMs) || waitTimeoutMs < 0) throw new Error('bad --wait-timeout-ms');
  const readyEtcdTimeoutMs = Number(one('ready-etcd-timeout-ms', 'READY_ETCD_TIMEOUT_MS') ?? 10_000);
  if (!Number.isFinite(readyEtcdTimeoutMs) || readyEtcdTimeoutMs < 0)
    throw new Error('bad --ready-etcd-timeout-ms');
  const selfCheckIntervalMs = Number(one('self-check-interval-ms', 'SELF_CHECK_INTERVAL_MS') ?? 60_000);
  if (!Number.isFinite(selfCheckIntervalMs) || selfCheckIntervalMs < 0)
    throw new Error('bad --self-check-interval-ms');
  const prefixes = flags.prefix?.map((p) => p.trim()) ?? splitList(env.EDGEWATCH_PREFIXES) ?? ['/registry/'];
  for (const p of prefixes) if (!p.startsWith('/')) throw new Error(`prefix must start with '/': ${p}`);
  const etcdEndpoints = splitList(one('etcd', 'ETCD_ENDPOINTS')) ?? ['http://127.0.0.1:2379'];
  const etcdTls = parseEtcdTls(etcdEndpoints, one, readFile);
  const etcdAuth = parseEtcdAuth(one, env, readFile);
  return {
    host: one('host', 'RELAY_HOST') ?? '127.0.0.1',
    port,
    etcdEndpoints,
    prefixes,
    replicationSecrets: flags.secret?.map((s) => s.trim()) ?? splitList(env.REPLICATION_SECRET) ?? [],
    tokensFile: one('tokens-file', 'EDGEWATCH_TOKENS_FILE') || undefined,
    tokensJson: env.EDGEWATCH_TOKENS || undefined,
    continueSecret: one('continue-secret', 'CONTINUE_SECRET') || undefined,
    insecureNoAuth: flags['insecure-no-auth'] || ['1', 'true'].includes(env.EDGEWATCH_INSECURE_NO_AUTH ?? ''),
    waitTimeoutMs,
    readyEtcdTimeoutMs,
    selfCheckIntervalMs,
    ...(etcdTls ? { etcdTls } : {}),
    ...(etcdAuth ? { etcdAuth } : {}),
    k8sResources: k8sResources(flags['k8s-resource'] ?? [], one, env, readFile),
  };
}

/** The explicit Kubernetes resource table: a file (or its JSON in K8S_RESOURCES), then flags. */
function k8sResources(
  specs: string[],
  one: Lookup,
  env: Record<string, string | undefined>,
  readFile: ReadConfigFile,
): ExplicitResource[] {
  const file = one('k8s-resources', 'K8S_RESOURCES_FILE');
  const text = file ? readFileText(file, '--k8s-resources', readFile) : env.K8S_RESOURCES;
  const fromTable = text ? parseExplicitResources(text) : [];
  return [...fromTable, ...specs.map(parseResourceFlag)];
}

/** The flags; `--name value` and `--name=value` alike, repeatable where `multiple`. */
const FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  etcd: { type: 'string' },
  prefix: { type: 'string', multiple: true },
  secret: { type: 'string', multiple: true },
  'wait-timeout-ms': { type: 'string' },
  'ready-etcd-timeout-ms': { type: 'string' },
  'self-check-interval-ms': { type: 'string' },
  'tokens-file': { type: 'string' },
  'continue-secret': { type: 'string' },
  'insecure-no-auth': { type: 'boolean', default: false },
  'etcd-ca': { type: 'string' },
  'etcd-cert': { type: 'string' },
  'etcd-key': { type: 'string' },
  'etcd-user': { type: 'string' },
  'etcd-password-file': { type: 'string' },
  'k8s-resources': { type: 'string' },
  'k8s-resource': { type: 'string', multiple: true },
} as const satisfies ParseArgsConfig['options'];

type Flags = ReturnType<typeof parseArgs<{ args: string[]; options: typeof FLAGS; strict: true }>>['values'];
/** A single-valued flag's name. */
type OneFlag = { [K in keyof Flags]-?: Flags[K] extends string | undefined ? K : never }[keyof Flags];
type Lookup = (flag: OneFlag, envName: string) => string | undefined;

function parseFlags(argv: string[]): Flags {
  if (argv.some((arg) => arg === '--etcd-password' || arg.startsWith('--etcd-password='))) {
    throw new Error(
      '--etcd-password is not accepted (it would show in ps): use --etcd-password-file or ETCD_PASSWORD',
    );
  }
  // node:util's errors already name the flag ("Unknown option '--x'", "Option '--port <value>'
  // argument missing").
  return parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
}

function parseEtcdTls(endpoints: string[], one: Lookup, readFile: ReadConfigFile): EtcdTls | undefined {
  const secure = endpoints.filter((e) => e.startsWith('https://')).length;
  if (secure > 0 && secure < endpoints.length) throw new Error('etcd endpoints mix http:// and https://');
  const caFile = one('etcd-ca', 'ETCD_CA_FILE') || undefined;
  const certFile = one('etcd-cert', 'ETCD_CERT_FILE') || undefined;
  const keyFile = one('etcd-key', 'ETCD_KEY_FILE') || undefined;
  if (!caFile && !certFile && !keyFile) return undefined;
  if (secure === 0) throw new Error('--etcd-ca, --etcd-cert and --etcd-key need https:// etcd endpoints');
  if (!certFile !== !keyFile) throw new Error('--etcd-cert and --etcd-key go together');
  return {
    ca: caFile ? readPem(caFile, '--etcd-ca', readFile) : undefined,
    cert: certFile ? readPem(certFile, '--etcd-cert', readFile) : undefined,
    key: keyFile ? readPem(keyFile, '--etcd-key', readFile) : undefined,
  };
}

function parseEtcdAuth(
  one: Lookup,
  env: Record<string, string | undefined>,
  readFile: ReadConfigFile,
): EtcdAuth | undefined {
  const username = one('etcd-user', 'ETCD_USERNAME') || undefined;
  const passwordFile = one('etcd-password-file', 'ETCD_PASSWORD_FILE') || undefined;
  let password = env.ETCD_PASSWORD || undefined;
  if (passwordFile) {
    // One trailing newline is the editor's, not the password's.
    password = readFileText(passwordFile, '--etcd-password-file', readFile).replace(/\r?\n$/, '');
  }
  if (!username && password === undefined) return undefined;
  if (!username) throw new Error('an etcd password needs --etcd-user (or ETCD_USERNAME)');
  if (!password) throw new Error('--etcd-user needs a password: --etcd-password-file or ETCD_PASSWORD');
  return { username, password };
}

function readPem(file: string, flag: string, readFile: ReadConfigFile): Buffer {
  const pem = readFileText(file, flag, readFile);
  if (!pem.includes('-----BEGIN ')) throw new Error(`${flag}: ${file} is not a PEM file`);
  return Buffer.from(pem, 'utf8');
}

/** The file's text; a failure names the file and the reason, never the contents. */
function readFileText(file: string, flag: string, readFile: ReadConfigFile): string {
  try {
    return readFile(file).toString('utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new Error(`${flag}: cannot read ${file} (${code})`);
  }
}

function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return items.length > 0 ? items : undefined;
}
