/**
 * An unchanged @kubernetes/client-node 1.4 informer against the edge and the relay, over one
 * stack: it lists every object, then sees the adds, updates and deletes made through etcd, in
 * order; and when a restarted relay can no longer serve its watch (etcd compacted the history it
 * would resume from), the 410 it gets ends in a relist that brings it to etcd's state.
 */
import { CoreV1Api, KubeConfig, makeInformer, type V1ConfigMap } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { configMapObject, namespaceObject, putObjects } from '../scripts/lib/k8s-demo.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { type GateProxy, startGateProxy } from './k8s/gate-proxy.ts';

let stack: Stack | undefined;
let proxy: GateProxy | undefined;
const current = (): Stack => {
  if (!stack) throw new Error('the stack did not start (see beforeAll)');
  return stack;
};

beforeAll(async () => {
  stack = await startStack();
  proxy = await startGateProxy(stack.relay.url);
});

afterAll(async () => {
  await proxy?.stop();
  await stack?.stop();
});

function kubeConfig(server: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'edgewatch', server, skipTLSVerify: true }],
    users: [{ name: 'reader' }],
    contexts: [{ name: 'edgewatch', cluster: 'edgewatch', user: 'reader' }],
    currentContext: 'edgewatch',
  });
  return kc;
}

/** An informer over one namespace's ConfigMaps that records what it is told, in order. */
function informerOf(server: string, namespace: string) {
  const kc = kubeConfig(server);
  const api = kc.makeApiClient(CoreV1Api);
  const events: string[] = [];
  const errors: unknown[] = [];
  let lists = 0;
  const informer = makeInformer<V1ConfigMap>(kc, `/api/v1/namespaces/${namespace}/configmaps`, () => {
    lists++;
    return api.listNamespacedConfigMap({ namespace });
  });
  const record = (type: string) => (cm: V1ConfigMap) => {
    events.push(`${type} ${cm.metadata?.name} ${JSON.stringify(cm.data ?? {})}`);
  };
  informer.on('add', record('add'));
  informer.on('update', record('update'));
  informer.on('delete', record('delete'));
  informer.on('error', (error) => errors.push(error));
  return {
    informer,
    events,
    errors,
    lists: () => lists,
    names: () =>
      informer
        .list(namespace)
        .map((cm) => `${cm.metadata?.name}=${JSON.stringify(cm.data ?? {})}`)
        .sort(),
  };
}

/** Waits for what the informer has been told (vi.waitFor polls; it never sleeps a fixed time). */
const until = (what: string, ok: () => boolean) =>
  vi.waitFor(
    () => {
      if (!ok()) throw new Error(`the informer never ${what}`);
    },
    { timeout: 15_000, interval: 20 },
  );

describe('a client-node informer', () => {
  it('at the edge: lists every object, then sees adds, updates and deletes made in etcd, in order', async () => {
    const s = current();
    const url = s.worker?.url;
    if (url === undefined) throw new Error('no worker');
    const client = s.client;
    await putObjects(client, [
      namespaceObject('inf'),
      configMapObject('inf', 'a', {}, { v: '1' }),
      configMapObject('inf', 'b', {}, { v: '1' }),
      configMapObject('inf', 'c', {}, { v: '1' }),
    ]);
    const { informer, events, errors } = informerOf(url, 'inf');
    await informer.start();
    try {
      await until('listed', () => events.length === 3);
      expect(events).toEqual(['add a {"v":"1"}', 'add b {"v":"1"}', 'add c {"v":"1"}']);
      await putObjects(client, [
        configMapObject('inf', 'd', {}, { v: '1' }),
        configMapObject('inf', 'a', {}, { v: '2' }),
      ]);
      await client.delete().key('/registry/configmaps/inf/b').exec();
      await putObjects(client, [configMapObject('inf', 'd', {}, { v: '2' })]);
      await until('every change', () => events.length === 7);
      expect(events.slice(3)).toEqual([
        'add d {"v":"1"}',
        'update a {"v":"2"}',
        'delete b {"v":"1"}',
        'update d {"v":"2"}',
      ]);
      expect(errors).toEqual([]);
    } finally {
      await informer.stop();
    }
  });

  it('at the relay: a 410 after a relay restart over compacted history ends in a relist to etcd state', async () => {
    const s = current();
    const gate = proxy;
    if (gate === undefined) throw new Error('no proxy');
    const client = s.client;
    await putObjects(client, [
      namespaceObject('relist'),
      configMapObject('relist', 'keep', {}, { v: '1' }),
      configMapObject('relist', 'gone', {}, { v: '1' }),
    ]);
    const watched = informerOf(gate.url, 'relist');
    await watched.informer.start();
    try {
      await until('listed', () => watched.events.length === 2);
      // The informer re-watches from its last rv whenever a stream ends; hold that request.
      gate.close();
      await s.stopRelay();
      await until('the informer to re-watch', () => gate.waiting === 1);
      await putObjects(client, [
        configMapObject('relist', 'keep', {}, { v: '2' }),
        configMapObject('relist', 'new', {}, { v: '1' }),
      ]);
      await client.delete().key('/registry/configmaps/relist/gone').exec();
      const head = await putObjects(client, [namespaceObject('relist-marker')]);
      await client.kv.compact({ revision: head, physical: true });
      await s.restartRelay();
      gate.open();
      await until(
        'relisted to etcd state',
        () => watched.names().join(',') === 'keep={"v":"2"},new={"v":"1"}',
      );
      expect(watched.lists()).toBe(2);
      expect(watched.events.slice(2).sort()).toEqual([
        'add new {"v":"1"}',
        'delete gone {"v":"1"}',
        'update keep {"v":"2"}',
      ]);
      expect(watched.errors).toEqual([]);
      // And it keeps watching from the relisted revision.
      await putObjects(client, [configMapObject('relist', 'after', {}, { v: '1' })]);
      await until('the change after the relist', () => watched.events.includes('add after {"v":"1"}'));
    } finally {
      await watched.informer.stop();
    }
  });
});
