import { describe, expect, it } from 'vitest';
import { decodeContinue, paginate } from '../continue.ts';
import { BadRequest, Forbidden, NotFound } from '../errors.ts';
import { deletedObject } from '../object.ts';
import type { ChangeEvent } from '../types.ts';
import {
  bookmarkLine,
  eventLine,
  getView,
  humanDuration,
  type K8sListPage,
  k8sStatus,
  listBody,
  selectPage,
  tableBody,
  watchEventOf,
} from './encode.ts';
import { configMap, stored, storeOf } from './fixtures.ts';
import { encodedObject, leftOutReason } from './objects.ts';
import { type K8sRead, parseK8sRead, routeK8s, wantsTable } from './request.ts';
import { deriveResources } from './resources.ts';

const objects = [
  configMap('default', 'a', { app: 'web' }),
  configMap('default', 'b', { app: 'db' }),
  configMap('default', 'c', { app: 'web' }),
  stored('/registry/configmaps/default/d', 'k8s\u0000\n\u0002v1'),
  stored('/registry/configmaps/default/e', 'k8s:enc:aescbc:v1:key1:xxxx'),
  configMap('prod', 'a', { app: 'web' }),
  stored('/registry/configmaps/too/deep/x', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }),
  stored('/registry/namespaces/default', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: 'default' },
  }),
  stored('/registry/events/default/a.1', {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: 'a.1', namespace: 'default' },
    involvedObject: { kind: 'ConfigMap', name: 'a', namespace: 'default' },
    type: 'Normal',
    count: 2,
  }),
  stored('/registry/events/default/b.1', {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: 'b.1', namespace: 'default' },
    involvedObject: { kind: 'ConfigMap', name: 'b', namespace: 'default' },
    type: 'Warning',
  }),
];
const store = storeOf(objects, 200);
const table = deriveResources(store);
const options = { exposedPrefixes: ['/registry/'] };

function read(path: string, query = '', accept: string | null = null): K8sRead {
  const route = routeK8s(path);
  if (route.kind !== 'resource') throw new Error('not a resource path');
  return parseK8sRead(route, table, new URLSearchParams(query), accept, options);
}
const decode = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));
/** What the read path does for a list (core/read-api.ts), then the Kubernetes page of it. */
function listPage(r: K8sRead): K8sListPage {
  if (r.read.verb !== 'list') throw new Error('not a list');
  const { limit, continue: token } = r.read.pagination;
  const page = store.list(r.read.prefix, {
    ...(token ? { startKey: token.start } : {}),
    ...(limit !== undefined ? { limit } : {}),
  });
  const served = paginate(page.items, page.remaining, { rv: store.revision, prefix: r.read.prefix });
  return selectPage(served.items, r, served.continueToken, served.remaining);
}
const names = (r: K8sRead) => listPage(r).views.map((v) => `${v.namespace}/${v.name}`);
const getObject = (r: K8sRead) => getView(r.read.verb === 'get' ? store.get(r.read.key) : undefined, r);

describe('Kubernetes paths', () => {
  it('map a namespaced list, an all-namespaces list and a get onto /v1 prefixes and keys', () => {
    expect(read('/api/v1/namespaces/default/configmaps').read).toMatchObject({
      verb: 'list',
      prefix: '/registry/configmaps/default/',
    });
    expect(read('/api/v1/configmaps', 'watch=true&resourceVersion=5').read).toMatchObject({
      verb: 'watch',
      prefix: '/registry/configmaps/',
      consistency: { kind: 'exact', rv: 5 },
    });
    expect(read('/api/v1/namespaces/default/configmaps/a', 'resourceVersion=0').read).toMatchObject({
      verb: 'get',
      key: '/registry/configmaps/default/a',
      consistency: { kind: 'any' },
    });
    expect(read('/api/v1/namespaces/default').read).toMatchObject({
      verb: 'get',
      key: '/registry/namespaces/default',
    });
  });

  it('turn a watch of one name into a watch of its namespace pinned by metadata.name', () => {
    const r = read('/api/v1/namespaces/default/configmaps/a', 'watch=1');
    expect(r.read).toMatchObject({ verb: 'watch', prefix: '/registry/configmaps/default/' });
    expect(r.selector.matches({ name: 'a', namespace: 'default', labels: {} })).toBe(true);
    expect(r.selector.matches({ name: 'b', namespace: 'default', labels: {} })).toBe(false);
  });

  it('answer 404 for unknown resources, wrong scopes, other versions and subresources', () => {
    expect(() => read('/api/v1/gadgets')).toThrow(NotFound);
    expect(() => read('/api/v1/namespaces/default/namespaces')).toThrow(NotFound);
    expect(() => read('/api/v1/configmaps/a')).toThrow(NotFound);
    expect(() => routeK8s('/api/v2/configmaps')).toThrow(NotFound);
    expect(() => routeK8s('/api/v1/namespaces/default/configmaps/a/status')).toThrow(NotFound);
  });

  it('apply the /v1 parameter rules and refuse bad selectors with 400', () => {
    expect(() => read('/api/v1/configmaps', 'resourceVersionMatch=Exact')).toThrow(BadRequest);
    expect(() => read('/api/v1/configmaps', 'labelSelector=a%20in')).toThrow(BadRequest);
    expect(() => read('/api/v1/configmaps', 'fieldSelector=spec.x%3D1')).toThrow(BadRequest);
    const outside = routeK8s('/api/v1/configmaps');
    if (outside.kind !== 'resource') throw new Error('route');
    expect(() =>
      parseK8sRead(outside, table, new URLSearchParams(), null, { exposedPrefixes: ['/other/'] }),
    ).toThrow(Forbidden);
  });

  it('see a Table request in kubectl Accept headers only', () => {
    expect(
      wantsTable(
        'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json',
      ),
    ).toBe(true);
    expect(wantsTable('application/json')).toBe(false);
    expect(wantsTable(null)).toBe(false);
  });
});

describe('lists', () => {
  it('serve every object of the resource in key order with resourceVersion = modRevision', () => {
    const page = listPage(read('/api/v1/configmaps'));
    expect(page.views.map((v) => v.name)).toEqual(['a', 'b', 'c', 'a']);
    const body = decode(listBody(page, read('/api/v1/configmaps'), 200));
    expect(body).toMatchObject({
      kind: 'ConfigMapList',
      apiVersion: 'v1',
      metadata: { resourceVersion: '200' },
    });
    expect(body.items[0].metadata.resourceVersion).toBe(String(objects[0]?.modRevision));
    expect(body.items[0].data).toEqual({ k: 'a' });
  });

  it('leave protobuf and encrypted values out whole and count them', () => {
    const page = listPage(read('/api/v1/namespaces/default/configmaps'));
    expect(page.views.map((v) => v.name)).toEqual(['a', 'b', 'c']);
    expect(page.leftOut).toEqual({ protobuf: 1, encrypted: 1 });
    expect(objects[3] && leftOutReason(objects[3])).toBe('protobuf');
  });

  it('filter by label and field selectors', () => {
    expect(names(read('/api/v1/configmaps', 'labelSelector=app%3Dweb'))).toEqual([
      'default/a',
      'default/c',
      'prod/a',
    ]);
    expect(names(read('/api/v1/configmaps', 'labelSelector=app%20notin%20(web)'))).toEqual(['default/b']);
    expect(names(read('/api/v1/configmaps', 'fieldSelector=metadata.namespace%3Dprod'))).toEqual(['prod/a']);
    expect(names(read('/api/v1/configmaps', 'fieldSelector=metadata.name%3Da'))).toEqual([
      'default/a',
      'prod/a',
    ]);
  });

  it("filter Events by the fields Kubernetes supports for them (kubectl describe's involvedObject.*)", () => {
    const events = (selector: string) =>
      listPage(
        read('/api/v1/namespaces/default/events', `fieldSelector=${encodeURIComponent(selector)}`),
      ).views.map((v) => v.name);
    expect(events('involvedObject.name=a,involvedObject.kind=ConfigMap')).toEqual(['a.1']);
    expect(events('type!=Normal')).toEqual(['b.1']);
    expect(events('involvedObject.uid=')).toEqual(['a.1', 'b.1']);
    expect(() => read('/api/v1/namespaces/default/events', 'fieldSelector=involvedObject.color%3Dx')).toThrow(
      'field label not supported: involvedObject.color',
    );
    expect(() => read('/api/v1/configmaps', 'fieldSelector=involvedObject.name%3Da')).toThrow(BadRequest);
  });

  it('page by keys with limit and continue: pages may hold fewer objects, none is lost or repeated', () => {
    const first = listPage(read('/api/v1/configmaps', 'limit=2'));
    expect(first.views.map((v) => v.name)).toEqual(['a', 'b']);
    expect(first.remainingItemCount).toBe(5); // keys after b: c, d, e, prod/a, too/deep/x
    expect(decodeContinue(first.continueToken ?? '', '/registry/configmaps/')).toMatchObject({ rv: 200 });
    const pages = [first.views.map((v) => `${v.namespace}/${v.name}`)];
    let token = first.continueToken;
    while (token !== undefined) {
      const next = listPage(read('/api/v1/configmaps', `limit=2&continue=${encodeURIComponent(token)}`));
      pages.push(next.views.map((v) => `${v.namespace}/${v.name}`));
      token = next.continueToken;
    }
    // c and d (protobuf); e (encrypted) and prod/a; too/deep/x (not an object of the resource).
    expect(pages).toEqual([['default/a', 'default/b'], ['default/c'], ['prod/a'], []]);
    expect(pages.flat()).toEqual(names(read('/api/v1/configmaps')));
  });

  it('keep remainingItemCount only without a selector, as Kubernetes does', () => {
    const selected = listPage(read('/api/v1/configmaps', 'limit=1&labelSelector=app%3Dweb'));
    expect(selected.views.map((v) => v.name)).toEqual(['a']);
    expect(selected.continueToken).toBeDefined();
    expect(selected.remainingItemCount).toBeUndefined();
  });

  it('encode each object once, shared by every response', () => {
    const a = listPage(read('/api/v1/configmaps')).views[0];
    const b = listPage(read('/api/v1/namespaces/default/configmaps')).views[0];
    if (a === undefined || b === undefined) throw new Error('no views');
    expect(encodedObject(a)).toBe(encodedObject(b));
  });

  it('build a Table whose rows carry PartialObjectMetadata with the namespace', () => {
    const page = listPage(read('/api/v1/configmaps', 'limit=1'));
    const body = decode(tableBody(page.views, 200, Date.parse('2026-01-01T00:05:00Z'), page));
    expect(body).toMatchObject({
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { resourceVersion: '200' },
    });
    expect(body.metadata.continue).toBe(page.continueToken);
    expect(body.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(['Name', 'Age']);
    expect(body.rows[0].cells).toEqual(['a', '5m']);
    expect(body.rows[0].object).toMatchObject({
      kind: 'PartialObjectMetadata',
      apiVersion: 'meta.k8s.io/v1',
      metadata: { name: 'a', namespace: 'default' },
    });
  });

  it('print ages as kubectl does', () => {
    expect(
      [5e3, 119e3, 150e3, 600e3, 3 * 3600e3 + 60e3, 30 * 3600e3, 3 * 86400e3 + 3600e3, 400 * 86400e3].map(
        humanDuration,
      ),
    ).toEqual(['5s', '119s', '2m30s', '10m', '3h1m', '30h', '3d1h', '400d']);
  });
});

describe('gets and errors', () => {
  it('get one object, and say NotFound as Kubernetes does', () => {
    expect(getObject(read('/api/v1/namespaces/default/configmaps/a')).name).toBe('a');
    const missing = () => getObject(read('/api/v1/namespaces/default/configmaps/zz'));
    expect(missing).toThrow('configmaps "zz" not found');
    // A protobuf value is not half-served: the object is simply not there.
    expect(() => getObject(read('/api/v1/namespaces/default/configmaps/d'))).toThrow(NotFound);
    try {
      missing();
    } catch (error) {
      expect(k8sStatus(error)).toMatchObject({
        kind: 'Status',
        code: 404,
        reason: 'NotFound',
        details: { name: 'zz', kind: 'configmaps' },
      });
    }
  });
});

describe('watch events', () => {
  const r = read('/api/v1/configmaps', 'watch=true&labelSelector=app%3Dweb');
  const before = configMap('default', 'x', { app: 'web' });
  const after = configMap('default', 'x', { app: 'db' });
  const put = (object = before, prev?: typeof before): ChangeEvent =>
    prev ? { type: 'PUT', object, prev } : { type: 'PUT', object };

  it('are ADDED, MODIFIED and DELETED as the object enters, stays in and leaves the selection', () => {
    expect(watchEventOf(put(before), r)?.type).toBe('ADDED');
    expect(watchEventOf(put(before, before), r)?.type).toBe('MODIFIED');
    const left = watchEventOf(put(after, before), r);
    expect(left?.type).toBe('DELETED');
    expect(left?.view.labels).toEqual({ app: 'web' });
    expect(left?.view.body).toMatchObject({ metadata: { resourceVersion: String(after.modRevision) } });
    expect(watchEventOf(put(before, after), r)?.type).toBe('ADDED');
    expect(watchEventOf(put(after), r)).toBeUndefined();
  });

  it('carry the last state at the deleting revision in DELETED', () => {
    const gone = deletedObject(before, 999);
    const event = watchEventOf({ type: 'DELETE', object: gone, prev: before }, r);
    expect(event?.type).toBe('DELETED');
    const line = decode(eventLine('DELETED', event?.view ?? (undefined as never)));
    expect(line).toMatchObject({
      type: 'DELETED',
      object: { metadata: { name: 'x', resourceVersion: '999' } },
    });
  });

  it('frame bookmarks as {kind, apiVersion, metadata.resourceVersion}, marking the end of initial events', () => {
    expect(decode(bookmarkLine(r, 42, false))).toEqual({
      type: 'BOOKMARK',
      object: { kind: 'ConfigMap', apiVersion: 'v1', metadata: { resourceVersion: '42' } },
    });
    expect(decode(bookmarkLine(r, 42, true)).object.metadata.annotations).toEqual({
      'k8s.io/initial-events-end': 'true',
    });
  });
});
