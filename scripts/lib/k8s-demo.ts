/**
 * Demo Kubernetes objects at the Kubernetes etcd layout, as JSON (what `npm start` seeds and the
 * kubectl and informer tests start from): a Namespace, a few ConfigMaps with labels, one custom
 * resource and its CustomResourceDefinition (which gives kubectl the short name `wd`).
 */
import type { Etcd3 } from 'etcd3';

export interface DemoObject {
  readonly key: string;
  readonly object: Record<string, unknown>;
}

const CREATED = '2026-01-01T00:00:00Z';

export function namespaceObject(name: string): DemoObject {
  return {
    key: `/registry/namespaces/${name}`,
    object: {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name, uid: `ns-${name}`, creationTimestamp: CREATED },
    },
  };
}

export function configMapObject(
  namespace: string,
  name: string,
  labels: Record<string, string> = {},
  data: Record<string, string> = {},
): DemoObject {
  return {
    key: `/registry/configmaps/${namespace}/${name}`,
    object: {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace, uid: `cm-${namespace}-${name}`, labels, creationTimestamp: CREATED },
      data,
    },
  };
}

export function widgetObject(namespace: string, name: string, size: number): DemoObject {
  return {
    key: `/registry/example.com/widgets/${namespace}/${name}`,
    object: {
      apiVersion: 'example.com/v1',
      kind: 'Widget',
      metadata: { name, namespace, uid: `wd-${namespace}-${name}`, creationTimestamp: CREATED },
      spec: { size },
    },
  };
}

export const WIDGET_CRD: DemoObject = {
  key: '/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com',
  object: {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: 'widgets.example.com', uid: 'crd-widgets', creationTimestamp: CREATED },
    spec: {
      group: 'example.com',
      scope: 'Namespaced',
      names: { plural: 'widgets', singular: 'widget', kind: 'Widget', shortNames: ['wd'] },
      versions: [{ name: 'v1', served: true, storage: true }],
    },
  },
};

/** What `npm start` seeds: namespaces, three ConfigMaps, a Widget and its CRD. */
export function demoObjects(): DemoObject[] {
  return [
    namespaceObject('default'),
    namespaceObject('kube-system'),
    configMapObject(
      'default',
      'app',
      { app: 'web', tier: 'frontend' },
      { replicas: '3', image: 'nginx:1.27' },
    ),
    configMapObject('default', 'feature-flags', { app: 'web' }, { newCheckout: 'true' }),
    configMapObject('kube-system', 'coredns', { app: 'dns' }, { ttl: '30' }),
    WIDGET_CRD,
    widgetObject('default', 'sprocket', 3),
  ];
}

/** Writes `objects` to etcd, one put each; returns the revision of the last. */
export async function putObjects(client: Etcd3, objects: readonly DemoObject[]): Promise<number> {
  let revision = 0;
  for (const { key, object } of objects) {
    const res = await client.put(key).value(JSON.stringify(object)).exec();
    revision = Number(res.header.revision);
  }
  return revision;
}
