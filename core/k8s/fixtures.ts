/** Test data for the core/k8s unit tests: stored objects laid out as the API server stores them. */
import { makeObject } from '../object.ts';
import { KeyStore } from '../store.ts';
import type { KvObject } from '../types.ts';

const encoder = new TextEncoder();
let revision = 10;

/** A stored Kubernetes object (the value is its JSON) at a fresh revision. */
export function stored(key: string, object: unknown, createRevision?: number): KvObject {
  revision++;
  const value =
    typeof object === 'string'
      ? encoder.encode(object)
      : object instanceof Uint8Array
        ? object
        : encoder.encode(JSON.stringify(object));
  return makeObject({
    key,
    value,
    createRevision: createRevision ?? revision,
    modRevision: revision,
    version: 1,
  });
}

export function configMap(namespace: string, name: string, labels: Record<string, string> = {}): KvObject {
  return stored(`/registry/configmaps/${namespace}/${name}`, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels, uid: `uid-${name}`, creationTimestamp: '2026-01-01T00:00:00Z' },
    data: { k: name },
  });
}

export function storeOf(objects: KvObject[], rev = 100): KeyStore {
  return new KeyStore(objects, rev);
}
