/**
 * kubectl, unchanged, against the edge (the Worker in workerd) and the relay, over one stack: a
 * real etcd holding JSON objects at the Kubernetes layout. Every case runs at both tiers. There is
 * no fallback when kubectl is missing: `beforeAll` fails and so does every test. The same stack
 * also shows that values which are not JSON objects are left out of lists and counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  configMapObject,
  namespaceObject,
  putObjects,
  WIDGET_CRD,
  widgetObject,
} from '../scripts/lib/k8s-demo.ts';
import { parseExposition } from './helpers/prometheus.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { kubectlFor, requireKubectl } from './k8s/kubectl.ts';

let stack: Stack | undefined;
const current = (): Stack => {
  if (!stack) throw new Error('the stack did not start (see beforeAll)');
  return stack;
};

beforeAll(async () => {
  await requireKubectl();
  stack = await startStack();
  await putObjects(stack.client, [
    namespaceObject('shop'),
    namespaceObject('ops'),
    configMapObject('shop', 'cart', { app: 'web' }),
    configMapObject('shop', 'db', { app: 'db' }),
    configMapObject('shop', 'front', { app: 'web' }),
    configMapObject('ops', 'alerts', { app: 'mon' }),
    WIDGET_CRD,
    widgetObject('shop', 'gear', 7),
  ]);
});

afterAll(async () => {
  await stack?.stop();
});

/** Data rows of kubectl's table output, split on whitespace. */
const rows = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/));

for (const tier of ['edge', 'relay'] as const) {
  describe(`kubectl get against the ${tier}`, () => {
    const kubectl = () => {
      const s = current();
      const url = tier === 'edge' ? s.worker?.url : s.relay.url;
      if (url === undefined) throw new Error('no worker');
      return kubectlFor(url);
    };
    let k: ReturnType<typeof kubectlFor>;
    beforeAll(() => {
      k = kubectl();
    });

    it('lists the ConfigMaps of one namespace with -n', async () => {
      const res = await k.run(['get', 'configmaps', '-n', 'shop']);
      expect(res.stderr).toBe('');
      expect(res.stdout.split('\n')[0]).toMatch(/^NAME\s+AGE/);
      expect(rows(res.stdout).map((r) => r[0])).toEqual(['cart', 'db', 'front']);
    });

    it('lists every namespace with -A, with a NAMESPACE column', async () => {
      const res = await k.run(['get', 'cm', '-A']);
      expect(res.stdout.split('\n')[0]).toMatch(/^NAMESPACE\s+NAME\s+AGE/);
      expect(rows(res.stdout).map((r) => `${r[0]}/${r[1]}`)).toEqual([
        'ops/alerts',
        'shop/cart',
        'shop/db',
        'shop/front',
      ]);
    });

    it('prints one object with -o json and -o yaml, resourceVersion being its modRevision', async () => {
      const etcd = await current().client.get('/registry/configmaps/shop/cart').exec();
      const modRevision = String(etcd.kvs[0]?.mod_revision);
      const json = await k.run(['get', 'cm', 'cart', '-n', 'shop', '-o', 'json']);
      expect(JSON.parse(json.stdout)).toMatchObject({
        kind: 'ConfigMap',
        metadata: { name: 'cart', namespace: 'shop', resourceVersion: modRevision, labels: { app: 'web' } },
      });
      const yaml = await k.run(['get', 'cm', 'cart', '-n', 'shop', '-o', 'yaml']);
      expect(yaml.stdout).toContain('kind: ConfigMap');
      expect(yaml.stdout).toContain(`resourceVersion: "${modRevision}"`);
    });

    it('filters with -l and --field-selector', async () => {
      const labelled = await k.run(['get', 'cm', '-A', '-l', 'app=web']);
      expect(rows(labelled.stdout).map((r) => r[1])).toEqual(['cart', 'front']);
      const notIn = await k.run(['get', 'cm', '-A', '-l', 'app notin (web,db)']);
      expect(rows(notIn.stdout).map((r) => r[1])).toEqual(['alerts']);
      const named = await k.run(['get', 'cm', '-A', '--field-selector', 'metadata.name=db']);
      expect(rows(named.stdout).map((r) => `${r[0]}/${r[1]}`)).toEqual(['shop/db']);
    });

    it('pages with --chunk-size, one request per page, and loses nothing', async () => {
      const res = await k.run(['get', 'cm', '-A', '--chunk-size=1', '-v=6']);
      expect(rows(res.stdout.trim()).map((r) => r[1])).toEqual(['alerts', 'cart', 'db', 'front']);
      const pages = res.stderr.split('\n').filter((l) => /GET .*\/api\/v1\/configmaps\?.*limit=1/.test(l));
      expect(pages.length).toBe(4);
      expect(pages.filter((l) => l.includes('continue=')).length).toBe(3);
    });

    it('reads a custom resource by its plural and by the short name its CRD gives', async () => {
      const plural = await k.run(['get', 'widgets', '-n', 'shop', '-o', 'json']);
      expect(JSON.parse(plural.stdout).items.map((w: { spec: { size: number } }) => w.spec.size)).toEqual([
        7,
      ]);
      const short = await k.run(['get', 'wd', '-n', 'shop']);
      expect(rows(short.stdout).map((r) => r[0])).toEqual(['gear']);
    });

    it('describes an object, with its (here: no) Events found by involvedObject field selectors', async () => {
      const res = await k.run(['describe', 'cm', 'cart', '-n', 'shop']);
      expect(res.stderr).toBe('');
      expect(res.stdout).toMatch(/^Name:\s+cart$/m);
      expect(res.stdout).toMatch(/^Namespace:\s+shop$/m);
      expect(res.stdout).toMatch(/^Events:\s+<none>$/m);
    });

    it('reports NotFound as the API server words it', async () => {
      const res = await k.run(['get', 'cm', 'missing', '-n', 'shop']);
      expect(res.code).toBe(1);
      expect(res.stderr.trim()).toBe('Error from server (NotFound): configmaps "missing" not found');
      const ns = await k.run(['get', 'cm', 'missing', '-n', 'nowhere']);
      expect(ns.stderr).toContain('NotFound');
    });

    it('watches with -w: sees an object added and deleted', async () => {
      const ns = `w-${tier}`;
      const client = current().client;
      await putObjects(client, [namespaceObject(ns), configMapObject(ns, 'first')]);
      const all = k.watch(['get', 'cm', '-n', ns, '-w']);
      const one = k.watch(['get', 'cm', 'first', '-n', ns, '-w']);
      try {
        await all.next((l) => l.startsWith('first '), 'the listed object');
        // `get NAME -w` watches with fieldSelector=metadata.name and rv=0: a synthetic ADDED first.
        await one.next((l) => l.startsWith('first '), 'the named object');
        await putObjects(client, [configMapObject(ns, 'second')]);
        await all.next((l) => l.startsWith('second '), 'the added object');
        await client.delete().key(`/registry/configmaps/${ns}/second`).exec();
        await all.next((l) => l.startsWith('second '), 'the deleted object');
        await putObjects(client, [configMapObject(ns, 'first', { changed: 'yes' })]);
        await one.next((l) => l.startsWith('first '), 'the named object changed');
        expect(one.lines.filter((l) => l.startsWith('second'))).toEqual([]);
      } finally {
        await Promise.all([all.stop(), one.stop()]);
        // The other tier's -A cases must not see this test's objects.
        await client.delete().prefix(`/registry/configmaps/${ns}/`).exec();
      }
    });
  });
}

describe('values that are not JSON Kubernetes objects', () => {
  it('are left out of a list sent again from kept bytes too', async () => {
    const s = current();
    const many = Array.from({ length: 70 }, (_, i) =>
      configMapObject('rawbig', `cm-${String(i).padStart(2, '0')}`),
    );
    await putObjects(s.client, many);
    await s.client
      .put('/registry/configmaps/rawbig/zz-proto')
      .value(Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x01]));
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${s.relay.url}/api/v1/namespaces/rawbig/configmaps?resourceVersion=0`);
      expect(((await res.json()) as { items: unknown[] }).items).toHaveLength(70);
      expect(res.headers.get('x-edgewatch-left-out')).toBe('protobuf=1');
    }
  });

  it('are left out of lists and counted in edgewatch_k8s_left_out_total at both tiers', async () => {
    const s = current();
    const edge = s.worker?.url;
    if (edge === undefined) throw new Error('no worker');
    await s.client
      .put('/registry/configmaps/raw/proto')
      .value(Buffer.from([0x6b, 0x38, 0x73, 0x00, 0x0a, 0x02, 0xff]));
    const revision = Number(
      (await s.client.put('/registry/configmaps/raw/sealed').value('k8s:enc:kms:v2:x').exec()).header
        .revision,
    );
    const scrape = async (url: string) => parseExposition(await (await fetch(url)).text());
    // The replica serves rv=0 itself once it holds the writes (a forwarded read would count at the relay).
    await expect
      .poll(
        async () =>
          ((await (await fetch(`${edge}/_replica/status/registry/`)).json()) as { revision: number })
            .revision,
        {
          timeout: 10_000,
        },
      )
      .toBeGreaterThanOrEqual(revision);
    for (const [tier, base, metrics] of [
      ['relay', s.relay.url, `${s.relay.url}/metrics`],
      ['edge', edge, `${edge}/_replica/metrics/registry/`],
    ] as const) {
      const before = await scrape(metrics);
      const res = await fetch(
        `${base}/api/v1/namespaces/raw/configmaps?resourceVersion=${tier === 'edge' ? 0 : revision}`,
      );
      expect(res.headers.get('x-served-by')).toBe(tier);
      expect(((await res.json()) as { items: unknown[] }).items).toEqual([]);
      expect(res.headers.get('x-edgewatch-left-out')).toBe('protobuf=1,encrypted=1');
      const after = await scrape(metrics);
      for (const reason of ['protobuf', 'encrypted']) {
        const name = 'edgewatch_k8s_left_out_total';
        expect(
          after.valueOr0(name, { reason }) - before.valueOr0(name, { reason }),
          `${metrics} ${reason}`,
        ).toBe(1);
      }
    }
  });
});
