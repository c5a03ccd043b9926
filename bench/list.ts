/**
 * (1) LIST of N × 1 KB objects: the relay serving from its cache vs the same range from etcd.
 *
 * Both sides end where a client can use the result: the relay's response parsed from JSON into
 * objects, etcd's linearizable range decoded from protobuf into the same objects (relay/etcd's
 * `kvToObject`). The relay runs as a child process, so its CPU per request is read from /proc;
 * etcd's likewise. Sequential requests (one at a time): latency, not throughput.
 */
import { createEtcdClient } from '../relay/etcd/client.ts';
import { kvToObject, prefixEnd } from '../relay/etcd/lister.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { cpuMs } from './lib/proc.ts';
import { spawnRelay } from './lib/relay-process.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { seed } from './lib/seed.ts';
import { progress, round, summarize, timeLoop } from './lib/stats.ts';
import { cdfChart } from './lib/svg.ts';

const ROOT = '/registry/';

interface Dataset {
  readonly label: string;
  readonly prefix: string;
  readonly count: number;
  readonly iterations: number;
  readonly maxMsPerVariant: number;
}

export async function benchList(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(1, 'LIST from the relay cache vs etcd');
  const datasets: Dataset[] = [
    {
      label: '10k',
      prefix: `${ROOT}list10k/`,
      count: 10_000,
      iterations: ctx.quick ? 20 : 100,
      maxMsPerVariant: ctx.quick ? 8_000 : 30_000,
    },
  ];
  if (!ctx.quick) {
    datasets.push({
      label: '100k',
      prefix: `${ROOT}list100k/`,
      count: 100_000,
      iterations: 15,
      maxMsPerVariant: 40_000,
    });
  }
  const etcd = await startEtcd({ extraArgs: ['--quota-backend-bytes', String(8 * 2 ** 30)] });
  const client = createEtcdClient({ endpoints: etcd.endpoint, callTimeoutMs: 60_000 });
  let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
  try {
    for (const d of datasets) {
      progress(`[1] seeding ${d.count} × 1 KB under ${d.prefix}`);
      await seed(client, { prefix: d.prefix, count: d.count, valueBytes: 1024 });
    }
    relay = await spawnRelay({ etcd: etcd.endpoint, prefixes: [ROOT] });
    await relay.ready();
    const relayPid = relay.pid;
    const etcdPid = etcd.pid ?? 0;
    const relayUrl = relay.url;
    out.details.objectBytes = 1024;
    out.details.method =
      'sequential requests; relay: fetch + res.json(); etcd: kv.range (linearizable) + kvToObject; CPU from /proc';

    for (const d of datasets) {
      const path = `${relayUrl}/v1/list${d.prefix}`;
      const relayList = (query: string) => async () => {
        const res = await fetch(`${path}${query}`);
        const body = (await res.json()) as { items?: unknown[] };
        if (!res.ok || body.items?.length !== d.count) throw new Error(`relay list ${res.status}`);
        if (res.headers.get('x-served-by') !== 'relay') {
          throw new Error(`served by ${res.headers.get('x-served-by')}, not the relay cache`);
        }
      };
      const relayBytes = async () => {
        const res = await fetch(`${path}?resourceVersion=0`);
        const bytes = await res.arrayBuffer();
        if (!res.ok || bytes.byteLength < d.count * 1024) throw new Error(`relay list ${res.status}`);
      };
      const key = Buffer.from(d.prefix);
      const rangeEnd = prefixEnd(key);
      const etcdList = async () => {
        const res = await client.kv.range({ key, range_end: rangeEnd });
        const items = res.kvs.map(kvToObject);
        if (items.length !== d.count) throw new Error(`etcd list returned ${items.length}`);
      };
      const loop = { warmup: 3, count: d.iterations, maxMs: Math.min(d.maxMsPerVariant, ctx.budgetMs / 8) };
      const variants: Array<[string, () => Promise<void>, number]> = [
        ['relay most-recent', relayList(''), relayPid],
        ['relay rv=0', relayList('?resourceVersion=0'), relayPid],
        ['etcd range (linearizable)', etcdList, etcdPid],
        ['relay rv=0, body bytes only (no JSON.parse)', relayBytes, relayPid],
      ];
      const samples: Record<string, number[]> = {};
      for (const [name, fn, pid] of variants) {
        const label = `${d.label} ${name}`;
        progress(`[1] ${label}`);
        const cpu0 = pid ? cpuMs(pid) : 0;
        const s = await timeLoop({ ...loop, label }, fn);
        // warm-up iterations also burn CPU: divide by everything that ran
        const ran = s.length + loop.warmup;
        const serverCpu = pid ? (cpuMs(pid) - cpu0) / ran : Number.NaN;
        samples[name] = s;
        out.distributions[label] = summarize(s);
        out.details[`${label} server CPU ms/request`] = round(serverCpu, 1);
      }
      const p = (name: string) => out.distributions[`${d.label} ${name}`] ?? summarize([]);
      const etcdS = p('etcd range (linearizable)');
      const mostRecent = p('relay most-recent');
      const rv0 = p('relay rv=0');
      out.figure({
        name: `LIST ${d.label}: etcd p50 / relay most-recent p50`,
        value: round(etcdS.p50 / mostRecent.p50, 2),
        unit: '×',
        target: '≥ 10×',
        met: etcdS.p50 / mostRecent.p50 >= 10,
        note: `relay ${mostRecent.p50} ms vs etcd ${etcdS.p50} ms (p99 ${mostRecent.p99} vs ${etcdS.p99})`,
      });
      out.figure({
        name: `LIST ${d.label}: etcd p50 / relay rv=0 p50`,
        value: round(etcdS.p50 / rv0.p50, 2),
        unit: '×',
        target: '≥ 10×',
        met: etcdS.p50 / rv0.p50 >= 10,
        note: `relay ${rv0.p50} ms vs etcd ${etcdS.p50} ms`,
      });
      const relayCpu = Number(out.details[`${d.label} relay most-recent server CPU ms/request`]);
      const etcdCpu = Number(out.details[`${d.label} etcd range (linearizable) server CPU ms/request`]);
      out.figure({
        name: `LIST ${d.label}: server CPU per request, relay most-recent vs etcd`,
        value: round(etcdCpu / relayCpu, 2),
        unit: '× (etcd/relay)',
        note: `relay ${relayCpu} ms, etcd ${etcdCpu} ms of CPU per list`,
      });
      out.plots.push({
        file: `list-${d.label}-cdf.svg`,
        title: `LIST ${d.label} × 1 KB latency`,
        svg: cdfChart(`LIST ${d.count.toLocaleString('en')} × 1 KB: latency CDF`, samples),
      });
    }
    out.notes.push(
      'Client-side decoding is inside both measurements (JSON.parse for the relay, protobuf decode + object building for etcd); on 2 cores the client, relay and etcd share the CPUs.',
    );
    return out.build();
  } catch (error) {
    return out.build(error);
  } finally {
    await relay?.stop();
    client.close();
    await etcd.stop();
  }
}
