/**
 * Kubernetes-shaped reads against their `/v1` equivalents, in one run on one stack (real etcd,
 * the relay in-process, the Worker in workerd): a list of N ConfigMaps (~600 B each) and a get,
 * rv=0 at the edge (served by the replica) and at the relay. Prints the first (cold: each object
 * parsed and encoded once) and the median of the next runs, so tiers and shapes compare as ratios
 * within the run. `npx tsx bench/k8s.ts [N]` (default 10,000).
 */
import { startStack } from '../test/helpers/stack.ts';

const N = Number(process.argv[2] ?? 10_000);
const RUNS = 15;
const stack = await startStack();
try {
  const filler = 'x'.repeat(400);
  for (let i = 0; i < N; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, N - i) }, (_, j) => {
        const name = `cm-${String(i + j).padStart(6, '0')}`;
        const object = {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name, namespace: 'bench', labels: { app: (i + j) % 2 ? 'a' : 'b' } },
          data: { filler },
        };
        return stack.client.put(`/registry/configmaps/bench/${name}`).value(JSON.stringify(object));
      }),
    );
  }
  const revision = Number(
    (await stack.client.put('/registry/bench-marker').value('m').exec()).header.revision,
  );
  const edge = stack.worker?.url ?? '';
  const relay = stack.relay.url;
  // Bring the replica to the writes before timing rv=0 reads there.
  await (await fetch(`${edge}/v1/kv/registry/bench-marker?resourceVersion=${revision}`)).arrayBuffer();

  const time = async (name: string, url: string) => {
    const ms: number[] = [];
    let servedBy = '';
    let bytes = 0;
    for (let i = 0; i < RUNS; i++) {
      const started = performance.now();
      const res = await fetch(url);
      bytes = (await res.arrayBuffer()).byteLength;
      ms.push(performance.now() - started);
      servedBy = res.headers.get('x-served-by') ?? '';
    }
    const rest = ms.slice(1).sort((a, b) => a - b);
    const median = rest[Math.floor(rest.length / 2)] ?? 0;
    console.log(
      `${name.padEnd(34)} served by ${servedBy.padEnd(5)} first ${(ms[0] ?? 0).toFixed(1).padStart(7)} ms  median ${median.toFixed(1).padStart(7)} ms  ${bytes} B`,
    );
    return median;
  };
  const ns = 'api/v1/namespaces/bench/configmaps';
  const edgeK8s = await time('edge  k8s list rv=0', `${edge}/${ns}?resourceVersion=0`);
  const edgeV1 = await time(
    'edge  /v1 list rv=0',
    `${edge}/v1/list/registry/configmaps/bench/?resourceVersion=0`,
  );
  await time('edge  k8s list rv=0 labelSelector', `${edge}/${ns}?resourceVersion=0&labelSelector=app%3Da`);
  const relayK8s = await time('relay k8s list rv=0', `${relay}/${ns}?resourceVersion=0`);
  const relayV1 = await time(
    'relay /v1 list rv=0',
    `${relay}/v1/list/registry/configmaps/bench/?resourceVersion=0`,
  );
  await time('edge  k8s get rv=0', `${edge}/${ns}/cm-000042?resourceVersion=0`);
  await time('edge  /v1 get rv=0', `${edge}/v1/kv/registry/configmaps/bench/cm-000042?resourceVersion=0`);
  console.log(
    `k8s ÷ /v1 list, median: edge ${(edgeK8s / edgeV1).toFixed(2)}×, relay ${(relayK8s / relayV1).toFixed(2)}× (N=${N})`,
  );
} finally {
  await stack.stop();
}
