/**
 * The edge Worker: routes each read to the Durable Object replica for (location, exposed prefix).
 *
 * The Worker itself holds no state. A replica's name is `<location>|<prefix>|<shard>` — the
 * location is `request.cf.colo` (a fixed `DEV_COLO` under `wrangler dev`), the shard is 0 until
 * prefixes are split by key range — so every request for one prefix at one location meets the
 * same replica, and sharding later only changes how the last part is chosen.
 */
import { Hono, type MiddlewareHandler } from 'hono';
import { NotFound, ServiceUnavailable, UriTooLong } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';
import { isK8sPath, K8S_ROUTES } from '../core/k8s/serve.ts';
import { type Bindings, type EdgeSettings, parseEnv } from './env.ts';
import { k8sReplicaPrefix } from './k8s.ts';
import { edgeLog } from './log.ts';
import { PREFIX_HEADER, REPLICA_HEADER, Replica } from './replica.ts';
import { exposedPrefixOfPath } from './routing.ts';
import { forwardWrite } from './writes.ts';

export { Replica };

/** Longer URLs are refused before any work (Cloudflare's own limit is 16 KiB). */
const MAX_URL_LENGTH = 16 * 1024;

type WorkerEnv = { Bindings: Bindings; Variables: { settings: EdgeSettings } };

/**
 * Validates the bindings (worker/env.ts) before anything else runs, /healthz included: a Worker
 * deployed with a bad setting answers 503 naming it, rather than misbehaving.
 */
function validSettings(): MiddlewareHandler<WorkerEnv> {
  return async function validSettings(c, next) {
    try {
      c.set('settings', parseEnv(c.env));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      edgeLog.error('bad Worker settings', { error: message });
      return errorResponse(new ServiceUnavailable(`the edge is misconfigured: ${message}`), 'edge');
    }
    await next();
  };
}

const app = new Hono<WorkerEnv>();

app.use(validSettings());

app.get('/healthz', (c) => c.text('ok'));

/** Writes are the relay's: forwarded unchanged, with the client's credentials (worker/writes.ts). */
app.on(['PUT', 'DELETE'], '/v1/*', (c) =>
  c.req.raw.url.length > MAX_URL_LENGTH
    ? errorResponse(new UriTooLong(`the URL is longer than ${MAX_URL_LENGTH} bytes`), 'edge')
    : forwardWrite(c.var.settings.relayUrl, c.req.raw),
);

/** Every read goes to its replica; the replica parses and answers it (or forwards it). */
app.on(
  'GET',
  [
    '/v1/kv/*',
    '/v1/list/*',
    '/_replica/status/*',
    '/_replica/metrics/*',
    '/_replica/readyz/*',
    '/_replica/corrupt/*',
    ...K8S_ROUTES,
  ],
  async (c) => {
    const raw = c.req.raw;
    if (raw.url.length > MAX_URL_LENGTH) {
      return errorResponse(new UriTooLong(`the URL is longer than ${MAX_URL_LENGTH} bytes`), 'edge');
    }
    const url = new URL(raw.url);
    const settings = c.var.settings;
    const routed = isK8sPath(url.pathname)
      ? k8sReplicaPrefix(settings.prefixes)
      : exposedPrefixOfPath(url, settings.prefixes, settings.continueSecret);
    if (routed instanceof Response) return routed;
    const colo = (raw.cf as { colo?: string } | undefined)?.colo ?? settings.devColo;
    const name = `${colo}|${routed}|0`;
    const stub = c.env.REPLICA.get(c.env.REPLICA.idFromName(name));
    const headers = new Headers(raw.headers);
    headers.set(REPLICA_HEADER, name);
    headers.set(PREFIX_HEADER, routed);
    const internal = /^\/_replica\/(status|metrics|readyz|corrupt)\//.exec(url.pathname)?.[1];
    const target = internal ? `${url.origin}/_replica/${internal}${url.search}` : raw.url;
    // The replica's response goes back as it is: its body is not piped through a stream of ours,
    // which cost a JS hop per chunk per watcher on the replica's own thread. A client that goes
    // away aborts `raw.signal` (enable_request_signal); passed on, it cancels the replica's request,
    // and the watch there ends at once (test: abandoned-edge-watch-leak).
    return stub.fetch(new Request(target, { method: 'GET', headers, signal: raw.signal }));
  },
);

app.notFound((c) => errorResponse(new NotFound(`no endpoint at ${c.req.method} ${c.req.path}`), 'edge'));
app.onError((error) => {
  edgeLog.error('unhandled error', { error: String(error) });
  return errorResponse(error, 'edge');
});

export default app;
