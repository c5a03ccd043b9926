/**
 * The Worker's settings: its bindings, read and validated once, in one place (as the relay's
 * relay/config.ts does for flags and environment).
 *
 * `Env` is what `wrangler types` generates from wrangler.toml into worker-configuration.d.ts
 * (`npm run types:worker` after changing wrangler.toml; `npm test` checks it is current). The
 * secrets and the optional tunables are not in wrangler.toml, so they are added here.
 *
 * | var                          | meaning                                            | default   |
 * |------------------------------|----------------------------------------------------|-----------|
 * | RELAY_URL                    | where replicas stream from and reads are forwarded | (required)|
 * | PREFIXES                     | exposed prefixes, comma-separated                  | (required)|
 * | DEV_COLO                     | replica location when a request has no `cf.colo`   | local     |
 * | REPLICATION_SECRET (secret)  | bearer secret on the replication stream            | (required)|
 * | CONTINUE_SECRET (secret)     | signs continue tokens; the relay's --continue-secret| built-in |
 * | EDGE_WAIT_MS                 | how long a read waits for the replica              | 1000      |
 * | EDGE_IDLE_MS                 | close the relay stream after this long unread      | 60000     |
 * | EDGE_HEARTBEAT_MS            | ping interval on the replication stream            | 5000      |
 * | EDGE_WATCH_STALL_MS          | cut a watch client that stops reading (0 = never)  | 10000     |
 * | EDGEWATCH_INSECURE_NO_AUTH   | `1`: local development, no credentials checked     | off       |
 * | EDGE_RATE_LIMIT_RPS, _BURST  | per-client limit per replica (RPS 0 = off)         | 100, 200  |
 * | EDGE_SELF_CHECK_MS           | mean time between a replica's self-checks (0 = off)| 60000     |
 * | EDGEWATCH_TEST_HOOKS         | `1`: test-only routes (planted corruption)         | off       |
 * | K8S_RESOURCES                | explicit Kubernetes resources, JSON (core/k8s)     | from data |
 *
 * A bad value is an error naming the variable, thrown by `parseEnv`: the Worker answers every
 * request (and /healthz) with a 503 saying so, instead of running with, say, a NaN timer that
 * fires at once.
 */

import { type ExplicitResource, parseExplicitResources } from '../core/k8s/resources.ts';
import { STALL_MS } from '../core/watch-stream.ts';

/** The settings that wrangler.toml does not declare: secrets and optional tunables. */
type OptionalVar =
  | 'REPLICATION_SECRET'
  | 'CONTINUE_SECRET'
  | 'EDGE_WAIT_MS'
  | 'EDGE_IDLE_MS'
  | 'EDGE_HEARTBEAT_MS'
  | 'EDGE_WATCH_STALL_MS'
  | 'EDGEWATCH_INSECURE_NO_AUTH'
  | 'EDGE_RATE_LIMIT_RPS'
  | 'EDGE_RATE_LIMIT_BURST'
  | 'EDGE_SELF_CHECK_MS'
  | 'EDGEWATCH_TEST_HOOKS'
  | 'K8S_RESOURCES';

/** Every binding the Worker and its Durable Objects get. */
export type Bindings = Env & { readonly [K in OptionalVar]?: string } & {
  /** Optional Workers Analytics Engine dataset: each replica writes its metrics there (worker/metrics.ts). */
  readonly EDGE_METRICS?: AnalyticsEngineDataset;
};

/** The validated settings. */
export interface EdgeSettings {
  /** No trailing slash. */
  readonly relayUrl: string;
  readonly prefixes: readonly string[];
  readonly devColo: string;
  readonly replicationSecret: string;
  readonly continueSecret: string | undefined;
  readonly waitMs: number;
  readonly idleMs: number;
  readonly heartbeatMs: number;
  /** 0: never cut a watch client for not reading (tests of the other ways a watch ends). */
  readonly watchStallMs: number;
  readonly insecureNoAuth: boolean;
  /** Per client and replica; `ratePerSecond` 0 turns limiting off. */
  readonly rateLimit: { readonly ratePerSecond: number; readonly burst: number };
  /** Mean time between a replica's self-checks (worker/replica-history.ts); 0 = off. */
  readonly selfCheckMs: number;
  /** Test-only routes (`/_replica/corrupt/…`); never set in a deployment. */
  readonly testHooks: boolean;
  /** Kubernetes resources added to or overriding what the data says (core/k8s/resources.ts). */
  readonly k8sResources: readonly ExplicitResource[];
}

/** Parsed once per bindings object (workerd hands the same one to every request of an isolate). */
const parsed = new WeakMap<object, EdgeSettings>();

/** The validated settings, or an Error naming the first bad variable. */
export function parseEnv(env: Bindings): EdgeSettings {
  const cached = parsed.get(env);
  if (cached) return cached;
  const settings: EdgeSettings = {
    relayUrl: httpUrl('RELAY_URL', env.RELAY_URL),
    prefixes: prefixList('PREFIXES', env.PREFIXES),
    devColo: env.DEV_COLO || 'local',
    replicationSecret: required('REPLICATION_SECRET', env.REPLICATION_SECRET),
    continueSecret: env.CONTINUE_SECRET || undefined,
    waitMs: milliseconds('EDGE_WAIT_MS', env.EDGE_WAIT_MS, 1_000),
    idleMs: milliseconds('EDGE_IDLE_MS', env.EDGE_IDLE_MS, 60_000),
    heartbeatMs: milliseconds('EDGE_HEARTBEAT_MS', env.EDGE_HEARTBEAT_MS, 5_000, 1),
    watchStallMs: milliseconds('EDGE_WATCH_STALL_MS', env.EDGE_WATCH_STALL_MS, STALL_MS),
    insecureNoAuth: flag('EDGEWATCH_INSECURE_NO_AUTH', env.EDGEWATCH_INSECURE_NO_AUTH),
    rateLimit: {
      ratePerSecond: count('EDGE_RATE_LIMIT_RPS', env.EDGE_RATE_LIMIT_RPS, 100),
      burst: count('EDGE_RATE_LIMIT_BURST', env.EDGE_RATE_LIMIT_BURST, 200, 1),
    },
    selfCheckMs: milliseconds('EDGE_SELF_CHECK_MS', env.EDGE_SELF_CHECK_MS, 60_000),
    testHooks: flag('EDGEWATCH_TEST_HOOKS', env.EDGEWATCH_TEST_HOOKS),
    k8sResources: k8sResources(env.K8S_RESOURCES),
  };
  parsed.set(env, settings);
  return settings;
}

function k8sResources(value: string | undefined): ExplicitResource[] {
  if (value === undefined || value.trim() === '') return [];
  try {
    return parseExplicitResources(value);
  } catch (error) {
    throw new Error(`K8S_RESOURCES: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function required(name: string, value: string | undefined): string {
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function httpUrl(name: string, value: string | undefined): string {
  const text = required(name, value);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`${name} is not a URL: ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`${name} must be an http:// or https:// URL: ${JSON.stringify(text)}`);
  }
  return text.replace(/\/+$/, '');
}

function prefixList(name: string, value: string | undefined): string[] {
  const prefixes = required(name, value)
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (prefixes.length === 0) throw new Error(`${name} lists no prefix`);
  for (const p of prefixes) {
    if (!p.startsWith('/')) throw new Error(`${name}: a prefix must start with '/': ${JSON.stringify(p)}`);
  }
  return prefixes;
}

/** A whole number of at least `min`; unset or empty gives the default. */
function count(name: string, value: string | undefined, fallback: number, min = 0): number {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) {
    throw new Error(`${name} must be a whole number of at least ${min}: ${JSON.stringify(value)}`);
  }
  return n;
}

/** A timer setting: like `count`, and within what `setTimeout` takes (2^31 - 1 ms). */
function milliseconds(name: string, value: string | undefined, fallback: number, min = 0): number {
  const ms = count(name, value, fallback, min);
  if (ms > 2_147_483_647) throw new Error(`${name} is longer than setTimeout allows: ${value}`);
  return ms;
}

function flag(name: string, value: string | undefined): boolean {
  switch ((value ?? '').trim().toLowerCase()) {
    case '':
    case '0':
    case 'false':
      return false;
    case '1':
    case 'true':
      return true;
    default:
      throw new Error(`${name} must be 1 or 0: ${JSON.stringify(value)}`);
  }
}
