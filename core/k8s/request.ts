/**
 * Kubernetes request paths, turned into the read API's own requests: a Kubernetes get, list or
 * watch *is* a `/v1` get of one key or list/watch of one key prefix, so its query is read by the
 * very same rules (core/request.ts `readRequestFor`), and it runs through the same serving rules.
 * What Kubernetes adds — the resource, namespace and name, selectors, Table output — rides along.
 *
 *   /api/v1/{resource}                         list/watch, every namespace (or cluster-scoped)
 *   /api/v1/{resource}/{name}                  get, cluster-scoped
 *   /api/v1/namespaces/{ns}/{resource}         list/watch in a namespace
 *   /api/v1/namespaces/{ns}/{resource}/{name}  get (watch=true: a watch of that one name)
 *   /apis/{group}/{version}/…                  the same for other groups
 *
 * `/api/v1/namespaces/{ns}` is a get of the cluster-scoped resource `namespaces`, as in Kubernetes.
 */
import { BadRequest, NotFound } from '../errors.ts';
import { type ParseOptions, type ReadRequest, readRequestFor } from '../request.ts';
import { FIELD_LABELS } from './catalogue.ts';
import {
  checkSegment,
  DEFAULT_ROOT,
  type ResourceInfo,
  type ResourceTable,
  resolveResource,
} from './resources.ts';
import { parseSelector, type Selector } from './selectors.ts';

/** A path under the Kubernetes API, before the resource table is consulted. */
export type K8sRoute =
  | { readonly kind: 'version' }
  | { readonly kind: 'api' }
  | { readonly kind: 'apis' }
  | { readonly kind: 'group'; readonly group: string }
  | { readonly kind: 'groupVersion'; readonly group: string; readonly version: string }
  | {
      readonly kind: 'resource';
      readonly group: string;
      readonly version: string;
      readonly resource: string;
      readonly namespace: string | undefined;
      readonly name: string | undefined;
    };

/** True for paths the Kubernetes front end answers (everything else is the `/v1` API's). */
export function isK8sPath(pathname: string): boolean {
  return (
    pathname === '/api' ||
    pathname.startsWith('/api/') ||
    pathname === '/apis' ||
    pathname.startsWith('/apis/') ||
    pathname === '/version' ||
    pathname === '/version/'
  );
}

/** Splits a Kubernetes path. Throws `NotFound` for a path Kubernetes would not serve. */
export function routeK8s(pathname: string): K8sRoute {
  const notFound = () => new NotFound('the server could not find the requested resource');
  let segments: string[];
  try {
    segments = pathname
      .split('/')
      .filter((s) => s !== '')
      .map(decodeURIComponent);
  } catch {
    throw new BadRequest('invalid percent-encoding in the path');
  }
  const [root, ...rest] = segments;
  if (root === 'version' && rest.length === 0) return { kind: 'version' };
  let group: string;
  let version: string | undefined;
  let tail: string[];
  if (root === 'api') {
    if (rest.length === 0) return { kind: 'api' };
    [version, ...tail] = rest;
    group = '';
    if (version !== 'v1') throw notFound();
  } else if (root === 'apis') {
    if (rest.length === 0) return { kind: 'apis' };
    [group = '', version, ...tail] = rest;
    if (version === undefined) return { kind: 'group', group };
  } else {
    throw notFound();
  }
  if (tail.length === 0) return { kind: 'groupVersion', group, version };
  const resourceRoute = (
    resource: string,
    namespace: string | undefined,
    name: string | undefined,
  ): K8sRoute => ({
    kind: 'resource',
    group,
    version: version as string,
    resource,
    namespace: namespace === undefined ? undefined : checkSegment('namespace', namespace),
    name: name === undefined ? undefined : checkSegment('name', name),
  });
  const [a = '', b, c, d, ...more] = tail;
  if (a === 'namespaces' && c !== undefined) {
    if (more.length > 0) throw notFound();
    // namespaces/{ns}/{resource}[/{name}]; a fifth segment would be a subresource: not served.
    return resourceRoute(c, b, d);
  }
  if (c !== undefined) throw notFound();
  return resourceRoute(a, undefined, b);
}

/** A Kubernetes read: the `/v1` request it is, plus what only Kubernetes has. */
export interface K8sRead {
  readonly read: ReadRequest;
  readonly resource: ResourceInfo;
  /** The apiVersion the URL asked for (`v1`, `apps/v1`): list kinds and bookmarks carry it. */
  readonly apiVersion: string;
  readonly namespace: string | undefined;
  /** Set for a get, and for a watch of one object (a get path with watch=true). */
  readonly name: string | undefined;
  readonly selector: Selector;
  /** `Accept` asked for a `meta.k8s.io` Table. */
  readonly table: boolean;
  /** What besides the page decides a list body (apiVersion, selectors): kept bodies are keyed by it. */
  readonly bodyKey: string;
}

export interface K8sParseOptions extends ParseOptions {
  /** Where the Kubernetes layout starts in etcd (default `/registry/`). */
  readonly root?: string;
}

/**
 * Resolves a resource route against the table and builds the read. Throws `NotFound` (unknown
 * resource, wrong scope), `BadRequest` (selectors, parameters) or `Forbidden` (outside the
 * exposed prefixes), exactly as a `/v1` request for the same key or prefix would.
 */
export function parseK8sRead(
  route: Extract<K8sRoute, { kind: 'resource' }>,
  table: ResourceTable,
  query: URLSearchParams,
  accept: string | null,
  options: K8sParseOptions,
): K8sRead {
  const info = resolveResource(
    table,
    route.group,
    route.version,
    route.resource,
    options.root ?? DEFAULT_ROOT,
  );
  const notFound = () => new NotFound('the server could not find the requested resource');
  if (info === undefined) throw notFound();
  // A namespaced resource is read in a namespace or across all; a cluster-scoped one never in one.
  if (route.namespace !== undefined && !info.namespaced) throw notFound();
  if (route.name !== undefined && route.namespace === undefined && info.namespaced) throw notFound();
  const fieldLabels = FIELD_LABELS.get(`${info.group}/${info.resource}`);
  const selector = parseSelector(single(query, 'labelSelector'), single(query, 'fieldSelector'), fieldLabels);
  const scope = route.namespace === undefined ? info.keyPrefix : `${info.keyPrefix}${route.namespace}/`;
  const watch = ['true', '1', 't', 'True', 'TRUE'].includes(query.get('watch') ?? '');
  const target = route.name !== undefined && !watch ? { key: `${scope}${route.name}` } : { prefix: scope };
  const read = readRequestFor(target, query, options);
  const name = route.name;
  return {
    read,
    resource: info,
    apiVersion: route.group === '' ? route.version : `${route.group}/${route.version}`,
    namespace: route.namespace,
    name,
    selector:
      name !== undefined && watch
        ? parseSelector(
            single(query, 'labelSelector'),
            joinFields(single(query, 'fieldSelector'), name),
            fieldLabels,
          )
        : selector,
    table: wantsTable(accept),
    bodyKey: [
      route.group,
      route.version,
      single(query, 'labelSelector'),
      single(query, 'fieldSelector'),
      name,
    ]
      .map((part) => part ?? '')
      .join('\u0000'),
  };
}

function joinFields(fieldSelector: string | undefined, name: string): string {
  const pin = `metadata.name=${name}`;
  return fieldSelector === undefined ? pin : `${fieldSelector},${pin}`;
}

function single(query: URLSearchParams, name: string): string | undefined {
  const values = query.getAll(name);
  if (values.length > 1) throw new BadRequest(`parameter ${name} given more than once`);
  const value = values[0];
  return value === undefined || value === '' ? undefined : value;
}

/** `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,…` (kubectl's default for `get`). */
export function wantsTable(accept: string | null): boolean {
  if (accept === null) return false;
  for (const part of accept.split(',')) {
    const params = part.split(';').map((s) => s.trim());
    const type = params[0]?.toLowerCase();
    if (type !== 'application/json' && type !== '*/*') continue;
    const has = (p: string) => params.includes(p);
    if (has('as=Table') && has('g=meta.k8s.io') && (has('v=v1') || has('v=v1beta1'))) return true;
    // A plain JSON type listed before any Table type: the client prefers plain objects.
    if (params.length === 1) return false;
  }
  return false;
}
