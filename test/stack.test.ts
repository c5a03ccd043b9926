import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Stack, startStack } from './helpers/stack.ts';

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
});
