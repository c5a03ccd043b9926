import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack, TEST_SECRET } from './helpers/stack.ts';
import { startWorker } from './helpers/worker.ts';

describe('the local stack', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('answers /health on etcd, /healthz on the relay and on the edge worker', async () => {
    const etcd = await fetch(`${stack.etcd.endpoint}/health`);
    expect(await etcd.json()).toMatchObject({ health: 'true' });
    const relay = await fetch(`${stack.relay.url}/healthz`);
    expect(relay.status).toBe(200);
    const edge = await fetch(`${stack.worker?.url}/healthz`);
    expect(edge.status).toBe(200);
  });

  it('has a real etcd underneath that takes writes', async () => {
    await stack.client.put('/registry/stack-test').value('hello');
    expect(await stack.client.get('/registry/stack-test').string()).toBe('hello');
  });

  it("reports each cached prefix's revision and history window at /_relay/status", async () => {
    const put = await stack.client.put('/registry/status-test').value('v').exec();
    const revision = Number(put.header.revision);
    await stack.relay.caches.get('/registry/')?.cache.waitFor(revision, 5_000);
    const res = await fetch(`${stack.relay.url}/_relay/status`);
    const body = (await res.json()) as {
      prefixes: { prefix: string; revision: number; historyStart: number }[];
    };
    const registry = body.prefixes.find((p) => p.prefix === '/registry/');
    expect(registry?.revision).toBeGreaterThanOrEqual(revision);
    expect(registry?.historyStart).toBeLessThanOrEqual(revision);
  });

  it('refuses to serve with a bad setting, naming it, even at /healthz', async () => {
    const worker = await startWorker({
      relayUrl: stack.relay.url,
      replicationSecret: TEST_SECRET,
      vars: { EDGE_WAIT_MS: 'abc' },
    });
    try {
      for (const path of ['/healthz', '/v1/kv/registry/a?resourceVersion=0']) {
        const res = await fetch(`${worker.url}${path}`);
        expect(res.status).toBe(503);
        const status = (await res.json()) as { message: string };
        expect(status.message).toContain('EDGE_WAIT_MS must be a whole number');
      }
    } finally {
      await worker.stop();
    }
  });
});
