/**
 * Run by memory.ts as `node --expose-gc --import tsx bench/heap-probe.ts <etcd> <prefix>`: starts
 * a relay in this otherwise idle process, waits for its cache to load the prefix, and prints the
 * V8 heap before and after (each after full collections) as one JSON line on stdout. Then it
 * builds an edge replica's cache (core WatchCache with the Durable Object's history limits) from
 * wire-decoded copies of the same objects and prints that heap growth too.
 */

import { systemClock } from '../core/types.ts';
import { WatchCache } from '../core/watch-cache.ts';
import { parseConfig } from '../relay/config.ts';
import { silentLogger } from '../relay/log.ts';
import { startRelay } from '../relay/server.ts';

const [etcd, prefix] = process.argv.slice(2);
const gc = (globalThis as { gc?: () => void }).gc;
if (!etcd || !prefix || !gc) {
  process.stderr.write('usage: node --expose-gc --import tsx bench/heap-probe.ts <etcd> <prefix>\n');
  process.exit(2);
}
const collect = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage().heapUsed;
};

const before = await collect();
const relay = await startRelay(
  parseConfig(['--port', '0', '--etcd', etcd, '--prefix', prefix, '--insecure-no-auth'], {}),
  silentLogger,
);
const t0 = performance.now();
await relay.ready();
const loadMs = performance.now() - t0;
const cache = relay.caches.get(prefix)?.cache;
if (!cache) throw new Error('no cache');
const relayAfter = await collect();
const objects = cache.snapshot().list(prefix).items;

// The replica decodes its objects from the replication stream: fresh copies, not shared ones.
const wire = JSON.stringify(objects);
const replicaBefore = await collect();
const replica = new WatchCache({
  clock: systemClock,
  maxEvents: 20_000,
  maxAgeMs: 75_000,
  maxBytes: 16 * 1024 * 1024,
});
replica.replace(cache.revision, JSON.parse(wire));
const replicaAfter = await collect();
process.stdout.write(
  `${JSON.stringify({
    objects: cache.size,
    replicaObjects: replica.size,
    relayHeapBytes: relayAfter - before,
    replicaHeapBytes: replicaAfter - replicaBefore,
    rssBytes: process.memoryUsage().rss,
    loadMs,
  })}\n`,
);
await relay.stop();
process.exit(0);
