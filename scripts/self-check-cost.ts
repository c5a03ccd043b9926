/**
 * What one self-check costs (relay/history-guard.ts), measured against a throw-away etcd:
 * `npx tsx scripts/self-check-cost.ts [--keys 10000] [--value-bytes 1000] [--runs 10]`.
 *
 * Loads N keys, starts a relay cache over them, then times, in the same run: the relay's side
 * (the digest recomputed from the cache's objects) and etcd's side (the revision-pinned,
 * paginated range the check folds into a digest), next to one plain consistent list of the
 * prefix for scale. Prints medians; the machine is shared, so compare the ratios.
 */
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { parseConfig } from '../relay/config.ts';
import { etcdDigestAt } from '../relay/etcd/history.ts';
import { listAt } from '../relay/etcd/lister.ts';
import { silentLogger } from '../relay/log.ts';
import { startRelay } from '../relay/server.ts';
import { startEtcd } from './lib/etcd-process.ts';

const { values } = parseArgs({
  options: {
    keys: { type: 'string', default: '10000' },
    'value-bytes': { type: 'string', default: '1000' },
    runs: { type: 'string', default: '10' },
  },
});
const keys = Number(values.keys);
const valueBytes = Number(values['value-bytes']);
const runs = Number(values.runs);
const prefix = '/registry/';

const etcd = await startEtcd({ extraArgs: ['--quota-backend-bytes', String(8 * 1024 ** 3)] });
const client = new Etcd3({ hosts: etcd.endpoint });
try {
  const value = 'x'.repeat(valueBytes);
  for (let i = 0; i < keys; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, keys - i) }, (_, j) =>
        client.put(`${prefix}bench/${String(i + j).padStart(6, '0')}`).value(value),
      ),
    );
  }
  const relay = await startRelay(
    parseConfig(
      [
        '--port',
        '0',
        '--etcd',
        etcd.endpoint,
        '--prefix',
        prefix,
        '--insecure-no-auth',
        '--self-check-interval-ms',
        '0',
      ],
      {},
    ),
    silentLogger,
  );
  await relay.ready();
  const cache = relay.caches.get(prefix)?.cache;
  const guard = relay.caches.get(prefix)?.guard;
  if (!cache || !guard) throw new Error('no cache');
  const revision = cache.revision;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const time = async (fn: () => unknown) => {
    const out: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await fn();
      out.push(performance.now() - t);
    }
    return median(out);
  };
  let pages = 0;
  let bytes = 0;
  const recompute = await time(() => cache.recomputeDigest());
  const etcdSide = await time(async () => {
    const d = await etcdDigestAt(client, prefix, revision);
    pages = d.pages;
    bytes = d.bytes;
  });
  const list = await time(() => listAt(client, prefix, { revision }));
  const whole = await time(() => guard.checkNow());
  const status = guard.status();
  console.log(
    JSON.stringify({
      keys,
      valueBytes,
      runs,
      relayRecomputeMs: Math.round(recompute * 10) / 10,
      etcdRangeAndDigestMs: Math.round(etcdSide * 10) / 10,
      etcdListMs: Math.round(list * 10) / 10,
      wholeCheckMs: Math.round(whole * 10) / 10,
      etcdRequestsPerCheck: pages,
      etcdBytesPerCheck: bytes,
      lastResult: status.lastResult,
    }),
  );
  await relay.stop();
} finally {
  client.close();
  await etcd.stop();
}
