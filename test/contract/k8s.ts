/**
 * Contract: the Kubernetes-shaped endpoints (API.md "Kubernetes-shaped endpoints"), checked
 * against etcd itself at both tiers. Every test works in its own namespace (or custom group) of
 * the Kubernetes layout under the target's `/registry/` prefix.
 */
import type { Etcd3 } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { currentRevision, del, put } from './etcd-model.ts';
import { expectStatus } from './http.ts';
import type { ContractTarget, TargetRef } from './target.ts';
import { END, type WatchEvent, WatchReader } from './watch-reader.ts';

// biome-ignore lint/suspicious/noExplicitAny: wire JSON; each test narrows it with expect().
type Json = Record<string, any>;

const CREATED = '2026-01-01T00:00:00Z';

function configMap(namespace: string, name: string, labels: Record<string, string> = {}, data: Json = {}) {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels, creationTimestamp: CREATED },
    data,
  };
}

async function putObject(etcd: Etcd3, key: string, object: unknown): Promise<number> {
  return put(etcd, key, JSON.stringify(object));
}

const cmKey = (ns: string, name: string) => `/registry/configmaps/${ns}/${name}`;

/** The object etcd holds at `key`, shaped as the API serves it (resourceVersion = modRevision). */
async function expected(etcd: Etcd3, key: string): Promise<Json> {
  const res = await etcd.get(key).exec();
  const kv = res.kvs[0];
  if (kv === undefined) throw new Error(`${key} is not in etcd`);
  const object = JSON.parse(kv.value.toString()) as Json;
  return { ...object, metadata: { ...object.metadata, resourceVersion: String(kv.mod_revision) } };
}

async function json(res: Response): Promise<Json> {
  const text = await res.text();
  expect(res.status, `${res.url}: ${text}`).toBe(200);
  expect(res.headers.get('content-type') ?? '').toContain('application/json');
  return JSON.parse(text) as Json;
}

function url(t: ContractTarget, path: string, query: Record<string, string | number> = {}): string {
  const params = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
  const text = params.toString();
  return `${t.baseUrl}${path}${text ? `?${text}` : ''}`;
}

const openWatch = (address: string, headers?: Record<string, string>) =>
  WatchReader.open(address, { contentType: 'application/json', ...(headers ? { headers } : {}) });

async function nextEvent(watch: WatchReader): Promise<WatchEvent> {
  const event = await watch.next();
  if (event === END) throw new Error(`the watch ended; saw ${JSON.stringify(watch.seen)}`);
  return event;
}

export function k8sContract(target: TargetRef): void {
  describe('Kubernetes-shaped endpoints', () => {
    it('answer discovery, legacy and aggregated (Content-Type names the aggregated format)', async () => {
      const t = target();
      await putObject(t.etcd, cmKey('k8s-disc', 'a'), configMap('k8s-disc', 'a'));
      await putObject(t.etcd, '/registry/disc.example.com/gadgets/k8s-disc/g', {
        apiVersion: 'disc.example.com/v1',
        kind: 'Gadget',
        metadata: { name: 'g', namespace: 'k8s-disc' },
      });
      const revision = await currentRevision(t.etcd);
      // Discovery is served from the tier's data: wait until it has the writes above.
      await json(
        await fetch(url(t, '/api/v1/namespaces/k8s-disc/configmaps', { resourceVersion: revision })),
      );
      await json(
        await fetch(
          url(t, '/apis/disc.example.com/v1/namespaces/k8s-disc/gadgets', { resourceVersion: revision }),
        ),
      );
      expect(await json(await fetch(url(t, '/version')))).toMatchObject({
        major: '1',
        gitVersion: expect.any(String),
      });
      expect(await json(await fetch(url(t, '/api')))).toMatchObject({
        kind: 'APIVersions',
        versions: ['v1'],
      });
      const core = await json(await fetch(url(t, '/api/v1')));
      expect(core.resources).toContainEqual(
        expect.objectContaining({ name: 'configmaps', namespaced: true, kind: 'ConfigMap' }),
      );
      const groups = await json(await fetch(url(t, '/apis')));
      expect(groups.groups).toContainEqual(expect.objectContaining({ name: 'disc.example.com' }));
      expect((await json(await fetch(url(t, '/apis/disc.example.com/v1')))).resources).toEqual([
        expect.objectContaining({ name: 'gadgets', kind: 'Gadget', namespaced: true }),
      ]);
      const aggregatedType = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList';
      const aggregated = await fetch(url(t, '/apis'), {
        headers: { Accept: `${aggregatedType},application/json` },
      });
      expect(aggregated.headers.get('content-type')).toBe(aggregatedType);
      const body = (await aggregated.json()) as Json;
      expect(body.kind).toBe('APIGroupDiscoveryList');
      expect(body.items).toContainEqual(
        expect.objectContaining({ metadata: expect.objectContaining({ name: 'disc.example.com' }) }),
      );
      await expectStatus(await fetch(url(t, '/apis/nope.example.com/v1')), 404, 'NotFound');
    });

    it('list a namespace as etcd holds it, resourceVersion = modRevision, list rv = served revision', async () => {
      const t = target();
      for (const name of ['c', 'a', 'b'])
        await putObject(t.etcd, cmKey('k8s-list', name), configMap('k8s-list', name));
      const revision = await currentRevision(t.etcd);
      const res = await fetch(
        url(t, '/api/v1/namespaces/k8s-list/configmaps', { resourceVersion: revision }),
      );
      const served = Number(res.headers.get('x-resource-version'));
      expect(t.expectedServedBy).toContain(res.headers.get('x-served-by'));
      const body = await json(res);
      expect(body).toMatchObject({
        kind: 'ConfigMapList',
        apiVersion: 'v1',
        metadata: { resourceVersion: String(served) },
      });
      expect(served).toBeGreaterThanOrEqual(revision);
      expect(body.items).toEqual([
        await expected(t.etcd, cmKey('k8s-list', 'a')),
        await expected(t.etcd, cmKey('k8s-list', 'b')),
        await expected(t.etcd, cmKey('k8s-list', 'c')),
      ]);
    });

    it('serve an rv=0 get from the tier itself (at the edge: the replica)', async () => {
      const t = target();
      const revision = await putObject(t.etcd, cmKey('k8s-any', 'a'), configMap('k8s-any', 'a'));
      await json(
        await fetch(url(t, '/api/v1/namespaces/k8s-any/configmaps/a', { resourceVersion: revision })),
      );
      const res = await fetch(url(t, '/api/v1/namespaces/k8s-any/configmaps/a', { resourceVersion: 0 }));
      expect(res.headers.get('x-served-by')).toBe(t.expectedServedBy[0]);
      expect(await json(res)).toEqual(await expected(t.etcd, cmKey('k8s-any', 'a')));
    });

    it('say NotFound with the Kubernetes message and details, and 404 unknown resources', async () => {
      const t = target();
      const status = await expectStatus(
        await fetch(url(t, '/api/v1/namespaces/k8s-nf/configmaps/nope')),
        404,
        'NotFound',
      );
      expect(status.message).toBe('configmaps "nope" not found');
      expect(status.details).toMatchObject({ name: 'nope', kind: 'configmaps' });
      const unknown = await expectStatus(await fetch(url(t, '/api/v1/gizmos')), 404, 'NotFound');
      expect(unknown.message).toBe('the server could not find the requested resource');
    });

    it('leave out protobuf, encrypted and malformed values whole, and count them', async () => {
      const t = target();
      await putObject(t.etcd, cmKey('k8s-raw', 'ok'), configMap('k8s-raw', 'ok'));
      await put(
        t.etcd,
        cmKey('k8s-raw', 'proto'),
        new Uint8Array([0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0xff, 0xfe]),
      );
      await put(t.etcd, cmKey('k8s-raw', 'secret'), 'k8s:enc:aescbc:v1:key1:c2VjcmV0');
      const revision = await put(t.etcd, cmKey('k8s-raw', 'text'), 'not json');
      const res = await fetch(url(t, '/api/v1/namespaces/k8s-raw/configmaps', { resourceVersion: revision }));
      expect(res.headers.get('x-edgewatch-left-out')).toBe('protobuf=1,encrypted=1,notJson=1');
      expect((await json(res)).items.map((i: Json) => i.metadata.name)).toEqual(['ok']);
      await expectStatus(await fetch(url(t, '/api/v1/namespaces/k8s-raw/configmaps/proto')), 404, 'NotFound');
    });

    it('filter lists by label and field selectors, and refuse bad selectors with 400', async () => {
      const t = target();
      await putObject(
        t.etcd,
        cmKey('k8s-sel', 'a'),
        configMap('k8s-sel', 'a', { app: 'web', tier: 'front' }),
      );
      await putObject(t.etcd, cmKey('k8s-sel', 'b'), configMap('k8s-sel', 'b', { app: 'db' }));
      await putObject(t.etcd, cmKey('k8s-sel', 'c'), configMap('k8s-sel', 'c', { app: 'web' }));
      const revision = await currentRevision(t.etcd);
      const names = async (query: Record<string, string>) =>
        (
          await json(
            await fetch(
              url(t, '/api/v1/namespaces/k8s-sel/configmaps', { resourceVersion: revision, ...query }),
            ),
          )
        ).items.map((i: Json) => i.metadata.name);
      expect(await names({ labelSelector: 'app=web' })).toEqual(['a', 'c']);
      expect(await names({ labelSelector: 'app in (web,db),!tier' })).toEqual(['b', 'c']);
      expect(await names({ labelSelector: 'tier' })).toEqual(['a']);
      expect(await names({ fieldSelector: 'metadata.name!=a' })).toEqual(['b', 'c']);
      await expectStatus(
        await fetch(url(t, '/api/v1/configmaps', { labelSelector: 'app in (' })),
        400,
        'BadRequest',
      );
      const field = await expectStatus(
        await fetch(url(t, '/api/v1/configmaps', { fieldSelector: 'spec.x=1' })),
        400,
        'BadRequest',
      );
      expect(field.message).toBe('field label not supported: spec.x');
    });

    it('page with limit and continue at one revision, losing and repeating nothing', async () => {
      const t = target();
      for (const name of ['a', 'b', 'c', 'd', 'e'])
        await putObject(t.etcd, cmKey('k8s-page', name), configMap('k8s-page', name));
      const first = await json(await fetch(url(t, '/api/v1/namespaces/k8s-page/configmaps', { limit: 2 })));
      const names: string[] = first.items.map((i: Json) => i.metadata.name);
      expect(first.metadata.remainingItemCount).toBe(3);
      let token: string | undefined = first.metadata.continue;
      // A write between pages is not seen: the pages are one snapshot.
      await putObject(t.etcd, cmKey('k8s-page', 'bb'), configMap('k8s-page', 'bb'));
      while (token !== undefined) {
        const page = await json(
          await fetch(url(t, '/api/v1/namespaces/k8s-page/configmaps', { limit: 2, continue: token })),
        );
        expect(page.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
        names.push(...page.items.map((i: Json) => i.metadata.name));
        token = page.metadata.continue;
      }
      expect(names).toEqual(['a', 'b', 'c', 'd', 'e']);
    });

    it('answer a Table whose rows carry PartialObjectMetadata with the namespace', async () => {
      const t = target();
      const revision = await putObject(t.etcd, cmKey('k8s-table', 'a'), configMap('k8s-table', 'a'));
      const res = await fetch(
        url(t, '/api/v1/configmaps', {
          resourceVersion: revision,
          fieldSelector: 'metadata.namespace=k8s-table',
        }),
        {
          headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
        },
      );
      const table = await json(res);
      expect(table).toMatchObject({ kind: 'Table', apiVersion: 'meta.k8s.io/v1' });
      expect(table.columnDefinitions[0]).toMatchObject({ name: 'Name', format: 'name' });
      expect(table.rows).toEqual([
        {
          cells: ['a', expect.any(String)],
          object: {
            kind: 'PartialObjectMetadata',
            apiVersion: 'meta.k8s.io/v1',
            metadata: expect.objectContaining({ name: 'a', namespace: 'k8s-table' }),
          },
        },
      ]);
    });

    it('watch from a list rv: every change in order, DELETED with the last state at the deleting revision', async () => {
      const t = target();
      const ns = 'k8s-watch';
      await putObject(t.etcd, cmKey(ns, 'a'), configMap(ns, 'a', {}, { v: '1' }));
      const list = await json(await fetch(url(t, `/api/v1/namespaces/${ns}/configmaps`)));
      // Headers arrive before any event: the client-node informer counts on it.
      const watch = await openWatch(
        url(t, `/api/v1/namespaces/${ns}/configmaps`, {
          watch: 'true',
          resourceVersion: list.metadata.resourceVersion,
        }),
      );
      try {
        await putObject(t.etcd, cmKey(ns, 'b'), configMap(ns, 'b', {}, { v: '1' }));
        await putObject(t.etcd, cmKey(ns, 'a'), configMap(ns, 'a', {}, { v: '2' }));
        const last = await expected(t.etcd, cmKey(ns, 'a'));
        const deleting = await del(t.etcd, cmKey(ns, 'a'));
        const events = [await nextEvent(watch), await nextEvent(watch), await nextEvent(watch)];
        expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual([
          'ADDED b',
          'MODIFIED a',
          'DELETED a',
        ]);
        expect(events[1]?.object.data).toEqual({ v: '2' });
        expect(events[2]?.object).toEqual({
          ...last,
          metadata: { ...last.metadata, resourceVersion: String(deleting) },
        });
      } finally {
        watch.close();
      }
    });

    it('watch with sendInitialEvents: ADDED for each object, then the annotated BOOKMARK {kind, apiVersion}', async () => {
      const t = target();
      const ns = 'k8s-initial';
      await putObject(t.etcd, cmKey(ns, 'a'), configMap(ns, 'a'));
      await putObject(t.etcd, cmKey(ns, 'b'), configMap(ns, 'b'));
      const watch = await openWatch(
        url(t, `/api/v1/namespaces/${ns}/configmaps`, {
          watch: 'true',
          sendInitialEvents: 'true',
          resourceVersionMatch: 'NotOlderThan',
          allowWatchBookmarks: 'true',
        }),
      );
      try {
        const added = [await nextEvent(watch), await nextEvent(watch)];
        expect(added.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['ADDED a', 'ADDED b']);
        const bookmark = await nextEvent(watch);
        expect(bookmark).toEqual({
          type: 'BOOKMARK',
          object: {
            kind: 'ConfigMap',
            apiVersion: 'v1',
            metadata: {
              resourceVersion: expect.stringMatching(/^[1-9][0-9]*$/),
              annotations: { 'k8s.io/initial-events-end': 'true' },
            },
          },
        });
      } finally {
        watch.close();
      }
    });

    it('watch with a selector: an object leaving the selection is DELETED, one entering is ADDED', async () => {
      const t = target();
      const ns = 'k8s-wsel';
      const revision = await putObject(t.etcd, cmKey(ns, 'a'), configMap(ns, 'a', { app: 'web' }));
      const watch = await openWatch(
        url(t, `/api/v1/namespaces/${ns}/configmaps`, {
          watch: 'true',
          resourceVersion: revision,
          labelSelector: 'app=web',
        }),
      );
      try {
        await putObject(t.etcd, cmKey(ns, 'b'), configMap(ns, 'b', { app: 'db' }));
        const moved = await putObject(t.etcd, cmKey(ns, 'a'), configMap(ns, 'a', { app: 'db' }));
        await putObject(t.etcd, cmKey(ns, 'b'), configMap(ns, 'b', { app: 'web' }));
        const events = [await nextEvent(watch), await nextEvent(watch)];
        expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['DELETED a', 'ADDED b']);
        expect(events[0]?.object.metadata).toMatchObject({
          labels: { app: 'web' },
          resourceVersion: String(moved),
        });
      } finally {
        watch.close();
      }
    });

    it('watch one name with rv=0 (kubectl get NAME -w): a synthetic ADDED first', async () => {
      const t = target();
      const ns = 'k8s-wname';
      await putObject(t.etcd, cmKey(ns, 'a'), configMap(ns, 'a'));
      const revision = await putObject(t.etcd, cmKey(ns, 'b'), configMap(ns, 'b'));
      await json(await fetch(url(t, `/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: revision })));
      const watch = await openWatch(
        url(t, `/api/v1/namespaces/${ns}/configmaps`, {
          watch: 'true',
          resourceVersion: 0,
          fieldSelector: 'metadata.name=b',
        }),
      );
      try {
        const first = await nextEvent(watch);
        expect(`${first.type} ${first.object.metadata.name}`).toBe('ADDED b');
      } finally {
        watch.close();
      }
    });

    it('answer malformed Kubernetes requests with a Status and the right code, never a 5xx', async () => {
      const t = target();
      const cases: [string, number][] = [
        ['/api/v1/namespaces/default/configmaps?resourceVersion=abc', 400],
        ['/api/v1/namespaces/default/configmaps?limit=-1', 400],
        ['/api/v1/namespaces/default/configmaps?continue=garbage', 400],
        ['/api/v1/namespaces/default/configmaps?resourceVersionMatch=Sometimes&resourceVersion=1', 400],
        ['/api/v1/namespaces/default/configmaps?labelSelector=a%3D%3D%3Db', 400],
        ['/api/v1/namespaces/default/configmaps?labelSelector=a&labelSelector=b', 400],
        ['/api/v1/namespaces/default/configmaps?fieldSelector=metadata.uid%3Dx', 400],
        ['/api/v1/namespaces/default/configmaps?watch=maybe', 400],
        ['/api/v1/namespaces/%E0%A4%A/configmaps', 400],
        ['/api/v1/namespaces/a%2Fb/configmaps', 400],
        ['/api/v1/namespaces/default/configmaps/a/status', 404],
        ['/api/v1/namespaces/default/configmaps/a/b/c', 404],
        ['/api/v2/configmaps', 404],
        ['/apis/unknown.example.com/v1/things', 404],
        ['/apis/', 200],
        ['/api/v1/namespaces/default/nosuchresources', 404],
        ['/api/v1/configmaps/has-no-namespace', 404],
      ];
      for (const [path, code] of cases) {
        const res = await fetch(`${t.baseUrl}${path}`);
        const text = await res.text();
        expect(res.status, `${path}: ${text}`).toBe(code);
        if (code !== 200) expect(JSON.parse(text), path).toMatchObject({ kind: 'Status', code });
      }
    });

    it('end a watch from a revision no tier holds with ERROR 410 Expired', async () => {
      const t = target();
      const watch = await openWatch(
        url(t, '/api/v1/configmaps', { watch: 'true', resourceVersion: t.revisionBeforeStart }),
      );
      try {
        const event = await nextEvent(watch);
        expect(event).toMatchObject({
          type: 'ERROR',
          object: { kind: 'Status', code: 410, reason: 'Expired' },
        });
        expect(await watch.next()).toBe(END);
      } finally {
        watch.close();
      }
    });
  });
}
