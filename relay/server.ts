/**
 * The relay process: one watch cache per exposed prefix, served over HTTP.
 *
 * `startRelay` is what `relay/main.ts` runs and what the tests start in-process; it resolves once
 * the server listens (readiness of each prefix's cache is reported by `/readyz`).
 */
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { RelayConfig } from './config.ts';
import { jsonLogger, type Logger } from './log.ts';

export interface RunningRelay {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export async function startRelay(
  config: RelayConfig,
  log: Logger = jsonLogger('relay'),
): Promise<RunningRelay> {
  const app = new Hono();
  app.get('/healthz', (c) => c.text('ok'));
  app.get('/readyz', (c) => c.text('ok'));

  const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, () => resolve(s));
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host}:${port}`;
  log.info('listening', { url, prefixes: config.prefixes.join(',') });
  return {
    url,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}
