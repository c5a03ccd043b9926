/**
 * The edge Worker: routes each read to the Durable Object replica for (location, exposed prefix).
 *
 * The Worker itself holds no state. A replica's name is `<location>|<prefix>|<shard>` — the
 * location is `request.cf.colo` (a fixed `DEV_COLO` under `wrangler dev`), the shard is 0 until
 * prefixes are split by key range — so every request for one prefix at one location meets the
 * same replica, and sharding later only changes how the last part is chosen.
 */
import { Hono } from 'hono';
import { NotFound, UriTooLong } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';
import { PREFIX_HEADER, REPLICA_HEADER, Replica } from './replica.ts';
import { exposedPrefixOfPath } from './routing.ts';

export { Replica };

export interface Env {
  REPLICA: DurableObjectNamespace<Replica>;
  /** Where replicas stream from and forward to. */
  RELAY_URL: string;
  /** The exposed prefixes, comma-separated; must match the relay's. */
  PREFIXES: string;
  /** The replica location under `wrangler dev`, where requests carry no `cf.colo`. */
  DEV_COLO: string;
  /** Shared with the relay; a secret (`wrangler secret put REPLICATION_SECRET`). */
  REPLICATION_SECRET?: string;
  /** Shared with the relay so continue tokens minted at either tier work at both. */
  CONTINUE_SECRET?: string;
  /** How long a read waits for the replica to reach a revision before forwarding (ms, default 1000). */
  EDGE_WAIT_MS?: string;
  /** Close the relay stream after this long without readers or watchers (ms, default 60000). */
  EDGE_IDLE_MS?: string;
  /** Heartbeat interval on the replication stream (ms, default 5000). */
  EDGE_HEARTBEAT_MS?: string;
  /**
   * `1`: local development, no client credentials checked — honoured only when the relay runs
   * with `--insecure-no-auth` too. Unset in a deployment: without tokens the edge serves no one.
   */
  EDGEWATCH_INSECURE_NO_AUTH?: string;
  /** Requests per second per client token and replica (default 100; 0 turns limiting off). */
  EDGE_RATE_LIMIT_RPS?: string;
  /** Burst allowance per client token and replica (default 200). */
  EDGE_RATE_LIMIT_BURST?: string;
}

/** Longer URLs are refused before any work (Cloudflare's own limit is 16 KiB). */
const MAX_URL_LENGTH = 16 * 1024;

const app = new Hono<{ Bindings: Env }>();

app.get('/healthz', (c) => c.text('ok'));

/** Every read goes to its replica; the replica parses and answers it (or forwards it). */
app.on('GET', ['/v1/kv/*', '/v1/list/*', '/_replica/status/*'], async (c) => {
  const raw = c.req.raw;
  if (raw.url.length > MAX_URL_LENGTH) {
    return errorResponse(new UriTooLong(`the URL is longer than ${MAX_URL_LENGTH} bytes`), 'edge');
  }
  const url = new URL(raw.url);
  const routed = exposedPrefixOfPath(url, c.env.PREFIXES, c.env.CONTINUE_SECRET);
  if (routed instanceof Response) return routed;
  const colo = (raw.cf as { colo?: string } | undefined)?.colo ?? c.env.DEV_COLO ?? 'local';
  const name = `${colo}|${routed}|0`;
  const stub = c.env.REPLICA.get(c.env.REPLICA.idFromName(name));
  const headers = new Headers(raw.headers);
  headers.set(REPLICA_HEADER, name);
  headers.set(PREFIX_HEADER, routed);
  const target = url.pathname.startsWith('/_replica/status/') ? `${url.origin}/_replica/status` : raw.url;
  const res = await stub.fetch(new Request(target, { method: 'GET', headers, signal: raw.signal }));
  if (res.body === null) return res;
  // Pipe the replica's body through a stream of our own: when the client goes away, workerd
  // cancels this readable, the pipe fails, and the replica's watch is cancelled with it. Passing
  // the replica's body through untouched left abandoned watches open (found by the fuzz test).
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  res.body.pipeTo(writable).catch(() => {});
  return new Response(readable, res);
});

app.notFound((c) => errorResponse(new NotFound(`no endpoint at ${c.req.method} ${c.req.path}`), 'edge'));
app.onError((error) => {
  console.error(JSON.stringify({ msg: 'unhandled error', error: String(error) }));
  return errorResponse(error, 'edge');
});

export default app;
