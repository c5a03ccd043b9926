/**
 * The edge Worker: routes each read to the Durable Object replica for (location, exposed prefix).
 *
 * The Worker itself holds no state; a replica's name carries its location and prefix (and, on the
 * roadmap, a shard), so any request for the same prefix at the same location meets the same replica.
 */
import { Hono } from 'hono';
import { Replica } from './replica.ts';

export { Replica };

export interface Env {
  REPLICA: DurableObjectNamespace<Replica>;
  RELAY_URL: string;
  PREFIXES: string;
  DEV_COLO: string;
}

const app = new Hono<{ Bindings: Env }>();

app.get('/healthz', (c) => c.text('ok'));

export default app;
