/**
 * The relay's configuration: flags first, then environment variables, then defaults.
 *
 * | flag               | env                   | default                  |
 * |--------------------|-----------------------|--------------------------|
 * | --host             | RELAY_HOST            | 127.0.0.1                |
 * | --port             | RELAY_PORT            | 8080                     |
 * | --etcd             | ETCD_ENDPOINTS        | http://127.0.0.1:2379    |
 * | --prefix (repeat)  | EDGEWATCH_PREFIXES    | /registry/               |
 * | --secret           | REPLICATION_SECRET    | (none: replication off)  |
 * | --wait-timeout-ms  | RV_WAIT_TIMEOUT_MS    | 3000                     |
 */
export interface RelayConfig {
  host: string;
  port: number;
  etcdEndpoints: string[];
  prefixes: string[];
  /** Shared secret the edge replicas present on the replication stream; unset refuses them all. */
  replicationSecret: string | undefined;
  /** How long a read for rv=n waits for the cache before 504 / etcd fallback. */
  waitTimeoutMs: number;
}

export function parseConfig(argv: string[], env: Record<string, string | undefined>): RelayConfig {
  const flags = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (!arg.startsWith('--')) throw new Error(`unexpected argument: ${arg}`);
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    let value: string | undefined = eq > 0 ? arg.slice(eq + 1) : argv[i + 1];
    if (eq < 0) i++;
    if (value === undefined) throw new Error(`--${name} needs a value`);
    value = value.trim();
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  const known = new Set(['host', 'port', 'etcd', 'prefix', 'secret', 'wait-timeout-ms']);
  for (const name of flags.keys()) if (!known.has(name)) throw new Error(`unknown flag --${name}`);
  const one = (flag: string, envName: string) => flags.get(flag)?.at(-1) ?? env[envName];

  const port = Number(one('port', 'RELAY_PORT') ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port: ${port}`);
  const waitTimeoutMs = Number(one('wait-timeout-ms', 'RV_WAIT_TIMEOUT_MS') ?? 3000);
  if (!Number.isFinite(waitTimeoutMs) || waitTimeoutMs < 0) throw new Error('bad --wait-timeout-ms');
  const prefixes = flags.get('prefix') ?? splitList(env.EDGEWATCH_PREFIXES) ?? ['/registry/'];
  for (const p of prefixes) if (!p.startsWith('/')) throw new Error(`prefix must start with '/': ${p}`);
  return {
    host: one('host', 'RELAY_HOST') ?? '127.0.0.1',
    port,
    etcdEndpoints: splitList(one('etcd', 'ETCD_ENDPOINTS')) ?? ['http://127.0.0.1:2379'],
    prefixes,
    replicationSecret: one('secret', 'REPLICATION_SECRET') || undefined,
    waitTimeoutMs,
  };
}

function splitList(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return items.length > 0 ? items : undefined;
}
