/**
 * (2) put → visible: from a put acknowledged by etcd to the change being visible
 *   - at an edge replica, to a GET with `resourceVersion=<put revision>` (NotOlderThan: the replica
 *     answers once it holds that revision; GET rv=0 polling would measure the polling instead);
 *   - at an edge watcher (one per replica) and at a relay watcher: the event's line arriving.
 * with 1, 20 and 50 replicas (distinct colos, see lib/edge.ts). Puts are sequential: the next one
 * starts when every observer saw the previous one (bounded by a timeout), so each sample is one
 * change crossing an idle system.
 */
import { performance } from 'node:perf_hooks';
import { createEtcdClient } from '../relay/etcd/client.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { coloHeaders, type RunningWorker, startWorker, waitReplica } from './lib/edge.ts';
import { spawnRelay } from './lib/relay-process.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { seed } from './lib/seed.ts';
import { progress, round, summarize, waitFor } from './lib/stats.ts';
import { cdfChart } from './lib/svg.ts';
import { openWatch, type WatchHandle } from './lib/watch.ts';

const ROOT = '/registry/';
const PREFIX = `${ROOT}prop/`;
const SECRET = 'bench-replication-secret';

export async function benchPropagation(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(2, 'put → visible at the relay and at edge replicas');
  const groups = ctx.quick ? [1, 5] : [1, 20, 50];
  const puts = ctx.quick ? 30 : 100;
  const etcd = await startEtcd();
  const client = createEtcdClient({ endpoints: etcd.endpoint });
  let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
  let worker: RunningWorker | undefined;
  const watches: WatchHandle[] = [];
  try {
    let revision = await seed(client, { prefix: PREFIX, count: 100, valueBytes: 1024 });
    relay = await spawnRelay({ etcd: etcd.endpoint, prefixes: [ROOT], secret: SECRET });
    await relay.ready();
    worker = await startWorker({ relayUrl: relay.url, prefixes: [ROOT], replicationSecret: SECRET });
    const workerUrl = worker.url;
    const key = Buffer.from(`${PREFIX}hot`);
    const value = Buffer.from('x'.repeat(1024));
    out.details.method = `${puts} sequential 1 KB puts per replica count; one watcher per replica and one relay watcher see every put; every other put is also read back by one GET rv=<rev> per replica (watcher samples come from the puts without GETs)`;
    const cdf: Record<string, number[]> = {};
    const colos: string[] = [];

    for (const replicas of groups) {
      progress(`[2] ${replicas} replica(s): waking and syncing`);
      while (colos.length < replicas) colos.push(`prop-${colos.length}`);
      const active = colos.slice(0, replicas);
      await Promise.all(active.map((c) => waitReplica(workerUrl, c, ROOT, revision, 60_000)));
      // Fresh watchers for this group, all starting after the current revision.
      for (const w of watches.splice(0)) w.close();
      const seen = new Map<number, number[]>(); // revision → arrival times at edge watchers
      const relaySeen = new Map<number, number>();
      const edgeWatchers = active.map((c) =>
        openWatch({
          url: `${workerUrl}/v1/list${PREFIX}?watch=true&resourceVersion=${revision}`,
          headers: coloHeaders(c),
          onEvent: (rev, at) => {
            const list = seen.get(rev) ?? [];
            list.push(at);
            seen.set(rev, list);
          },
        }),
      );
      const relayWatcher = openWatch({
        url: `${relay.url}/v1/list${PREFIX}?watch=true&resourceVersion=${revision}`,
        onEvent: (rev, at) => relaySeen.set(rev, at),
      });
      watches.push(...edgeWatchers, relayWatcher);
      await Promise.all(watches.map((w) => w.opened));

      const getLat: number[] = [];
      const watchLat: number[] = [];
      const relayLat: number[] = [];
      let forwarded = 0;
      let timeouts = 0;
      const deadline = performance.now() + ctx.budgetMs / groups.length;
      for (let i = 0; i < puts && performance.now() < deadline; i++) {
        const res = await client.kv.put({ key, value });
        const ack = performance.now();
        const rev = Number(res.header.revision);
        revision = rev;
        // Odd puts are also read back by GETs; even ones only by the watchers, so the watcher
        // samples of even puts are not slowed by the GETs' own work.
        const withGets = i % 2 === 1;
        const gets = (withGets ? active : []).map(async (c) => {
          const r = await fetch(`${workerUrl}/v1/kv${PREFIX}hot?resourceVersion=${rev}`, {
            headers: coloHeaders(c),
          });
          await r.arrayBuffer();
          if (r.headers.get('x-served-by') !== 'edge') forwarded++;
          getLat.push(performance.now() - ack);
        });
        await Promise.all(gets);
        try {
          await waitFor(
            `revision ${rev} at every watcher`,
            () => (seen.get(rev)?.length ?? 0) >= replicas && relaySeen.has(rev),
            5_000,
            1,
          );
        } catch {
          timeouts++;
        }
        if (!withGets) for (const at of seen.get(rev) ?? []) watchLat.push(Math.max(0, at - ack));
        const r = relaySeen.get(rev);
        if (r !== undefined) relayLat.push(Math.max(0, r - ack));
        seen.delete(rev);
        relaySeen.delete(rev);
      }
      const g = summarize(getLat);
      const w = summarize(watchLat);
      out.distributions[`${replicas} replicas: edge GET rv=<put rev>`] = g;
      out.distributions[`${replicas} replicas: edge watcher event`] = w;
      out.distributions[`${replicas} replicas: relay watcher event`] = summarize(relayLat);
      out.details[`${replicas} replicas: GETs forwarded to the relay`] = forwarded;
      out.details[`${replicas} replicas: puts not seen by every watcher within 5 s`] = timeouts;
      out.details[`${replicas} replicas: watch errors`] = watches.reduce((n, x) => n + x.errors, 0);
      cdf[`${replicas} replicas, edge watcher`] = watchLat;
      cdf[`${replicas} replicas, edge GET`] = getLat;
      if (replicas === groups[groups.length - 1]) cdf['relay watcher'] = relayLat;
      const target20 = replicas === 20 || (ctx.quick && replicas === groups[groups.length - 1]);
      for (const [what, s] of [
        ['edge watcher', w],
        ['edge GET rv=<rev>', g],
      ] as const) {
        out.figure({
          name: `put → visible, ${what}, ${replicas} replica(s): p50`,
          value: s.p50,
          unit: 'ms',
          ...(target20 ? { target: '≤ 5 ms (20 replicas)', met: s.p50 <= 5 } : {}),
        });
        out.figure({
          name: `put → visible, ${what}, ${replicas} replica(s): p99`,
          value: s.p99,
          unit: 'ms',
          ...(target20 ? { target: '≤ 20 ms (20 replicas)', met: s.p99 <= 20 } : {}),
        });
      }
      const relayS = summarize(relayLat);
      if (target20) {
        // The same puts seen by the relay's watcher, in the same run: how much the edge adds.
        out.figure({
          name: `put → visible, ${replicas} replicas: edge watcher p99 ÷ relay watcher p99`,
          value: round(w.p99 / Math.max(0.001, relayS.p99), 2),
          unit: '×',
          target: '≤ 3×',
          met: w.p99 <= 3 * relayS.p99,
          note: `edge ${w.p99} ms, relay ${relayS.p99} ms (p50 ${w.p50} / ${relayS.p50} ms)`,
        });
      }
      if (replicas === 1) {
        out.figure({
          name: 'put → visible, 1 replica: edge watcher p50 / relay watcher p50',
          value: w.p50,
          unit: 'ms',
          note: `relay ${relayS.p50} ms; before #13 the edge's was ~1.5–2 ms on a quiet machine`,
        });
      }
      progress(
        `[2] ${replicas} replicas: watcher p50 ${w.p50} p99 ${w.p99} ms; GET p50 ${g.p50} p99 ${g.p99} ms`,
      );
    }
    out.plots.push({
      file: 'put-visible-cdf.svg',
      title: 'put → visible latency',
      svg: cdfChart('put acknowledged → visible: latency CDF', cdf),
    });
    out.notes.push(
      'All replicas run in one workerd process (one isolate, one thread), on the same 2 cores as etcd, the relay and the client; a GET sample includes its own HTTP round trip.',
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
