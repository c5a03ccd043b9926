/**
 * (6) One GET served three ways: by the edge replica from its own state (rv=0), by the Worker
 * forwarding to the relay (most-recent reads always go to the relay), and straight from etcd
 * (a linearizable range of one key, decoded). The relay's own answers are measured too. All on
 * loopback: a real edge sits far from the relay, so forwarding costs more there than here.
 */
import { createEtcdClient } from '../relay/etcd/client.ts';
import { kvToObject } from '../relay/etcd/lister.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { startProxy, type TcpProxy } from '../test/helpers/tcp-proxy.ts';
import { coloHeaders, type RunningWorker, startWorker, waitReplica } from './lib/edge.ts';
import { spawnRelay } from './lib/relay-process.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { keyFor, seed } from './lib/seed.ts';
import { progress, round, summarize, timeLoop } from './lib/stats.ts';
import { cdfChart } from './lib/svg.ts';

const ROOT = '/registry/';
const SECRET = 'bench-replication-secret';
const DISTANCE_ONE_WAY_MS = 10;

export async function benchTiers(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(6, 'GET at the edge vs forwarded to the relay vs etcd');
  const etcd = await startEtcd();
  const client = createEtcdClient({ endpoints: etcd.endpoint });
  let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
  let worker: RunningWorker | undefined;
  let far: RunningWorker | undefined;
  let proxy: TcpProxy | undefined;
  try {
    const prefix = `${ROOT}tiers/`;
    const revision = await seed(client, { prefix, count: 1_000, valueBytes: 1024 });
    const key = keyFor(prefix, 42);
    relay = await spawnRelay({ etcd: etcd.endpoint, prefixes: [ROOT], secret: SECRET });
    await relay.ready();
    const count = ctx.quick ? 100 : 500;
    const loop = { warmup: 20, count, maxMs: Math.min(15_000, ctx.budgetMs / 6) };
    out.details.object = `${key} (1 KB value)`;
    out.details.method = 'sequential GETs with keep-alive; the response body is read and parsed';

    const read =
      (url: string, expectServedBy: string, headers: Record<string, string> = {}) =>
      async () => {
        const res = await fetch(url, { headers });
        const body = (await res.json()) as { key?: string; items?: Array<{ key?: string }> };
        const got = body.key ?? body.items?.[0]?.key;
        if (!res.ok || got !== key) throw new Error(`GET ${url}: ${res.status}`);
        const servedBy = res.headers.get('x-served-by');
        if (servedBy !== expectServedBy)
          throw new Error(`GET ${url}: served by ${servedBy}, want ${expectServedBy}`);
      };
    const samples: Record<string, number[]> = {};
    const measure = async (name: string, fn: () => Promise<void>) => {
      progress(`[6] ${name}`);
      samples[name] = await timeLoop({ ...loop, label: name }, fn);
      out.distributions[name] = summarize(samples[name]);
    };
    // The edge serves every get itself (most-recent ones after a revisionRequest to the relay);
    // what it always forwards is an Exact read, so "the same read, forwarded" is a one-key list
    // (prefix = the key) with limit=1 at Exact rv, against the same list with rv=0 at the edge.
    const oneKeyList = `/v1/list${key}?limit=1`;
    const rawKey = Buffer.from(key);
    await measure('etcd get (linearizable)', async () => {
      const res = await client.kv.range({ key: rawKey });
      const kv = res.kvs[0];
      if (!kv || kvToObject(kv).key !== key) throw new Error('etcd get missed');
    });
    await measure('relay get most-recent', read(`${relay.url}/v1/kv${key}`, 'relay'));
    await measure('relay get rv=0', read(`${relay.url}/v1/kv${key}?resourceVersion=0`, 'relay'));
    await measure(
      'relay one-key list Exact',
      read(`${relay.url}${oneKeyList}&resourceVersion=${revision}`, 'relay'),
    );

    progress('[6] starting the Worker in workerd');
    worker = await startWorker({ relayUrl: relay.url, prefixes: [ROOT], replicationSecret: SECRET });
    const colo = 'bench-tiers';
    await waitReplica(worker.url, colo, ROOT, revision, 30_000);
    const edge = coloHeaders(colo);
    await measure('edge get rv=0', read(`${worker.url}/v1/kv${key}?resourceVersion=0`, 'edge', edge));
    await measure('edge get most-recent (revisionRequest)', read(`${worker.url}/v1/kv${key}`, 'edge', edge));
    await measure(
      'edge one-key list rv=0',
      read(`${worker.url}${oneKeyList}&resourceVersion=0`, 'edge', edge),
    );
    await measure(
      'edge one-key list Exact (forwarded to relay)',
      read(`${worker.url}${oneKeyList}&resourceVersion=${revision}`, 'relay', edge),
    );

    // The same two reads with the relay 20 ms round trip away (10 ms each way through a TCP
    // proxy), as an edge location in another region sees it: what the replica saves a reader.
    progress('[6] a second Worker whose relay is 20 ms RTT away');
    proxy = await startProxy(Number(new URL(relay.url).port));
    proxy.setDelay(DISTANCE_ONE_WAY_MS);
    far = await startWorker({
      relayUrl: `http://127.0.0.1:${proxy.port}`,
      prefixes: [ROOT],
      replicationSecret: SECRET,
    });
    const farColo = 'bench-tiers-far';
    await waitReplica(far.url, farColo, ROOT, revision, 30_000);
    const farHeaders = coloHeaders(farColo);
    await measure(
      'far edge one-key list rv=0',
      read(`${far.url}${oneKeyList}&resourceVersion=0`, 'edge', farHeaders),
    );
    await measure(
      'far edge one-key list Exact (forwarded, 20 ms RTT)',
      read(`${far.url}${oneKeyList}&resourceVersion=${revision}`, 'relay', farHeaders),
    );

    const p50 = (name: string) => out.distributions[name]?.p50 ?? Number.NaN;
    const farEdge = p50('far edge one-key list rv=0');
    const farFwd = p50('far edge one-key list Exact (forwarded, 20 ms RTT)');
    out.figure({
      name: 'one-key read, relay 20 ms RTT away: forwarded p50 / edge rv=0 p50',
      value: round(farFwd / farEdge, 2),
      unit: '×',
      target: '≥ 3×',
      met: farFwd / farEdge >= 3,
      note: `edge ${farEdge} ms, forwarded ${farFwd} ms (10 ms each way through a TCP proxy)`,
    });
    const edgeP50 = p50('edge one-key list rv=0');
    const fwdP50 = p50('edge one-key list Exact (forwarded to relay)');
    out.figure({
      name: 'one-key read: forwarded-to-relay p50 / edge rv=0 p50',
      value: round(fwdP50 / edgeP50, 2),
      unit: '×',
      target: '≥ 3×',
      met: fwdP50 / edgeP50 >= 3,
      note: `edge ${edgeP50} ms, forwarded ${fwdP50} ms (loopback: no WAN between edge and relay)`,
    });
    out.figure({
      name: 'GET: etcd p50 / edge rv=0 p50',
      value: round(p50('etcd get (linearizable)') / p50('edge get rv=0'), 2),
      unit: '×',
      note: `etcd ${p50('etcd get (linearizable)')} ms, edge ${p50('edge get rv=0')} ms, edge most-recent ${p50('edge get most-recent (revisionRequest)')} ms`,
    });
    out.figure({
      name: 'GET: etcd p50 / relay rv=0 p50',
      value: round(p50('etcd get (linearizable)') / p50('relay get rv=0'), 2),
      unit: '×',
      note: `relay rv=0 ${p50('relay get rv=0')} ms, relay most-recent ${p50('relay get most-recent')} ms`,
    });
    out.plots.push({
      file: 'get-tiers-cdf.svg',
      title: 'GET latency by tier',
      svg: cdfChart('GET one 1 KB object: latency CDF by tier', samples),
    });
    return out.build();
  } catch (error) {
    return out.build(error);
  } finally {
    await far?.stop();
    await proxy?.close();
    await worker?.stop();
    await relay?.stop();
    client.close();
    await etcd.stop();
  }
}
