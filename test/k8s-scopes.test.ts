/**
 * Tokens and scopes on the Kubernetes-shaped endpoints, at both tiers: a token's key-prefix
 * scopes map onto resources and namespaces (`/registry/configmaps/shop/` = the ConfigMaps of
 * namespace shop), checked on the key or prefix each request reads, as for `/v1`. Discovery
 * needs a valid token of any scope (Kubernetes lets every authenticated user read it);
 * `/version` needs none (kubectl's version dispatcher calls it first). kubectl itself is not
 * used here: it sends `--token` only to an https:// server, and these tiers run plain HTTP.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../core/sha256.ts';
import { configMapObject, namespaceObject, putObjects } from '../scripts/lib/k8s-demo.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const SHOP_TOKEN = `shop-${randomBytes(16).toString('hex')}`;
let stack: Stack | undefined;

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-k8s-tokens-'));
  const tokensFile = path.join(dir, 'tokens.json');
  writeFileSync(
    tokensFile,
    JSON.stringify({
      tokens: [
        { name: 'shop-reader', sha256: sha256Hex(SHOP_TOKEN), scopes: ['/registry/configmaps/shop/'] },
      ],
    }),
  );
  stack = await startStack({ relayArgs: ['--tokens-file', tokensFile] });
  await putObjects(stack.client, [
    namespaceObject('shop'),
    configMapObject('shop', 'cart'),
    configMapObject('ops', 'alerts'),
  ]);
});

afterAll(async () => {
  await stack?.stop();
});

const bearer = { Authorization: `Bearer ${SHOP_TOKEN}` };

for (const tier of ['edge', 'relay'] as const) {
  describe(`Kubernetes reads with tokens at the ${tier}`, () => {
    const base = () => {
      const url = tier === 'edge' ? stack?.worker?.url : stack?.relay.url;
      if (url === undefined) throw new Error('the stack did not start');
      return url;
    };
    const get = (p: string, headers: Record<string, string> = bearer) => fetch(`${base()}${p}`, { headers });

    it('refuse every read and discovery without a token (401), but answer /version', async () => {
      // The edge answers once the relay has sent it the tokens.
      await expect
        .poll(async () => (await get('/api/v1/namespaces/shop/configmaps')).status, { timeout: 10_000 })
        .toBe(200);
      expect((await get('/api/v1/namespaces/shop/configmaps', {})).status).toBe(401);
      expect((await get('/api', {})).status).toBe(401);
      expect((await get('/version', {})).status).toBe(200);
    });

    it('map the scope onto the namespace: its list is served, all namespaces and others are 403', async () => {
      const list = (await (await get('/api/v1/namespaces/shop/configmaps')).json()) as {
        items: { metadata: { name: string } }[];
      };
      expect(list.items.map((i) => i.metadata.name)).toEqual(['cart']);
      const all = await get('/api/v1/configmaps');
      expect(all.status).toBe(403);
      expect(await all.json()).toMatchObject({ kind: 'Status', reason: 'Forbidden' });
      expect((await get('/api/v1/namespaces/ops/configmaps')).status).toBe(403);
      expect((await get('/api/v1/namespaces/shop')).status).toBe(403);
      expect((await get('/api/v1/namespaces/shop/configmaps?watch=true&resourceVersion=0')).status).toBe(200);
      expect((await get('/api/v1')).status).toBe(200);
    });
  });
}
