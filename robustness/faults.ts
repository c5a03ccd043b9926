/**
 * The faults of a run, on a seeded schedule, each recorded from start to recovery:
 *
 * - etcd: a member SIGKILLed and restarted (`etcdKill`; with a cluster, a random member) and,
 *   with a 3-member cluster, the leader itself (`etcdLeaderKill`); a compaction right up to what
 *   the recorder holds;
 * - the relay (a child process): SIGTERM and start again on the same port (`relayRestart`), or
 *   SIGKILL and start again (`relayKill`);
 * - the relay↔etcd links, through one TCP proxy per member: cut, delayed or black-holed;
 * - the edge: workerd stopped and started on its storage, so every Durable Object is evicted and
 *   warm-restarts from SQLite (`edgeEvict`); the edge↔relay link, through its own TCP proxy, cut,
 *   delayed or black-holed;
 * - a watcher that stops reading for a while;
 * - etcd given another history: wiped, or restored from a snapshot with and without
 *   `--bump-revision --mark-compacted`, while the tiers run or while they are stopped
 *   (robustness/history-faults.ts).
 */

import type { TcpProxy } from '../test/helpers/tcp-proxy.ts';
import type { Watcher } from './clients.ts';
import { changeHistory, type HistoryTargets } from './history-faults.ts';
import type { FaultKind, FaultRecord } from './model.ts';
import type { Prng } from './prng.ts';
import { sleep } from './writers.ts';

/** An etcd member a fault can crash. */
export interface KillableMember {
  readonly name: string;
  kill(): Promise<void>;
  /** Resolves once the member is healthy again. */
  restart(): Promise<void>;
}

/** What faults act on. Optional parts are absent when the run has no such piece. */
export interface FaultTargets {
  readonly etcdMembers: readonly KillableMember[];
  /** The current leader (a cluster only). */
  leader?(): Promise<KillableMember>;
  /** Between the relay and each etcd member. */
  readonly etcdProxies: readonly TcpProxy[];
  /** Between the edge and the relay. */
  readonly edgeProxy?: TcpProxy;
  readonly watchers: readonly Watcher[];
  readonly relay: {
    kill(): Promise<void>;
    stop(): Promise<void>;
    /** Resolves once the relay is ready again (or serving, when etcd keeps it from loading). */
    start(): Promise<void>;
  };
  /** The edge's workerd: stop (every Durable Object evicted) and start on the same storage. */
  readonly edge?: { suspend(): Promise<void>; restart(): Promise<void> };
  /** Compacts etcd at the recorder's revision; returns the revision (undefined: nothing to do). */
  compactNearHead(): Promise<number | undefined>;
  /** What the faults that give etcd another history act on (robustness/history-faults.ts). */
  readonly history: HistoryTargets;
}

export interface ScheduledFault {
  /** Offset from the start of the run, ms. */
  readonly at: number;
  readonly kind: FaultKind;
}

/**
 * Every kind in `kinds` once (in a seeded order), then random kinds, evenly spaced over the
 * middle of the run so the end of it is calm enough for every stream to catch up.
 */
export function faultSchedule(rng: Prng, durationMs: number, kinds: readonly FaultKind[]): ScheduledFault[] {
  if (kinds.length === 0) return [];
  const slots = Math.max(kinds.length, Math.floor((durationMs * 0.7) / 6_000));
  const first = durationMs * 0.1;
  const span = durationMs * 0.65;
  const order = rng.shuffle(kinds);
  const out: ScheduledFault[] = [];
  for (let i = 0; i < slots; i++) {
    out.push({ at: Math.round(first + (span * i) / slots), kind: order[i] ?? rng.pick(kinds) });
  }
  return out;
}

/** Injects one fault and waits until the system is put back. */
export async function inject(kind: FaultKind, t: FaultTargets, rng: Prng): Promise<FaultRecord> {
  const startedAt = Date.now();
  let detail: string | undefined;
  switch (kind) {
    case 'etcdKill':
    case 'etcdLeaderKill': {
      const member = kind === 'etcdLeaderKill' && t.leader ? await t.leader() : rng.pick(t.etcdMembers);
      await member.kill();
      const down = rng.int(300, 1500);
      await sleep(down);
      await member.restart();
      detail = `${t.etcdMembers.length > 1 ? `${member.name} ` : ''}down ${down} ms`;
      break;
    }
    case 'compactNearHead': {
      const revision = await t.compactNearHead();
      detail = `at ${revision ?? '(nothing new)'}`;
      break;
    }
    case 'relayRestart':
    case 'relayKill': {
      await (kind === 'relayKill' ? t.relay.kill() : t.relay.stop());
      const down = rng.int(0, 500);
      await sleep(down);
      await t.relay.start();
      detail = `down ${Date.now() - startedAt} ms`;
      break;
    }
    case 'linkCut':
    case 'linkDelay':
    case 'blackHole': {
      // With a cluster, sometimes only the link to one member fails (the relay's client must move on).
      const one = t.etcdProxies.length > 1 && rng.chance(0.4);
      const proxies = one ? [rng.pick(t.etcdProxies)] : t.etcdProxies;
      const which = one ? `relay↔etcd member ${t.etcdProxies.indexOf(proxies[0] as TcpProxy)}` : 'relay↔etcd';
      detail = `${which}: ${await linkFault(kind, proxies, rng, rng.chance(0.5))}`;
      break;
    }
    case 'edgeLinkCut':
    case 'edgeLinkDelay':
    case 'edgeBlackHole': {
      if (!t.edgeProxy) throw new Error(`${kind} needs the edge`);
      const base = kind === 'edgeLinkCut' ? 'linkCut' : kind === 'edgeLinkDelay' ? 'linkDelay' : 'blackHole';
      detail = `edge↔relay: ${await linkFault(base, [t.edgeProxy], rng, rng.chance(0.5))}`;
      break;
    }
    case 'edgeEvict': {
      if (!t.edge) throw new Error('edgeEvict needs the edge');
      await t.edge.suspend();
      const down = rng.int(100, 1500);
      await sleep(down);
      await t.edge.restart();
      detail = `workerd down ${Date.now() - startedAt} ms`;
      break;
    }
    case 'etcdWipe':
    case 'etcdWipeStopped':
    case 'etcdRestore':
    case 'etcdRestoreStopped':
    case 'etcdRestoreBumped':
    case 'etcdRestoreBumpedStopped':
      detail = await changeHistory(kind, t.history, rng);
      break;
    case 'slowWatcher': {
      const watcher = rng.pick(t.watchers);
      const hold = rng.int(2000, 5000);
      watcher.stallUntil = Date.now() + hold;
      await sleep(hold);
      detail = `${watcher.name} for ${hold} ms`;
      break;
    }
  }
  return { kind, startedAt, endedAt: Date.now(), ...(detail !== undefined ? { detail } : {}) };
}

/**
 * Cuts, delays or black-holes every connection through `proxies`. A delay ends with a reset when
 * `resetAfterDelay` (a slow link that then breaks) and otherwise just ends: the proxy keeps byte
 * order when the delay is lifted, so the streams go on.
 */
async function linkFault(
  kind: 'linkCut' | 'linkDelay' | 'blackHole',
  proxies: readonly TcpProxy[],
  rng: Prng,
  resetAfterDelay: boolean,
): Promise<string> {
  if (kind === 'linkCut') {
    for (const p of proxies) p.cutAll();
    return 'connections reset';
  }
  const hold = rng.int(1000, 3000);
  if (kind === 'blackHole') {
    for (const p of proxies) p.pause();
    await sleep(hold);
    for (const p of proxies) p.resume();
    return `black hole for ${hold} ms`;
  }
  const ms = rng.int(50, 300);
  for (const p of proxies) p.setDelay(ms);
  await sleep(hold);
  for (const p of proxies) {
    p.setDelay(0);
    if (resetAfterDelay) p.cutAll();
  }
  return `${ms} ms each way for ${hold} ms${resetAfterDelay ? ', then reset' : ''}`;
}
