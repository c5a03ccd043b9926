/**
 * The edge's Kubernetes-shaped endpoints (core/k8s/serve.ts): which replica answers them. The
 * Kubernetes layout lives under one root (`/registry/`), so every Kubernetes request goes to the
 * replica of the exposed prefix that holds that whole root; the replica resolves the resource
 * from its own data and serves it like any other read.
 */
import { NotFound } from '../core/errors.ts';
import { DEFAULT_ROOT } from '../core/k8s/resources.ts';
import { k8sErrorResponse } from '../core/k8s/serve.ts';
import { exposedPrefixFor } from '../core/request.ts';

/** The exposed prefix whose replica serves the Kubernetes API, or the 404 to send instead. */
export function k8sReplicaPrefix(prefixes: readonly string[]): string | Response {
  try {
    return exposedPrefixFor(DEFAULT_ROOT, prefixes, 'prefix');
  } catch {
    return k8sErrorResponse(
      new NotFound(`the Kubernetes API needs an exposed prefix that holds ${DEFAULT_ROOT}`),
      'edge',
    );
  }
}

/**
 * A Kubernetes watch is `application/json`, which the Workers runtime compresses for clients
 * that accept gzip — and a compressor holds back a stream's bytes until it has enough of them,
 * so kubectl (which always accepts gzip) saw no event at all. `Content-Encoding: identity`
 * tells the runtime to send the body as it is.
 */
export function k8sStreamed(res: Response, request: Request): Response {
  const watch = new URL(request.url).searchParams.get('watch') ?? '';
  if (!['true', '1', 't', 'True', 'TRUE'].includes(watch)) return res;
  const headers = new Headers(res.headers);
  headers.set('Content-Encoding', 'identity');
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}
