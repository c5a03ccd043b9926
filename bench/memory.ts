/**
 * (4) Memory per cached object: the relay's heap for N objects of 500 B, in a child process with
 * `--expose-gc` (heap-probe.ts), at two sizes; the per-object cost is the slope between them, so
 * fixed costs (gRPC channels, hono, the history ring's empty arrays) cancel out. The same for an
 * edge replica's cache, measured in Node's V8 (workerd runs V8 too, but with pointer compression,
 * so its objects are somewhat smaller; this is an upper bound).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createEtcdClient } from '../relay/etcd/client.ts';
import { startEtcd } from '../scripts/lib/etcd-process.ts';
import { repoRoot } from './lib/machine.ts';
import { SectionBuilder, type SectionContext, type SectionResult } from './lib/result.ts';
import { keyFor, seed } from './lib/seed.ts';
import { progress, round } from './lib/stats.ts';

const run = promisify(execFile);
const VALUE_BYTES = 500;
const DO_LIMIT_BYTES = 128 * 2 ** 20;

interface Probe {
  objects: number;
  replicaObjects: number;
  relayHeapBytes: number;
  replicaHeapBytes: number;
  rssBytes: number;
  loadMs: number;
}

export async function benchMemory(ctx: SectionContext): Promise<SectionResult> {
  const out = new SectionBuilder(4, 'Memory per cached object (500 B values)');
  const sizes = ctx.quick ? [5_000, 20_000] : [10_000, 100_000];
  const etcd = await startEtcd({ extraArgs: ['--quota-backend-bytes', String(8 * 2 ** 30)] });
  const client = createEtcdClient({ endpoints: etcd.endpoint, callTimeoutMs: 60_000 });
  try {
    const probes: Probe[] = [];
    for (const n of sizes) {
      const prefix = `/registry/mem${n}/`;
      progress(`[4] seeding ${n} × ${VALUE_BYTES} B`);
      await seed(client, { prefix, count: n, valueBytes: VALUE_BYTES });
      progress(`[4] heap probe for ${n} objects`);
      const { stdout } = await run(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', 'bench/heap-probe.ts', etcd.endpoint, prefix],
        { cwd: repoRoot, timeout: Math.max(60_000, ctx.budgetMs), maxBuffer: 1 << 20 },
      );
      const probe = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Probe;
      if (probe.objects !== n) throw new Error(`probe cached ${probe.objects} objects, expected ${n}`);
      probes.push(probe);
      out.details[`probe ${n}`] = probe;
    }
    const [small, large] = probes;
    if (!small || !large) throw new Error('missing probes');
    const span = large.objects - small.objects;
    const relayPer = (large.relayHeapBytes - small.relayHeapBytes) / span;
    const replicaPer = (large.replicaHeapBytes - small.replicaHeapBytes) / span;
    const keyBytes = keyFor(`/registry/mem${large.objects}/`, 0).length;
    const budget = 1.25 * (keyBytes + VALUE_BYTES) + 64;
    out.details.keyBytes = keyBytes;
    out.details.valueBytes = VALUE_BYTES;
    out.figure({
      name: `relay heap per cached object (key ${keyBytes} B + value ${VALUE_BYTES} B)`,
      value: Math.round(relayPer),
      unit: 'B',
      target: `≤ 1.25×(key+value)+64 = ${Math.round(budget)} B`,
      met: relayPer <= budget,
      note: `slope ${small.objects}→${large.objects}; absolute at ${large.objects}: ${Math.round(large.relayHeapBytes / large.objects)} B/object; cache load ${Math.round(large.loadMs)} ms; RSS ${Math.round(large.rssBytes / 2 ** 20)} MB`,
    });
    out.figure({
      name: 'edge replica cache heap per object (Node V8, no pointer compression)',
      value: Math.round(replicaPer),
      unit: 'B',
      target: `≤ ${Math.round(budget)} B`,
      met: replicaPer <= budget,
    });
    // A Durable Object has 128 MB for everything; leave ~20 MB for the runtime, the event window's
    // references and a list response being built.
    const usable = DO_LIMIT_BYTES - 20 * 2 ** 20;
    out.figure({
      name: `largest prefix in one replica under 128 MB (${VALUE_BYTES} B values)`,
      value: Math.floor(usable / replicaPer),
      unit: 'objects',
      note: `(128 MB − 20 MB headroom) / ${Math.round(replicaPer)} B; a full list response also needs its JSON (≈${keyBytes + VALUE_BYTES + 80} B/object) while it is built`,
    });
    out.details.absoluteRelayBytesPerObject = round(large.relayHeapBytes / large.objects, 0);
    return out.build();
  } catch (error) {
    return out.build(error);
  } finally {
    client.close();
    await etcd.stop();
  }
}
