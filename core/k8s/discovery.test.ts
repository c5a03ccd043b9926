import { describe, expect, it } from 'vitest';
import {
  aggregatedVersion,
  coreDocument,
  groupDocument,
  groupsDocument,
  resourceListDocument,
  versionDocument,
} from './discovery.ts';
import { configMap, stored, storeOf } from './fixtures.ts';
import { deriveResources } from './resources.ts';

const table = deriveResources(
  storeOf([
    configMap('default', 'a'),
    stored('/registry/namespaces/default', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'default' },
    }),
    stored('/registry/example.com/widgets/default/w', {
      apiVersion: 'example.com/v1',
      kind: 'Widget',
      metadata: { name: 'w', namespace: 'default' },
    }),
  ]),
);
const KUBECTL_ACCEPT =
  'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json';

describe('discovery', () => {
  it('answers the legacy documents kubectl falls back to', () => {
    expect(coreDocument(table, 'application/json').body).toMatchObject({
      kind: 'APIVersions',
      versions: ['v1'],
    });
    expect(resourceListDocument(table, '', 'v1')?.body).toMatchObject({
      kind: 'APIResourceList',
      groupVersion: 'v1',
      resources: [
        {
          name: 'configmaps',
          namespaced: true,
          kind: 'ConfigMap',
          verbs: ['get', 'list', 'watch'],
          shortNames: ['cm'],
        },
        { name: 'namespaces', namespaced: false, kind: 'Namespace' },
      ],
    });
    expect(groupsDocument(table, null).body).toMatchObject({
      kind: 'APIGroupList',
      groups: [{ name: 'example.com', preferredVersion: { groupVersion: 'example.com/v1', version: 'v1' } }],
    });
    expect(groupDocument(table, 'example.com')?.body).toMatchObject({
      kind: 'APIGroup',
      name: 'example.com',
    });
    expect(groupDocument(table, 'nope.io')).toBeUndefined();
    expect(resourceListDocument(table, 'nope.io', 'v1')).toBeUndefined();
  });

  it('answers aggregated discovery with the content type that names it, as client-go decides by it', () => {
    const core = coreDocument(table, KUBECTL_ACCEPT);
    expect(core.contentType).toBe('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList');
    expect(core.body).toMatchObject({
      kind: 'APIGroupDiscoveryList',
      apiVersion: 'apidiscovery.k8s.io/v2',
      items: [
        {
          versions: [
            {
              version: 'v1',
              resources: [
                {
                  resource: 'configmaps',
                  scope: 'Namespaced',
                  responseKind: { group: '', version: 'v1', kind: 'ConfigMap' },
                },
                { resource: 'namespaces', scope: 'Cluster' },
              ],
            },
          ],
        },
      ],
    });
    const groups = groupsDocument(
      table,
      'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList',
    );
    expect(groups.contentType).toContain('v=v2beta1');
    expect(groups.body).toMatchObject({ items: [{ metadata: { name: 'example.com' } }] });
  });

  it('reads the aggregated version from Accept and ignores other types', () => {
    expect(aggregatedVersion(KUBECTL_ACCEPT)).toBe('v2');
    expect(aggregatedVersion('application/json')).toBeUndefined();
    expect(
      aggregatedVersion(
        'application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
      ),
    ).toBeUndefined();
  });

  it('names a Kubernetes release in /version, which kubectl reads to choose its binary', () => {
    expect(versionDocument().body).toMatchObject({ major: '1', minor: '32', gitVersion: 'v1.32.0' });
  });
});
