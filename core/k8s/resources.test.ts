import { describe, expect, it } from 'vitest';
import { configMap, stored, storeOf } from './fixtures.ts';
import {
  deriveResources,
  isObjectKey,
  parseExplicitResources,
  parseResourceFlag,
  resolveResource,
  sortVersions,
  storagePathOf,
} from './resources.ts';

const meta = (name: string, namespace?: string) => ({ name, ...(namespace ? { namespace } : {}) });

const cluster = () =>
  storeOf([
    configMap('default', 'app'),
    configMap('kube-system', 'coredns'),
    stored('/registry/namespaces/default', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: meta('default'),
    }),
    stored('/registry/services/specs/default/kubernetes', {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: meta('kubernetes', 'default'),
    }),
    stored('/registry/services/endpoints/default/kubernetes', {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: meta('kubernetes', 'default'),
    }),
    stored('/registry/minions/node-1', { apiVersion: 'v1', kind: 'Node', metadata: meta('node-1') }),
    stored('/registry/deployments/default/web', {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: meta('web', 'default'),
    }),
    stored('/registry/example.com/widgets/default/w1', {
      apiVersion: 'example.com/v1',
      kind: 'Widget',
      metadata: meta('w1', 'default'),
    }),
    stored('/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com', {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: meta('widgets.example.com'),
      spec: {
        group: 'example.com',
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', shortNames: ['wd'] },
        versions: [
          { name: 'v1', served: true, storage: true },
          { name: 'v1beta1', served: true, storage: false },
          { name: 'v1alpha1', served: false, storage: false },
        ],
      },
    }),
    stored('/registry/ranges/serviceips', { apiVersion: 'v1', kind: 'RangeAllocation', metadata: meta('') }),
    stored('/registry/secrets/default/s', new Uint8Array([0x6b, 0x38, 0x73, 0x00, 0x0a, 0xff, 0xfe])),
    stored('/registry/seed/a', 'a1'),
  ]);

describe('the resource table derived from the data', () => {
  const table = deriveResources(cluster());
  const names = table.resources.map((r) => `${r.group}/${r.resource}`);

  it('finds core, irregular, built-in group and custom resources from keys and values alone', () => {
    expect(names).toEqual([
      '/configmaps',
      '/endpoints',
      '/namespaces',
      '/nodes',
      '/services',
      'apiextensions.k8s.io/customresourcedefinitions',
      'apps/deployments',
      'example.com/widgets',
    ]);
  });

  it('takes the scope from the key depth and the prefix from the layout', () => {
    expect(table.lookup('', 'v1', 'configmaps')).toMatchObject({
      kind: 'ConfigMap',
      namespaced: true,
      keyPrefix: '/registry/configmaps/',
      shortNames: ['cm'],
    });
    expect(table.lookup('', 'v1', 'services')).toMatchObject({
      keyPrefix: '/registry/services/specs/',
      kind: 'Service',
    });
    expect(table.lookup('', 'v1', 'nodes')).toMatchObject({
      keyPrefix: '/registry/minions/',
      namespaced: false,
    });
    expect(table.lookup('', 'v1', 'namespaces')).toMatchObject({ namespaced: false, shortNames: ['ns'] });
    expect(table.lookup('apps', 'v1', 'deployments')).toMatchObject({ keyPrefix: '/registry/deployments/' });
  });

  it('uses a CustomResourceDefinition for short names, singular and served versions', () => {
    expect(table.lookup('example.com', 'v1', 'widgets')).toMatchObject({
      versions: ['v1', 'v1beta1'],
      shortNames: ['wd'],
      singular: 'widget',
      keyPrefix: '/registry/example.com/widgets/',
    });
    expect(table.lookup('example.com', 'v1alpha1', 'widgets')).toBeUndefined();
    expect(table.groups().find((g) => g.name === 'example.com')?.versions).toEqual(['v1', 'v1beta1']);
  });

  it('serves no resource whose values are all protobuf, ranges, or plain strings', () => {
    expect(names).not.toContain('/secrets');
    expect(names).not.toContain('/ranges');
    expect(names).not.toContain('/seed');
  });

  it('still resolves an empty or undiscovered built-in from the catalogue, never an unknown one', () => {
    expect(resolveResource(table, '', 'v1', 'secrets')).toMatchObject({
      keyPrefix: '/registry/secrets/',
      kind: 'Secret',
    });
    expect(resolveResource(table, '', 'v1', 'gadgets')).toBeUndefined();
    expect(resolveResource(table, 'apps', 'v1beta9', 'deployments')).toBeUndefined();
  });

  it('lets an explicit table add a resource and override short names and scope', () => {
    const explicit = parseExplicitResources(
      JSON.stringify({
        resources: [
          { group: '', resource: 'secrets' },
          { group: 'example.com', resource: 'widgets', shortNames: ['w'] },
          { group: 'other.io', resource: 'things', version: 'v2', kind: 'Thing', namespaced: false },
        ],
      }),
    );
    const withExplicit = deriveResources(cluster(), '/registry/', explicit);
    expect(withExplicit.lookup('', 'v1', 'secrets')).toMatchObject({ keyPrefix: '/registry/secrets/' });
    expect(withExplicit.lookup('example.com', 'v1', 'widgets')?.shortNames).toEqual(['w']);
    expect(withExplicit.lookup('other.io', 'v2', 'things')).toMatchObject({
      keyPrefix: '/registry/other.io/things/',
      namespaced: false,
    });
  });

  it('refuses an explicit entry it cannot complete, and malformed files', () => {
    const bare = parseExplicitResources('{"resources":[{"group":"x.io","resource":"things"}]}');
    expect(() => deriveResources(cluster(), '/registry/', bare)).toThrow(/kind, version and namespaced/);
    expect(() => parseExplicitResources('[]')).toThrow(/resources/);
    expect(() => parseExplicitResources('{"resources":[{"resource":"Bad Name"}]}')).toThrow(/resource name/);
    expect(() => parseExplicitResources('{"resources":[{"resource":"a","namespaced":"yes"}]}')).toThrow(
      /namespaced/,
    );
  });
});

describe('storage paths', () => {
  it('read a resource prefix from a key, naming a group only for dotted segments', () => {
    expect(storagePathOf('/registry/pods/ns/p', '/registry/')).toEqual({
      keyPrefix: '/registry/pods/',
      group: '',
      resource: 'pods',
    });
    expect(storagePathOf('/registry/foo.io/bars/b', '/registry/')).toEqual({
      keyPrefix: '/registry/foo.io/bars/',
      group: 'foo.io',
      resource: 'bars',
    });
    expect(storagePathOf('/registry/services/other/x', '/registry/')).toEqual({
      skip: '/registry/services/other/',
    });
    expect(storagePathOf('/registry/lonely', '/registry/')).toEqual({ skip: undefined });
    expect(storagePathOf('/elsewhere/a/b', '/registry/')).toBeUndefined();
  });

  it('order versions as Kubernetes prefers them', () => {
    expect(sortVersions(['v1beta1', 'v1alpha1', 'v2', 'v1', 'v2beta2'])).toEqual([
      'v2',
      'v1',
      'v2beta2',
      'v1beta1',
      'v1alpha1',
    ]);
  });
});

describe('resources given as flags', () => {
  it('read group, version, resource, kind, scope and short names', () => {
    expect(parseResourceFlag('example.com/v1/widgets=Widget,namespaced,short=wd+wg')).toEqual({
      group: 'example.com',
      resource: 'widgets',
      version: 'v1',
      kind: 'Widget',
      namespaced: true,
      shortNames: ['wd', 'wg'],
    });
    expect(parseResourceFlag('v1/configmaps,cluster,prefix=/registry/cms/')).toEqual({
      group: '',
      resource: 'configmaps',
      version: 'v1',
      namespaced: false,
      keyPrefix: '/registry/cms/',
    });
  });

  it('refuse what they cannot read', () => {
    expect(() => parseResourceFlag('widgets')).toThrow(/expected \[group\/\]version\/resource/);
    expect(() => parseResourceFlag('v1/widgets,sideways')).toThrow(/unknown option/);
  });
});

describe('object keys', () => {
  const cm = { keyPrefix: '/registry/configmaps/', namespaced: true } as const;
  const ns = { keyPrefix: '/registry/namespaces/', namespaced: false } as const;
  const resource = (r: { keyPrefix: string; namespaced: boolean }) => ({
    group: '',
    versions: ['v1'],
    resource: 'x',
    kind: 'X',
    singular: 'x',
    shortNames: [],
    ...r,
  });

  it('are <prefix><ns>/<name> for namespaced resources and <prefix><name> for cluster ones', () => {
    expect(isObjectKey('/registry/configmaps/default/a', resource(cm))).toBe(true);
    for (const key of [
      '/registry/configmaps/default',
      '/registry/configmaps/default/',
      '/registry/configmaps//a',
      '/registry/configmaps/a/b/c',
      '/registry/configmapsx/a/b',
    ]) {
      expect(isObjectKey(key, resource(cm)), key).toBe(false);
    }
    expect(isObjectKey('/registry/namespaces/default', resource(ns))).toBe(true);
    expect(isObjectKey('/registry/namespaces/default/x', resource(ns))).toBe(false);
    expect(isObjectKey('/registry/namespaces/', resource(ns))).toBe(false);
  });
});
