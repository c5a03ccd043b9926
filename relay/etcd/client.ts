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
 *
 * A secured etcd (TLS, client certificates, username/password) is reached with the same options
 * on every client the relay opens (the shared one and each watch's own), and the password and
 * private key never leave this module in an error message: see `SecretGuard`.
 */
import { rootCertificates } from 'node:tls';
import { type IDefaultPolicyContext, NoopPolicy } from 'cockatiel';
import { Etcd3, EtcdAuthenticationFailedError, type IOptions } from 'etcd3';

/**
 * TLS to etcd, as PEM bytes read once at start-up. Any of these turns TLS on (etcd3 also turns it
 * on, with the system roots, for `https://` endpoints). Invariant: `cert` and `key` are both set
 * or both unset.
 */
export interface EtcdTls {
  /** The CA bundle that signed etcd's server certificate; the system roots when unset. */
  readonly ca?: Buffer | undefined;
  /** Client certificate chain, for an etcd started with `--client-cert-auth`. */
  readonly cert?: Buffer | undefined;
  /** The client certificate's private key. Secret: never logged nor put in an error. */
  readonly key?: Buffer | undefined;
}

/** etcd's username/password auth: etcd3 trades them for a token on each client's first call. */
export interface EtcdAuth {
  readonly username: string;
  /** Secret: never logged nor put in an error. */
  readonly password: string;
}

/** How to reach a secured etcd; part of every client's options so that no client lacks it. */
export interface EtcdSecurity {
  readonly tls?: EtcdTls | undefined;
  readonly auth?: EtcdAuth | undefined;
}

export interface EtcdClientOptions extends EtcdSecurity {
  /** `http://host:port` (or `https://`) URLs of the members. */
  readonly endpoints: string | readonly string[];
  /** Deadline of each unary call (range, put, txn…); streams have none. Default 10 s. */
  readonly callTimeoutMs?: number;
}

/**
 * etcd refused the configured username/password. Its message names the user and never carries
 * the password; reads map it to 503 like any other etcd failure.
 */
export class EtcdCredentialsRejected extends Error {
  override readonly name = 'EtcdCredentialsRejected';
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
    // No retry (writes are not idempotent) and no circuit breaker (it would outlive a restart);
    // the global "policy" only scrubs secrets from errors. etcd3 takes cockatiel policies here
    // (its own dependency), which is why cockatiel is ours too: our retries are core/backoff.ts.
    faultHandling: { global: new SecretGuard(options), host: () => new NoopPolicy() },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  };
  const credentials = grpcCredentials(options.tls);
  if (credentials) config.credentials = credentials;
  if (options.auth) config.auth = { username: options.auth.username, password: options.auth.password };
  return new Etcd3(config);
}

function grpcCredentials(tls: EtcdTls | undefined): IOptions['credentials'] {
  if (!tls || (!tls.ca && !tls.cert && !tls.key)) return undefined;
  if (!tls.cert !== !tls.key)
    throw new Error('an etcd client certificate needs both a certificate and a key');
  return {
    // etcd3 wants a root whenever it is given a client certificate: the system's, as for https://.
    rootCertificate: tls.ca ?? Buffer.from(rootCertificates.join('\n')),
    ...(tls.cert && tls.key ? { certChain: tls.cert, privateKey: tls.key } : {}),
  };
}

/**
 * Runs every unary call (etcd3's global policy wraps the token exchange too) and rewrites what
 * it throws: a refused password becomes `EtcdCredentialsRejected`, and any message that somehow
 * holds the password or the key's text has them replaced. The error's class is kept otherwise,
 * since callers tell compaction and similar conditions apart by it.
 */
class SecretGuard extends NoopPolicy {
  readonly #options: EtcdSecurity;

  constructor(options: EtcdSecurity) {
    super();
    this.#options = options;
  }

  override async execute<T>(
    fn: (context: IDefaultPolicyContext) => PromiseLike<T> | T,
    signal?: AbortSignal,
  ): Promise<T> {
    try {
      return await super.execute(fn, signal);
    } catch (error) {
      throw scrubEtcdError(error, this.#options);
    }
  }
}

/** `error` with the secrets of `security` taken out; an auth refusal becomes `EtcdCredentialsRejected`. */
export function scrubEtcdError(error: unknown, security: EtcdSecurity): unknown {
  const user = security.auth?.username;
  if (error instanceof EtcdAuthenticationFailedError) {
    return new EtcdCredentialsRejected(
      `etcd rejected the password of user ${JSON.stringify(user ?? '')} (authentication failed)`,
    );
  }
  if (!(error instanceof Error)) return error;
  const secrets = secretTexts(security);
  if (!secrets.some((s) => error.message.includes(s) || (error.stack ?? '').includes(s))) return error;
  const redact = (text: string) => secrets.reduce((t, s) => t.split(s).join('[redacted]'), text);
  error.message = redact(error.message);
  if (error.stack) error.stack = redact(error.stack);
  return error;
}

/** The strings that must not appear: the password, the key's PEM and each of its base64 lines. */
function secretTexts(security: EtcdSecurity): string[] {
  const texts: string[] = [];
  if (security.auth?.password) texts.push(security.auth.password);
  const key = security.tls?.key?.toString('utf8').trim();
  if (key) {
    texts.push(key);
    for (const line of key.split(/\r?\n/))
      if (line.length >= 16 && !line.startsWith('-----')) texts.push(line);
  }
  // Longest first, so that a whole PEM is replaced before its lines are looked for.
  return texts.sort((a, b) => b.length - a.length);
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
