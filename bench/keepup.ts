/**
 * (3) Keeping up: first etcd's own maximum write rate on this machine (64 writers, 256 B puts,
 * no observers), then the same writers again with the relay, R edge replicas and W edge
 * watchers attached. One probe watcher per replica (and one on the relay) parses every event and
 * gives the lag from each put's acknowledgement to its arrival; the other watchers only count
 * lines (they must still be drained, or the tier cuts them as too slow, which is what we check).
 * Then a stage with many watchers at a modest paced write rate.
 */
import { performance } from 'node:perf_hooks';
import type { Etcd3 } from 'etcd3';
import { createEtcdClient } from '../relay/etcd/client.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { coloHeaders, type RunningWorker, replicaStatus, startWorker, waitReplica } from './lib/edge.ts';
import { coresUsed, cpuSnapshot, descendantPids } from './lib/proc.ts';
import { spawnRelay } from './lib/relay-process.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { progress, round, summarize, waitFor } from './lib/stats.ts';
import { lineChart, type Series } from './lib/svg.ts';
import { openWatch, type WatchHandle } from './lib/watch.ts';

const ROOT = '/registry/';
const PREFIX = `${ROOT}keep/`;
const SECRET = 'bench-replication-secret';
const WRITERS = 64;
const VALUE = Buffer.from('v'.repeat(256));

/** Writes as fast as `writers` concurrent loops can for `ms` (or every `paceMs` when paced). */
async function drive(
  client: Etcd3,
  ms: number,
  writers: number,
  acks: Map<number, number> | undefined,
  paceMs = 0,
): Promise<{ writes: number; lastRevision: number; seconds: number }> {
  const start = performance.now();
  const end = start + ms;
  let writes = 0;
  let lastRevision = 0;
  const loop = async (w: number) => {
    let i = 0;
    while (performance.now() < end) {
      const res = await client.kv.put({ key: Buffer.from(`${PREFIX}w${w}-${i++ % 16}`), value: VALUE });
      const rev = Number(res.header.revision);
      acks?.set(rev, performance.now());
      lastRevision = Math.max(lastRevision, rev);
      writes++;
      if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs));
    }
  };
  await Promise.all(Array.from({ length: writers }, (_, w) => loop(w)));
  return { writes, lastRevision, seconds: (performance.now() - start) / 1000 };
}

export async function benchKeepUp(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(3, "Keeping up with etcd's maximum write rate");
  const seconds = ctx.quick ? 3 : 10;
  const replicas = ctx.quick ? 2 : 5;
  const watchersPerReplica = ctx.quick ? 10 : 20;
  const manyWatchers = ctx.quick ? 100 : 1_000;
  const etcd = await startEtcd();
  const client = createEtcdClient({ endpoints: etcd.endpoint });
  let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
  let worker: RunningWorker | undefined;
  const watches: WatchHandle[] = [];
  try {
    progress(`[3] etcd alone: ${WRITERS} writers for ${Math.min(seconds, 5)} s`);
    const alone = await drive(client, Math.min(seconds, 5) * 1000, WRITERS, undefined);
    const maxRate = alone.writes / alone.seconds;
    out.figure({
      name: 'etcd max write rate (64 writers, 256 B, nothing attached)',
      value: Math.round(maxRate),
      unit: 'puts/s',
    });

    relay = await spawnRelay({ etcd: etcd.endpoint, prefixes: [ROOT], secret: SECRET });
    await relay.ready();
    worker = await startWorker({ relayUrl: relay.url, prefixes: [ROOT], replicationSecret: SECRET });
    const workerUrl = worker.url;
    const colos = Array.from({ length: replicas }, (_, i) => `keep-${i}`);
    await Promise.all(colos.map((c) => waitReplica(workerUrl, c, ROOT, alone.lastRevision, 60_000)));
    const from = alone.lastRevision;
    const arrivals: Array<{ name: string; times: Map<number, number> }> = [];
    const probe = (name: string, url: string, headers: Record<string, string> = {}) => {
      const times = new Map<number, number>();
      arrivals.push({ name, times });
      const w = openWatch({ url, headers, onEvent: (rev, at) => times.set(rev, at) });
      watches.push(w);
      return w;
    };
    const watchUrl = (base: string) => `${base}/v1/list${PREFIX}?watch=true&resourceVersion=${from}`;
    const relayProbe = probe('relay', watchUrl(relay.url));
    const probes = colos.map((c) => probe(c, watchUrl(workerUrl), coloHeaders(c)));
    const counters: WatchHandle[] = [];
    for (const c of colos) {
      for (let i = 1; i < watchersPerReplica; i++) {
        counters.push(openWatch({ url: watchUrl(workerUrl), headers: coloHeaders(c), countOnly: true }));
      }
    }
    watches.push(...counters);
    await Promise.all(watches.map((w) => w.opened));
    const edgeWatchers = probes.length + counters.length;
    progress(
      `[3] driving at max rate for ${seconds} s: relay + ${replicas} replicas + ${edgeWatchers} edge watchers`,
    );
    const acks = new Map<number, number>();
    const pids = { etcd: [etcd.pid ?? 0], relay: [relay.pid], workerd: descendantPids('workerd') };
    const cpu0 = cpuSnapshot(pids);
    const t0 = performance.now();
    const loaded = await drive(client, seconds * 1000, WRITERS, acks);
    out.details['cores used while loaded (of 2)'] = coresUsed(cpu0, cpuSnapshot(pids), loaded.seconds);
    const loadedRate = loaded.writes / loaded.seconds;
    const stopAt = performance.now();
    // Where the watchers are when the writers stop (read synchronously), then the replicas' own
    // state (a status request, which queues behind whatever workerd is still doing).
    out.details['probe watchers: revisions behind when the writers stop'] = probes.map(
      (p) => loaded.lastRevision - p.revision,
    );
    const states = await Promise.all(colos.map((c) => replicaStatus(workerUrl, c, ROOT)));
    out.details['replica status: revisions behind etcd, and ms the status request took'] = {
      behind: states.map((st) => loaded.lastRevision - st.revision),
      ms: round(performance.now() - stopAt, 0),
    };
    let caughtUp = true;
    try {
      await waitFor(
        'every probe at the last revision',
        () => [relayProbe, ...probes].every((p) => p.revision >= loaded.lastRevision || p.ended),
        30_000,
        5,
      );
    } catch {
      caughtUp = false;
    }
    const catchUpMs = performance.now() - stopAt;
    const lagAll: number[] = [];
    const series: Series[] = [];
    for (const { name, times } of arrivals) {
      const lags: number[] = [];
      const points: Array<[number, number]> = [];
      for (const [rev, ack] of acks) {
        const at = times.get(rev);
        if (at === undefined) continue;
        const lag = Math.max(0, at - ack);
        lags.push(lag);
        if (rev % 7 === 0) points.push([(ack - t0) / 1000, lag]);
      }
      out.distributions[`lag at ${name}`] = summarize(lags);
      if (name !== 'relay') lagAll.push(...lags);
      if (series.length < 4)
        series.push({ name: name === 'relay' ? 'relay watcher' : `replica ${name}`, points, dots: true });
    }
    const lag = summarize(lagAll);
    const expected = loaded.writes;
    const short = counters.filter((w) => w.events < expected).length;
    const errors = watches.reduce((n, w) => n + w.errors, 0);
    out.details.loadedRun = {
      writes: loaded.writes,
      seconds: round(loaded.seconds, 2),
      edgeWatchers,
      replicas,
    };
    out.details['edge events delivered per second (all watchers)'] = Math.round(
      (expected * edgeWatchers) / loaded.seconds,
    );
    out.figure({
      name: 'write rate achieved with everything attached',
      value: Math.round(loadedRate),
      unit: 'puts/s',
      note: `${round((loadedRate / maxRate) * 100, 0)}% of etcd's max alone; the client, relay, workerd and etcd share 2 cores`,
    });
    out.figure({
      name: `replica lag p50 (${replicas} replicas, ${edgeWatchers} edge watchers)`,
      value: lag.p50,
      unit: 'ms',
    });
    out.figure({
      name: `replica lag p99 (${replicas} replicas, ${edgeWatchers} edge watchers)`,
      value: lag.p99,
      unit: 'ms',
      target: '< 100 ms',
      met: lag.p99 < 100,
    });
    out.figure({
      name: 'relay watcher lag p99',
      value: out.distributions['lag at relay']?.p99 ?? Number.NaN,
      unit: 'ms',
      target: '< 100 ms',
      met: (out.distributions['lag at relay']?.p99 ?? Number.POSITIVE_INFINITY) < 100,
    });
    out.figure({
      name: 'replicas cut by the relay as silent, and edge watchers cut, during the max-rate run',
      value: relay.logs.get('replica silent, cutting it') ?? 0,
      unit: 'replicas',
      target: '0 and 0',
      met: (relay.logs.get('replica silent, cutting it') ?? 0) === 0 && errors === 0,
      note: `${errors} watch ERROR events`,
    });
    out.figure({
      name: 'time for every probe to reach the last write after the writers stop',
      value: round(catchUpMs, 1),
      unit: 'ms',
      note: `${caughtUp ? 'caught up' : 'NOT caught up within 30 s'}; ${errors} watch ERROR events (410 = cut as too slow); ${short} counting watchers short of ${expected} events`,
    });
    out.plots.push({
      file: 'keepup-lag.svg',
      title: 'lag over time at max write rate',
      svg: lineChart({
        title: `Lag from put ack to arrival at ${Math.round(loadedRate)} puts/s (every 7th revision)`,
        xLabel: 'seconds since writers started',
        yLabel: 'lag (ms, log scale)',
        series,
        logY: true,
        hLines: [{ y: 100, label: 'target p99 100 ms' }],
      }),
    });
    for (const w of watches.splice(0)) w.close();

    // Many watchers at a paced rate: does fan-out to 1,000 watchers keep lag low when the
    // write rate is modest?
    // The next stage starts from caught-up replicas, or its lag would be this stage's backlog.
    const backlogStart = performance.now();
    const drained = await Promise.all(
      colos.map((c) =>
        waitReplica(workerUrl, c, ROOT, loaded.lastRevision, 90_000).then(
          () => true,
          () => false,
        ),
      ),
    );
    out.details['replicas: time to drain the backlog after the watchers closed (ms)'] = round(
      performance.now() - backlogStart,
      0,
    );
    if (!drained.every(Boolean)) throw new Error('replicas did not drain the backlog within 90 s');
    const cpu1 = cpuSnapshot(pids);
    const t1 = performance.now();
    const paced = await manyWatchersStage(
      client,
      workerUrl,
      colos,
      manyWatchers,
      loaded.lastRevision,
      ctx.quick,
    );
    out.details['cores used in the many-watchers stage (of 2)'] = coresUsed(
      cpu1,
      cpuSnapshot(pids),
      (performance.now() - t1) / 1000,
    );
    out.details.manyWatchers = paced.details;
    out.distributions[`lag at probes, ${manyWatchers} edge watchers, ~${paced.rate} puts/s`] = paced.lag;
    out.figure({
      name: `replica lag p99 with ${manyWatchers} edge watchers at ${paced.rate} puts/s`,
      value: paced.lag.p99,
      unit: 'ms',
      target: '< 100 ms',
      met: paced.lag.p99 < 100,
      note: paced.note,
    });
    out.notes.push(
      `The issue asks for 1,000 edge watchers at etcd's max rate. Every watcher receives every event, so that is max rate × 1,000 event lines per second through one workerd thread and one client process on 2 cores; the loaded run uses ${edgeWatchers} and the 1,000-watcher stage a paced rate instead.`,
    );
    return out.build();
  } catch (error) {
    return out.build(error);
  } finally {
    for (const w of watches) w.close();
    await worker?.stop();
    await relay?.stop();
    client.close();
    await etcd.stop();
  }
}

async function manyWatchersStage(
  client: Etcd3,
  workerUrl: string,
  colos: string[],
  count: number,
  from: number,
  quick: boolean,
) {
  progress(`[3] ${count} edge watchers at a paced rate`);
  const watches: WatchHandle[] = [];
  const times = colos.map(() => new Map<number, number>());
  try {
    colos.forEach((c, i) => {
      watches.push(
        openWatch({
          url: `${workerUrl}/v1/list${PREFIX}?watch=true&resourceVersion=${from}`,
          headers: coloHeaders(c),
          onEvent: (rev, at) => times[i]?.set(rev, at),
        }),
      );
    });
    for (let i = watches.length; i < count; i++) {
      const c = colos[i % colos.length] ?? 'keep-0';
      watches.push(
        openWatch({
          url: `${workerUrl}/v1/list${PREFIX}?watch=true&resourceVersion=${from}`,
          headers: coloHeaders(c),
          countOnly: true,
        }),
      );
    }
    await Promise.all(watches.map((w) => w.opened));
    const acks = new Map<number, number>();
    // 4 writers each pausing 20 ms: ~150-200 puts/s.
    const run = await drive(client, quick ? 2_000 : 5_000, 4, acks, 20);
    await waitFor(
      'probes at the last revision',
      () => watches.slice(0, colos.length).every((w) => w.revision >= run.lastRevision),
      30_000,
      5,
    ).catch(() => {});
    const lags: number[] = [];
    for (const t of times)
      for (const [rev, ack] of acks) {
        const at = t.get(rev);
        if (at !== undefined) lags.push(Math.max(0, at - ack));
      }
    const errors = watches.reduce((n, w) => n + w.errors, 0);
    const short = watches.filter((w) => w.events < run.writes).length;
    const rate = Math.round(run.writes / run.seconds);
    return {
      rate,
      lag: summarize(lags),
      note: `${errors} ERROR events, ${short} of ${count} watchers short of ${run.writes} events at the end`,
      details: { watchers: count, writes: run.writes, seconds: round(run.seconds, 2), errors, short },
    };
  } finally {
    for (const w of watches) w.close();
  }
}
