/**
 * The relay's Kubernetes-shaped endpoints (core/k8s/serve.ts), on the relay's own read tier: the
 * same plan as `/v1` reads (cache, or etcd when the cache cannot prove the state asked for).
 */
import type { Hono } from 'hono';
import type { ExplicitResource } from '../core/k8s/resources.ts';
import { K8S_ROUTES, serveK8s } from '../core/k8s/serve.ts';
import type { ReadTier } from '../core/read-api.ts';

export function k8sRoutes(app: Hono, tier: ReadTier, explicit: readonly ExplicitResource[] = []): void {
  const options = { explicit };
  for (const path of K8S_ROUTES) app.get(path, (c) => serveK8s(tier, c.req.raw, options));
}
