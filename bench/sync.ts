/**
 * (5) Replica sync: how long a new replica takes from its first request to serving its own state
 * at etcd's revision for N × 500 B objects (snapshot over the replication stream + SQLite
 * write); and a warm restart, where workerd stops and starts on the same Durable Object storage,
 * so the replica loads its SQLite state and resumes the stream from its revision, with and
 * without a delta written while it was down. Readiness is read from the replica's status
 * endpoint every 5 ms (this measures sync, not a watch).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createEtcdClient } from '../relay/etcd/client.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { freePort } from '../scripts/lib/ports.ts';
import { type RunningWorker, startWorker, waitReplica } from './lib/edge.ts';
import { sampleHeap } from './lib/profile.ts';
import { spawnRelay } from './lib/relay-process.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { seed } from './lib/seed.ts';
import { progress, round, summarize } from './lib/stats.ts';

const ROOT = '/registry/';
const SECRET = 'bench-replication-secret';

export async function benchSync(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(5, 'Replica sync and warm restart');
  const count = ctx.quick ? 20_000 : 100_000;
  const reps = ctx.quick ? 1 : 3;
  const delta = ctx.quick ? 100 : 1_000;
  const etcd = await startEtcd({ extraArgs: ['--quota-backend-bytes', String(8 * 2 ** 30)] });
  const client = createEtcdClient({ endpoints: etcd.endpoint, callTimeoutMs: 60_000 });
  const persistDir = mkdtempSync(path.join(tmpdir(), 'edgewatch-bench-do-'));
  let relay: Awaited<ReturnType<typeof spawnRelay>> | undefined;
  let worker: RunningWorker | undefined;
  try {
    progress(`[5] seeding ${count} × 500 B`);
    let revision = await seed(client, { prefix: `${ROOT}sync/`, count, valueBytes: 500 });
    relay = await spawnRelay({ etcd: etcd.endpoint, prefixes: [ROOT], secret: SECRET });
    await relay.ready();
    const workerdStartMs: number[] = [];
    out.details['workerd start ms (each restart)'] = workerdStartMs;
    let inspectorPort = 0;
    const startW = async () => {
      const t0 = performance.now();
      inspectorPort = await freePort();
      const w = await startWorker({
        relayUrl: relay?.url ?? '',
        prefixes: [ROOT],
        replicationSecret: SECRET,
        persistDir,
        inspectorPort,
      });
      workerdStartMs.push(round(performance.now() - t0, 0));
      return w;
    };
    worker = await startW();
    const cold: number[] = [];
    const heapGrowth: number[] = [];
    for (let k = 0; k < reps; k++) {
      const colo = `sync-${k}`;
      // Every replica of a workerd shares its isolate: the growth over the heap before the sync
      // is this replica's (its cache, plus the garbage the sync left behind).
      const heap = await sampleHeap(`ws://127.0.0.1:${inspectorPort}/core:user:`);
      const t0 = performance.now();
      const status = await waitReplica(worker.url, colo, ROOT, revision, 120_000, 5);
      cold.push(performance.now() - t0);
      const { first, peak } = await heap.stop();
      heapGrowth.push(round((peak - first) / 2 ** 20, 1));
      if (status.objects !== count) throw new Error(`replica holds ${status.objects} objects, want ${count}`);
      progress(`[5] cold sync ${colo}: ${Math.round(cold[k] ?? 0)} ms`);
    }
    out.figure({
      name: `peak heap growth of workerd's isolate during a cold sync of ${count.toLocaleString('en')} objects`,
      value: Math.max(...heapGrowth),
      unit: 'MB',
      note: `each sync: ${heapGrowth.join(', ')} MB (Runtime.getHeapUsage sampled back to back over the inspector)`,
    });
    const coldS = summarize(cold);
    out.distributions[`cold sync of ${count} objects`] = coldS;
    out.figure({
      name: `new replica: sync ${count.toLocaleString('en')} × 500 B objects (median of ${cold.length})`,
      value: coldS.p50,
      unit: 'ms',
      target: count === 100_000 ? '≤ 2000 ms' : '≤ 2000 ms (for 100k)',
      met: coldS.p50 <= 2000,
      note: `first request → serving its own state at the seed revision; samples ${cold.map((c) => Math.round(c)).join(', ')} ms`,
    });

    // Warm restart without a delta: workerd restarts on the same storage.
    const warm = async (label: string) => {
      const t0 = performance.now();
      const status = await waitReplica(worker?.url ?? '', 'sync-0', ROOT, revision, 60_000, 5);
      const ms = performance.now() - t0;
      out.details[`${label}: stream messages received after restart`] = status.received ?? {};
      if (status.objects < count) throw new Error(`warm replica holds ${status.objects} objects`);
      progress(`[5] ${label}: ${Math.round(ms)} ms`);
      return ms;
    };
    await worker.stop();
    worker = await startW();
    const warm0 = await warm('warm restart, no delta');
    await worker.stop();
    worker = undefined;
    progress(`[5] writing a delta of ${delta} puts while workerd is down`);
    revision = await seed(client, {
      prefix: `${ROOT}sync/delta-`,
      count: delta,
      valueBytes: 500,
      perTxn: 1,
      concurrency: 16,
    });
    worker = await startW();
    const warmD = await warm(`warm restart + ${delta} puts`);
    out.figure({
      name: 'warm restart (SQLite load + resume), no delta',
      value: round(warm0, 1),
      unit: 'ms',
      target: '≤ 500 ms',
      met: warm0 <= 500,
      note: `${count} objects in SQLite; first request → serving at the current revision`,
    });
    out.figure({
      name: `warm restart + ${delta} puts written while down`,
      value: round(warmD, 1),
      unit: 'ms',
      target: '≤ 500 ms + delta',
      note: `delta cost ≈ ${round(warmD - warm0, 0)} ms for ${delta} revisions`,
    });
    return out.build();
  } catch (error) {
    return out.build(error);
  } finally {
    await worker?.stop();
    await relay?.stop();
    client.close();
    await etcd.stop();
    rmSync(persistDir, { recursive: true, force: true });
  }
}
