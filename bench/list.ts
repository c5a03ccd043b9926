/**
 * (1) LIST of N × 1 KB objects from etcd, the relay's cache and an edge replica (workerd).
 *
 * Every variant ends where a client can use the result: a tier's response parsed from JSON, etcd's
 * linearizable range decoded from protobuf into the same objects (relay/etcd's `kvToObject`).
 * Sequential requests (one at a time) give latency; the server's CPU per list is read from /proc
 * for etcd, the relay (a child process) and workerd (miniflare's child), so the client's own work
 * is not in it. Then: the serving tier's V8 heap sampled over the inspector while one list of the
 * largest size is sent, and 4 clients listing at once (lists/s per tier).
 *
 * `BENCH_PROFILE=1` also takes V8 CPU profiles of the relay and of workerd during the largest
 * lists (top functions in the result's details).
 */
import { createEtcdClient } from '../relay/etcd/client.ts';
import { kvToObject, prefixEnd } from '../relay/etcd/lister.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { freePort } from '../scripts/lib/ports.ts';
import { coloHeaders, type RunningWorker, startWorker, waitReplica } from './lib/edge.ts';
import { cpuMs, descendantPids } from './lib/proc.ts';
import {
  nodeInspectorUrl,
  type ProfileSession,
  sampleHeap,
  startProfile,
  summarizeProfile,
} from './lib/profile.ts';
import { spawnRelay } from './lib/relay-process.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { seed } from './lib/seed.ts';
import { progress, round, summarize, timeLoop, waitFor } from './lib/stats.ts';
import { cdfChart } from './lib/svg.ts';

const ROOT = '/registry/';
const SECRET = 'bench-replication-secret';
const COLO = 'bench-list';
const CLIENTS = 4;

interface Dataset {
  readonly label: string;
  readonly prefix: string;
  readonly count: number;
  readonly iterations: number;
  readonly maxMsPerVariant: number;
  /** Lists per client in the concurrent stage. */
  readonly concurrentLists: number;
}

type Tier = 'etcd' | 'relay' | 'edge';

interface Variant {
  readonly name: string;
  readonly tier: Tier;
  readonly run: () => Promise<void>;
}

export async function benchList(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(1, 'LIST from etcd, the relay cache and an edge replica');
  const datasets: Dataset[] = [
    {
      label: '10k',
      prefix: `${ROOT}list10k/`,
      count: 10_000,
      iterations: ctx.quick ? 20 : 60,
      maxMsPerVariant: ctx.quick ? 8_000 : 20_000,
      concurrentLists: ctx.quick ? 5 : 15,
    },
  ];
  if (!ctx.quick) {
    datasets.push({
      label: '100k',
      prefix: `${ROOT}list100k/`,
      count: 100_000,
      iterations: 10,
      maxMsPerVariant: 30_000,
      concurrentLists: 3,
    });
  }
  const profiling = process.env.BENCH_PROFILE === '1';
  const etcd = await startEtcd({ extraArgs: ['--quota-backend-bytes', String(8 * 2 ** 30)] });
  const client = createEtcdClient({ endpoints: etcd.endpoint, callTimeoutMs: 120_000 });
  let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
  let worker: RunningWorker | undefined;
  try {
    let revision = 0;
    for (const d of datasets) {
      progress(`[1] seeding ${d.count} × 1 KB under ${d.prefix}`);
      revision = await seed(client, { prefix: d.prefix, count: d.count, valueBytes: 1024 });
    }
    const relayInspector = await freePort();
    // One exposed prefix per dataset: its own cache at the relay, its own replica at the edge.
    const prefixes = datasets.map((d) => d.prefix);
    relay = await spawnRelay({
      etcd: etcd.endpoint,
      prefixes,
      secret: SECRET,
      nodeArgs: [`--inspect=127.0.0.1:${relayInspector}`],
    });
    await relay.ready(120_000);
    // Under load the inspector may not answer at once: ask until it does.
    let relayInspectorUrl = '';
    await waitFor(
      'the relay inspector',
      async () => {
        relayInspectorUrl = await nodeInspectorUrl(relayInspector).catch(() => '');
        return relayInspectorUrl !== '';
      },
      30_000,
      200,
    );
    const workerInspector = await freePort();
    progress('[1] starting the Worker in workerd; the replica loads every dataset');
    worker = await startWorker({
      relayUrl: relay.url,
      prefixes,
      replicationSecret: SECRET,
      inspectorPort: workerInspector,
    });
    const workerInspectorUrl = `ws://127.0.0.1:${workerInspector}/core:user:`;
    const edgeHeaders = coloHeaders(COLO);
    /** The datasets an edge replica could load (a Durable Object has 128 MB for everything). */
    const atEdge = new Set<Dataset>();
    for (const d of datasets) {
      const t0 = performance.now();
      try {
        await waitReplica(worker.url, COLO, d.prefix, revision, 300_000, 200);
        out.details[`${d.label} edge replica load ms`] = Math.round(performance.now() - t0);
        atEdge.add(d);
      } catch (error) {
        out.notes.push(`The edge replica of ${d.label} × 1 KB did not load: ${String(error)}`);
      }
    }
    const pids: Record<Tier, () => number[]> = {
      etcd: () => [etcd.pid ?? 0],
      relay: () => [relay?.pid ?? 0],
      edge: () => descendantPids('workerd'),
    };
    const cpuOf = (tier: Tier) => pids[tier]().reduce((sum, pid) => sum + cpuMs(pid), 0);
    out.details.objectBytes = 1024;
    out.details.method =
      'sequential requests; tiers: fetch + res.json(); etcd: kv.range (linearizable) + kvToObject; server CPU (user+system) from /proc, workerd for the edge';

    const relayUrl = relay.url;
    const workerUrl = worker.url;
    const tierList =
      (base: string, d: Dataset, query: string, servedBy: Tier, headers: Record<string, string> = {}) =>
      async () => {
        const res = await fetch(`${base}/v1/list${d.prefix}${query}`, { headers });
        const body = (await res.json()) as { items?: unknown[] };
        if (!res.ok || body.items?.length !== d.count) throw new Error(`${servedBy} list ${res.status}`);
        if (res.headers.get('x-served-by') !== servedBy) {
          throw new Error(`served by ${res.headers.get('x-served-by')}, not ${servedBy}`);
        }
      };
    const etcdList = (d: Dataset) => {
      const key = Buffer.from(d.prefix);
      const rangeEnd = prefixEnd(key);
      return async () => {
        const res = await client.kv.range({ key, range_end: rangeEnd });
        const items = res.kvs.map(kvToObject);
        if (items.length !== d.count) throw new Error(`etcd list returned ${items.length}`);
      };
    };
    const variantsOf = (d: Dataset): Variant[] => [
      ...allVariantsOf(d).filter((v) => v.tier !== 'edge' || atEdge.has(d)),
    ];
    const allVariantsOf = (d: Dataset): Variant[] => [
      { name: 'etcd range (linearizable)', tier: 'etcd', run: etcdList(d) },
      { name: 'relay most-recent', tier: 'relay', run: tierList(relayUrl, d, '', 'relay') },
      { name: 'relay rv=0', tier: 'relay', run: tierList(relayUrl, d, '?resourceVersion=0', 'relay') },
      {
        name: 'edge rv=0',
        tier: 'edge',
        run: tierList(workerUrl, d, '?resourceVersion=0', 'edge', edgeHeaders),
      },
      { name: 'edge most-recent', tier: 'edge', run: tierList(workerUrl, d, '', 'edge', edgeHeaders) },
    ];

    const largest = datasets[datasets.length - 1];
    for (const d of datasets) {
      const loop = { warmup: 2, count: d.iterations, maxMs: Math.min(d.maxMsPerVariant, ctx.budgetMs / 10) };
      const samples: Record<string, number[]> = {};
      const cpu: Record<string, number> = {};
      const profileOf: Partial<Record<Tier, string>> = { relay: relayInspectorUrl, edge: workerInspectorUrl };
      for (const v of variantsOf(d)) {
        const label = `${d.label} ${v.name}`;
        progress(`[1] ${label}`);
        const inspector = profiling && d === largest ? profileOf[v.tier] : undefined;
        const session: ProfileSession | undefined = inspector ? await startProfile(inspector) : undefined;
        const cpu0 = cpuOf(v.tier);
        const s = await timeLoop({ ...loop, label }, v.run);
        // On a loaded machine the time budget can run out early: a p50 needs a few samples.
        while (s.length < 5) {
          const t = performance.now();
          await v.run();
          s.push(performance.now() - t);
        }
        // Warm-up iterations burn CPU too: divide by everything that ran.
        cpu[v.name] = (cpuOf(v.tier) - cpu0) / (s.length + loop.warmup);
        if (session) {
          const summary = summarizeProfile(await session.stop(), 12);
          out.details[`${label} profile (self)`] = summary.self.map((r) => `${r.pct}% ${r.fn}`);
        }
        samples[v.name] = s;
        out.distributions[label] = summarize(s);
        out.details[`${label} server CPU ms/list`] = round(cpu[v.name] ?? Number.NaN, 1);
      }
      const p50 = (name: string) => out.distributions[`${d.label} ${name}`]?.p50 ?? Number.NaN;
      const cpuMsOf = (name: string) => cpu[name] ?? Number.NaN;
      const etcdP50 = p50('etcd range (linearizable)');
      const etcdCpu = cpuMsOf('etcd range (linearizable)');
      for (const name of ['relay most-recent', 'relay rv=0']) {
        out.figure({
          name: `LIST ${d.label}: server CPU per list, etcd / ${name}`,
          value: round(etcdCpu / cpuMsOf(name), 2),
          unit: '×',
          target: '≥ 10×',
          met: etcdCpu / cpuMsOf(name) >= 10,
          note: `${name} ${round(cpuMsOf(name), 1)} ms, etcd ${round(etcdCpu, 1)} ms of CPU per list`,
        });
      }
      const wantP50 = d.count >= 100_000 ? 2 : 3;
      out.figure({
        name: `LIST ${d.label}: client p50, etcd / relay most-recent`,
        value: round(etcdP50 / p50('relay most-recent'), 2),
        unit: '×',
        target: `≥ ${wantP50}×`,
        met: etcdP50 / p50('relay most-recent') >= wantP50,
        note: `relay ${p50('relay most-recent')} ms (rv=0 ${p50('relay rv=0')} ms) vs etcd ${etcdP50} ms`,
      });
      out.figure({
        name: `LIST ${d.label}: edge rv=0 p50 / relay rv=0 p50`,
        value: round(p50('edge rv=0') / p50('relay rv=0'), 2),
        unit: '×',
        target: '≤ 1.5×',
        met: p50('edge rv=0') / p50('relay rv=0') <= 1.5,
        note: `edge ${p50('edge rv=0')} ms (most-recent ${p50('edge most-recent')} ms, workerd CPU ${round(cpuMsOf('edge rv=0'), 1)} ms/list) vs relay ${p50('relay rv=0')} ms`,
      });
      out.figure({
        name: `LIST ${d.label}: relay most-recent p50 − rv=0 p50`,
        value: round(p50('relay most-recent') - p50('relay rv=0'), 1),
        unit: 'ms',
        note: 'a quorum read for etcd’s revision, then the cache is already there: no wait',
      });
      out.plots.push({
        file: `list-${d.label}-cdf.svg`,
        title: `LIST ${d.label} × 1 KB latency`,
        svg: cdfChart(`LIST ${d.count.toLocaleString('en')} × 1 KB: latency CDF`, samples),
      });

      // 4 clients at once: throughput per tier.
      for (const v of variantsOf(d).filter(
        (x) => x.name !== 'relay most-recent' && x.name !== 'edge most-recent',
      )) {
        const label = `${d.label} ${CLIENTS} clients, ${v.name}`;
        progress(`[1] ${label}`);
        const cpu0 = cpuOf(v.tier);
        const t = performance.now();
        await Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            for (let i = 0; i < d.concurrentLists; i++) await v.run();
          }),
        );
        const seconds = (performance.now() - t) / 1000;
        const lists = CLIENTS * d.concurrentLists;
        out.details[`${label}: lists/s`] = round(lists / seconds, 2);
        out.details[`${label}: server CPU ms/list`] = round((cpuOf(v.tier) - cpu0) / lists, 1);
      }
      const rate = (name: string) => Number(out.details[`${d.label} ${CLIENTS} clients, ${name}: lists/s`]);
      out.figure({
        name: `LIST ${d.label}, ${CLIENTS} clients at once: lists/s relay rv=0 / etcd`,
        value: round(rate('relay rv=0') / rate('etcd range (linearizable)'), 2),
        unit: '×',
        note: `relay ${rate('relay rv=0')}/s, edge ${rate('edge rv=0')}/s, etcd ${rate('etcd range (linearizable)')}/s`,
      });
    }

    // The serving tier's V8 heap while one list of the largest dataset is sent and parsed.
    if (largest) {
      const heapStages = [
        ['relay', relayInspectorUrl, tierList(relayUrl, largest, '?resourceVersion=0', 'relay')],
        ['edge', workerInspectorUrl, tierList(workerUrl, largest, '?resourceVersion=0', 'edge', edgeHeaders)],
      ] as const;
      for (const [tier, url, run] of heapStages.filter(([t]) => t !== 'edge' || atEdge.has(largest))) {
        progress(`[1] ${tier} heap during a ${largest.label} list`);
        const sampler = await sampleHeap(url);
        await run();
        const { first, peak } = await sampler.stop();
        const mb = (peak - first) / 2 ** 20;
        out.figure({
          name: `LIST ${largest.label} rv=0: ${tier} heap growth while it is sent`,
          value: round(mb, 1),
          unit: 'MB',
          target: '≤ a few MB (≤ 8)',
          met: mb <= 8,
          note: `V8 used heap sampled back to back over the inspector: ${round(first / 2 ** 20, 0)} MB before, peak ${round(peak / 2 ** 20, 0)} MB; the body is ${round((largest.count * 1.1) / 1024, 0)} MB`,
        });
      }
    }
    out.notes.push(
      'Client-side decoding is inside every latency (JSON.parse for the tiers, protobuf decode + object building for etcd); on 2 cores the client, etcd, the relay and workerd share the CPUs, and other work on the machine adds noise: compare ratios from one run.',
      'Server CPU per list counts user and system time of the serving process, so writing the body to the socket (the kernel copy on loopback) is in it.',
    );
    return out.build();
  } catch (error) {
    return out.build(error);
  } finally {
    await worker?.stop();
    await relay?.stop();
    client.close();
    await etcd.stop();
  }
}
