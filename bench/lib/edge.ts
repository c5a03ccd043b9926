/**
 * The edge tier for benchmarks: the real Worker in workerd (test/helpers/worker.ts) and a way to
 * reach many distinct replicas from one workerd.
 *
 * A replica is named `${colo}|${prefix}|0` and the colo comes from `request.cf.colo`. Miniflare's
 * entry worker takes a request's `cf` object from the `MF-CF-Blob` header when present (that is
 * how `dispatchFetch(url, { cf })` works), so a plain HTTP request with
 * `MF-CF-Blob: {"colo":"bench-7"}` lands on replica `bench-7|/registry/|0`. One workerd process
 * therefore hosts N replicas; they share its isolate and thread, as Durable Objects that share a
 * machine would.
 */
import { type RunningWorker, startWorker } from '../../test/helpers/worker.ts';
import { waitFor } from './stats.ts';

export type { RunningWorker };
export { startWorker };

/** Headers that route a request to the replica at `colo`. */
export function coloHeaders(colo: string): Record<string, string> {
  return { 'MF-CF-Blob': JSON.stringify({ colo }) };
}

export interface ReplicaStatus {
  status: string;
  revision: number;
  ready: boolean;
  objects: number;
  connected: boolean;
  received?: Record<string, number>;
}

export async function replicaStatus(workerUrl: string, colo: string, prefix: string): Promise<ReplicaStatus> {
  const res = await fetch(`${workerUrl}/_replica/status${prefix}`, { headers: coloHeaders(colo) });
  if (!res.ok) throw new Error(`replica status ${res.status}: ${await res.text()}`);
  return (await res.json()) as ReplicaStatus;
}

/** Wakes the replica at `colo` and waits until it serves from its own state at `revision` or later. */
export async function waitReplica(
  workerUrl: string,
  colo: string,
  prefix: string,
  revision: number,
  timeoutMs: number,
  everyMs = 10,
): Promise<ReplicaStatus> {
  let last: ReplicaStatus | undefined;
  await waitFor(
    `replica ${colo} at revision ${revision}`,
    async () => {
      last = await replicaStatus(workerUrl, colo, prefix);
      return last.ready && last.revision >= revision;
    },
    timeoutMs,
    everyMs,
  );
  if (!last) throw new Error('no status');
  return last;
}
