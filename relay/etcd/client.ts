/**
 * The relay's etcd client: etcd3's connection pool with the fault handling a cache needs.
 *
 * etcd3's defaults are wrong for us in three ways, each measured on this machine:
 * - its global policy retries "recoverable" errors three times, and a put, delete or txn that
 *   timed out may already have been applied, so a retry writes twice;
 * - its per-host circuit breaker stays open for 5 s after three failures, so for 5 s after a
 *   restarted etcd is healthy again every call still fails fast;
 * - grpc-js refuses responses over 4 MB, and one revision of a txn (or one list page) can be larger.
 *
 * So: no retries and no breaker (the reflector owns reconnection and backoff), unlimited receive
 * size, a deadline on every unary call (a black-holed etcd must not hang a read forever) and
 * HTTP/2 keepalive pings while a call is open (a dead TCP connection is noticed without traffic).
 */
import { noop } from 'cockatiel';
import { Etcd3, type IOptions } from 'etcd3';

export interface EtcdClientOptions {
  /** `http://host:port` URLs of the members. */
  readonly endpoints: string | readonly string[];
  /** Deadline of each unary call (range, put, txn…); streams have none. Default 10 s. */
  readonly callTimeoutMs?: number;
}

/** How often an open connection with calls in flight is pinged; etcd refuses pings under 5 s apart. */
const keepaliveTimeMs = 10_000;
const keepaliveTimeoutMs = 5_000;

export function createEtcdClient(options: EtcdClientOptions): Etcd3 {
  const callTimeoutMs = options.callTimeoutMs ?? 10_000;
  const hosts = typeof options.endpoints === 'string' ? options.endpoints : [...options.endpoints];
  const config: IOptions = {
    hosts,
    grpcOptions: {
      'grpc.max_receive_message_length': -1,
      'grpc.keepalive_time_ms': keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
    },
    // No retry (writes are not idempotent) and no circuit breaker (it would outlive a restart).
    faultHandling: { global: noop, host: () => noop },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  };
  return new Etcd3(config);
}

/** The server version of the member the client reaches, e.g. `"3.5.16"`. */
export async function etcdVersion(client: Etcd3): Promise<string> {
  const status = await client.maintenance.status();
  return status.version;
}

/**
 * Whether etcd's progress notifications can be trusted to serve consistent reads from the
 * cache: before 3.5.13 / 3.4.31 a progress notification could claim a revision whose events
 * the watcher had not yet received (etcd-io/etcd#15220, #17107), which Kubernetes also checks
 * before enabling ConsistentListFromCache. Unparseable versions are treated as unsupported.
 */
export function supportsConsistentCacheReads(version: string): boolean {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  if (!match) return false;
  const [major, minor, patch] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (major !== 3) return major > 3;
  if (minor >= 6) return true;
  if (minor === 5) return patch >= 13;
  if (minor === 4) return patch >= 31;
  return false;
}
