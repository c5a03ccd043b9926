/**
 * One robustness run: a real etcd (one member, or a 3-member cluster), the recorder, the relay as
 * a child process behind one TCP proxy per etcd member, optionally the Worker in workerd behind
 * its own proxy to the relay, the seeded workload and fault schedule for `durationMs`, then the
 * checker's verdict on everything recorded.
 *
 *     etcd member(s) ◄── recorder (ground truth)            writers ──► etcd
 *      ▲
 *     proxy per member (cut / delay / black-hole) ◄── relay process ◄── readers, watchers
 *                                                       ▲
 *                              proxy (cut / delay / black-hole) ◄── edge (workerd) ◄── readers, watchers
 *
 * Bounded: every loop stops with the run, every request has a deadline, teardown always runs.
 * On a violation the seed and a minimal history (the offending records and the history up to
 * the revisions they involve) go to `.data/robustness/`, and the run's relay and etcd logs stay
 * in the folder the artifact names.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RestorableCluster } from '../scripts/lib/etcd-history.ts';
import { startEtcd, startEtcdCluster } from '../scripts/lib/etcd-process.ts';
import { freePort } from '../scripts/lib/ports.ts';
import { startProxy, type TcpProxy } from '../test/helpers/tcp-proxy.ts';
import { startWorker } from '../test/helpers/worker.ts';
import { type CheckStats, checkRun, type Violation } from './checker.ts';
import { type ClientContext, type ReadTarget, runReader, Watcher } from './clients.ts';
import { type FaultTargets, faultSchedule, inject, type KillableMember } from './faults.ts';
import { Histories } from './history-faults.ts';
import { InformerClient } from './informers.ts';
import {
  type FaultKind,
  type FaultRecord,
  faultKindsFor,
  type ReadRecord,
  type RunRecord,
  type WatchSession,
} from './model.ts';
import { Prng } from './prng.ts';
import { Recorder, rawClient } from './recorder.ts';
import { relayProcess } from './relay-process.ts';
import {
  compact,
  Observed,
  runWriter,
  sleep,
  type WriterCounts,
  WriterGate,
  workloadKeys,
} from './writers.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EXPOSED = '/registry/';
const BASE = '/registry/rb/';
const SECRET = 'robustness-replication-secret';
/** Both tiers self-check this often during a run (their defaults are a minute). */
const SELF_CHECK_MS = 2_000;

export interface RunOptions {
  seed: number;
  durationMs: number;
  /** Also read and watch through the edge Worker (workerd via miniflare). */
  edge?: boolean;
  /** A 3-member etcd cluster instead of one member. */
  cluster?: boolean;
  /** Fault kinds to schedule (default: every kind this setup can inject, `faultKindsFor`). */
  faults?: readonly FaultKind[];
  readers?: number;
  watchers?: number;
  /** Progress lines go here (default: nowhere). */
  log?: (line: string) => void;
  /** Where a failing run's history is written (default `.data/robustness/`). */
  outDir?: string;
}

export interface RunSummary {
  seed: number;
  durationMs: number;
  writes: WriterCounts;
  reads: number;
  sessions: number;
  watchEvents: number;
  /** The kinds the schedule held (each fired at least once, unless the run failed). */
  scheduled: FaultKind[];
  faults: Record<string, number>;
  stats: CheckStats;
  /** The tiers' own history checks, read from their status pages at the end of the run. */
  selfChecks: SelfCheckCounts;
  violations: Violation[];
  /** The file with the seed and the minimal history, when there were violations. */
  artifact?: string;
  /** Everything recorded (for tests that re-check it, e.g. after planting a fault). */
  record: RunRecord;
}

export async function runRobustness(options: RunOptions): Promise<RunSummary> {
  const log = options.log ?? (() => {});
  const rng = new Prng(options.seed);
  const started = Date.now();
  const setup = { edge: options.edge === true, cluster: options.cluster === true };
  const kinds = options.faults ?? faultKindsFor(setup);
  const possible = faultKindsFor(setup);
  for (const k of kinds)
    if (!possible.includes(k))
      throw new Error(`fault ${k} needs ${k.startsWith('edge') ? '--edge' : '--cluster'}`);
  const logDir = mkdtempSync(path.join(tmpdir(), 'edgewatch-robustness-'));
  let keepLogs = false;
  const cleanups: (() => Promise<void> | void)[] = [
    () => void (keepLogs || rmSync(logDir, { recursive: true, force: true })),
  ];
  try {
    let endpoints: readonly string[];
    let members: KillableMember[];
    let leader: (() => Promise<KillableMember>) | undefined;
    let restorable: RestorableCluster;
    if (setup.cluster) {
      const cluster = await startEtcdCluster(3, { logDir });
      cleanups.push(() => cluster.stop());
      endpoints = cluster.endpoints;
      members = [...cluster.members];
      leader = () => cluster.leader();
      restorable = cluster;
    } else {
      const etcd = await startEtcd({ logFile: path.join(logDir, 'etcd.log') });
      cleanups.push(() => etcd.stop());
      endpoints = [etcd.endpoint];
      members = [{ name: 'etcd', kill: () => etcd.kill(), restart: () => etcd.restart() }];
      // startEtcd bootstraps with etcd's default cluster token.
      restorable = { members: [etcd], initialCluster: `${etcd.name}=${etcd.peerUrl}`, token: 'etcd-cluster' };
    }
    const recorder = new Recorder(endpoints);
    recorder.start();
    cleanups.push(() => recorder.stop());
    const client = rawClient(endpoints);
    cleanups.push(() => client.close());
    const etcdProxies: TcpProxy[] = [];
    for (const e of endpoints) {
      const proxy = await startProxy(Number(new URL(e).port));
      etcdProxies.push(proxy);
      cleanups.push(() => proxy.close());
    }

    const relayPort = await freePort();
    const relay = relayProcess({
      port: relayPort,
      etcdEndpoints: etcdProxies.map((p) => `http://127.0.0.1:${p.port}`),
      prefixes: [EXPOSED],
      secret: SECRET,
      logFile: path.join(logDir, 'relay.log'),
      extraArgs: ['--self-check-interval-ms', String(SELF_CHECK_MS)],
    });
    cleanups.push(() => relay.close());
    await relay.start();
    // The tiers report their history windows (/_relay/status, /_replica/status/…), so a 410 is
    // checked against the window the tier had, not taken on trust.
    const targets: ReadTarget[] = [
      { name: 'relay', baseUrl: relay.url, windowStart: (prefix) => relayWindowStart(relay.url, prefix) },
    ];
    let edgeProxy: TcpProxy | undefined;
    let edge: FaultTargets['edge'];
    let edgeUrl: string | undefined;
    if (setup.edge) {
      const proxy = await startProxy(relayPort);
      cleanups.push(() => proxy.close());
      edgeProxy = proxy;
      const worker = await startWorker({
        relayUrl: `http://127.0.0.1:${proxy.port}`,
        prefixes: [EXPOSED],
        replicationSecret: SECRET,
        vars: { EDGE_SELF_CHECK_MS: String(SELF_CHECK_MS) },
      });
      cleanups.push(() => worker.stop());
      edge = worker;
      edgeUrl = worker.url;
      targets.push({
        name: 'edge',
        baseUrl: worker.url,
        // A watch too old for the replica is forwarded: then the relay's window is the one.
        windowStart: (prefix, servedBy) =>
          servedBy === 'edge' ? replicaWindowStart(worker.url, prefix) : relayWindowStart(relay.url, prefix),
      });
    }

    let stopped = false;
    let id = 0;
    const observed = new Observed();
    const reads: ReadRecord[] = [];
    const sessions: WatchSession[] = [];
    const histories = new Histories(recorder);
    const gate = new WriterGate();
    const faults: FaultRecord[] = [];
    const writes: WriterCounts = { puts: 0, deletes: 0, txns: 0, leasePuts: 0, failed: 0, compactions: 0 };
    const keys = workloadKeys(BASE);
    const ctx: ClientContext = {
      targets,
      exposed: EXPOSED,
      keys,
      listPrefixes: [BASE, `${BASE}sub/`, EXPOSED],
      observed,
      reads,
      sessions,
      nextId: () => ++id,
      stopped: () => stopped,
    };
    const watchers = Array.from(
      { length: options.watchers ?? 3 },
      (_, i) => new Watcher(ctx, `watcher${i}`, i % 2 === 0 ? BASE : `${BASE}sub/`, rng.fork(`watcher${i}`)),
    );

    // Informers through the client: one at the first target over the base prefix, one at the last
    // (the edge, when there is one) over the sub-prefix; each keeps its target for the whole run.
    const informers = [
      new InformerClient('informer0', targets[0] as ReadTarget, BASE, observed),
      new InformerClient('informer1', targets[targets.length - 1] as ReadTarget, `${BASE}sub/`, observed),
    ];
    for (const informer of informers) informer.start();

    const loops: Promise<void>[] = [];
    loops.push(
      runWriter(client, keys, '/outside/k', rng.fork('writer'), observed, writes, () => stopped, gate),
    );
    for (let i = 0; i < (options.readers ?? 3); i++)
      loops.push(runReader(ctx, `reader${i}`, rng.fork(`reader${i}`)));
    for (const w of watchers) loops.push(w.run());
    loops.push(
      (async () => {
        for (let i = 0; !stopped && i < 100_000; i++) {
          await sleep(4_000);
          if (!stopped)
            await compact(client, recorder, recorder.revision - 30, histories.compactions, writes);
        }
      })(),
    );
    loops.push(
      (async () => {
        for (let i = 0; !stopped && i < 100_000; i++) {
          await sleep(5_000);
          if (stopped) return;
          const events = watchers.reduce((n, w) => n + w.events, 0);
          const last = faults[faults.length - 1];
          const fired = `${faults.length}${last ? `, last ${last.kind}` : ''}`;
          log(
            `[${Math.round((Date.now() - started) / 1000)}s] etcd rev ${recorder.revision}, writes ${writes.puts + writes.deletes + writes.txns + writes.leasePuts} (failed ${writes.failed}), reads ${reads.length}, watch events ${events}, informer changes ${informers.reduce((n, i) => n + i.stats.changes, 0)}, faults ${fired}`,
          );
        }
      })(),
    );

    const faultTargets: FaultTargets = {
      etcdMembers: members,
      ...(leader ? { leader } : {}),
      etcdProxies,
      ...(edgeProxy ? { edgeProxy } : {}),
      ...(edge ? { edge } : {}),
      watchers,
      relay: { kill: () => relay.kill(), stop: () => relay.stop(), start: () => relay.start(15_000) },
      compactNearHead: () => compact(client, recorder, recorder.revision, histories.compactions, writes),
      history: {
        cluster: restorable,
        recorder,
        histories,
        observed,
        writers: gate,
        head: async () =>
          Number((await client.kv.range({ key: Buffer.from([0]), count_only: true })).header.revision),
        relay: { stop: () => relay.stop(), start: () => relay.start(15_000) },
        ...(edge ? { edge } : {}),
        scratch: logDir,
      },
    };
    const schedule = faultSchedule(rng.fork('faults'), options.durationMs, kinds);
    const faultRng = rng.fork('inject');
    const runStart = Date.now();
    for (const planned of schedule) {
      const wait = runStart + planned.at - Date.now();
      if (wait > 0) await sleep(wait);
      log(`[${Math.round((Date.now() - started) / 1000)}s] fault ${planned.kind}`);
      const record = await inject(planned.kind, faultTargets, faultRng);
      faults.push(record);
      log(
        `[${Math.round((Date.now() - started) / 1000)}s] fault ${planned.kind} over${record.detail ? ` (${record.detail})` : ''}`,
      );
    }
    const left = runStart + options.durationMs - Date.now();
    if (left > 0) await sleep(left);

    stopped = true;
    for (const w of watchers) w.interrupt();
    await Promise.race([Promise.all([...loops, ...informers.map((i) => i.stop())]), sleep(20_000)]);
    const head = Number((await client.kv.range({ key: Buffer.from([0]), count_only: true })).header.revision);
    await recorder.waitFor(head, 15_000);
    if (recorder.problem) log(`recorder problem: ${recorder.problem}`);

    const selfChecks = await selfCheckCounts(relay.url, edgeUrl);
    const { truth, epochs } = histories.finish(head);
    const record: RunRecord = {
      seed: options.seed,
      prefix: BASE,
      truth,
      ...(epochs.length > 0 ? { epochs } : {}),
      reads,
      sessions,
      faults,
      informers: informers.map((i) => i.record),
    };
    const { violations, stats } = checkRun(record);
    const faultCounts: Record<string, number> = {};
    for (const f of faults) faultCounts[f.kind] = (faultCounts[f.kind] ?? 0) + 1;
    const summary: RunSummary = {
      seed: options.seed,
      durationMs: Date.now() - started,
      writes,
      reads: reads.length,
      sessions: sessions.length,
      watchEvents: sessions.reduce((n, s) => n + s.events.length, 0),
      scheduled: [...new Set(schedule.map((f) => f.kind))],
      faults: faultCounts,
      stats,
      selfChecks,
      violations,
      record,
    };
    if (violations.length > 0) {
      keepLogs = true;
      summary.artifact = writeArtifact(
        record,
        violations,
        options.outDir ?? path.join(root, '.data/robustness'),
        logDir,
      );
    }
    return summary;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch {
        // teardown is best effort; the next one still runs
      }
    }
  }
}

/** Writes the seed, the violations and the smallest record that still shows them. */
function writeArtifact(
  record: RunRecord,
  violations: readonly Violation[],
  dir: string,
  logDir: string,
): string {
  const refs = new Set(violations.slice(0, 50).flatMap((v) => v.refs));
  const reads = record.reads.filter((r) => refs.has(`read:${r.id}`));
  const watchers = new Set(record.sessions.filter((s) => refs.has(`watch:${s.id}`)).map((s) => s.watcher));
  // Whole watchers: the resume rule is checked from one session to the next.
  const sessions = record.sessions.filter((s) => watchers.has(s.watcher));
  const informers = (record.informers ?? []).filter((i) => refs.has(`informer:${i.name}`));
  let top = 2;
  for (const i of informers)
    for (const e of i.entries) top = Math.max(top, e.op === 'sync' || e.op === 'snapshot' ? e.revision : 0);
  for (const r of reads) top = Math.max(top, r.served ?? 0, r.rv ?? 0, r.floor);
  for (const s of sessions) {
    top = Math.max(top, s.headerRv ?? 0, s.floor, s.start.kind === 'after' ? s.start.rv : 0);
    for (const e of s.events)
      top = Math.max(top, Number(e.object.modRevision ?? e.object.resourceVersion ?? 0) || 0);
  }
  const head = Math.min(top, record.truth.head);
  const minimal: RunRecord = {
    ...record,
    truth: { ...record.truth, head, revisions: record.truth.revisions.filter((r) => r.revision <= head) },
    reads,
    sessions,
    informers,
  };
  const recheck = checkRun(minimal).violations.length;
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `seed-${record.seed}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      { seed: record.seed, logs: logDir, violations, minimalRecordViolations: recheck, record: minimal },
      null,
      1,
    ),
  );
  return file;
}

/** The one closing line: operations, reads, watch events, faults by kind, violations. */
export function summaryLine(s: RunSummary): string {
  const w = s.writes;
  const faults =
    Object.entries(s.faults)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || 'none';
  const servedBy = new Map<string, number>();
  for (const r of s.record.reads)
    if (r.servedBy) servedBy.set(r.servedBy, (servedBy.get(r.servedBy) ?? 0) + 1);
  const tiers = [...servedBy].map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  const expiries =
    Object.entries(s.stats.expiries)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ') || 'none';
  return (
    `robustness seed=${s.seed} ${Math.round(s.durationMs / 1000)}s: ` +
    `ops=${w.puts + w.deletes + w.txns + w.leasePuts} (put ${w.puts}, delete ${w.deletes}, txn ${w.txns}, lease ${w.leasePuts}, failed ${w.failed}, compactions ${w.compactions}); ` +
    `reads=${s.reads} (checked ${s.stats.readsChecked}, tolerated ${s.stats.readsTolerated}; served by ${tiers}); ` +
    `watch sessions=${s.sessions} events=${s.watchEvents} (checked ${s.stats.eventsChecked} live + ${s.stats.initialEventsChecked} initial, ${s.stats.bookmarks} bookmarks, 410s: ${expiries}); ` +
    `informers=${s.record.informers?.length ?? 0} (syncs checked ${s.stats.informerSyncs}, of them resumed into an unbumped history ${s.stats.informerSpliced}, changes ${s.stats.informerChanges}); ` +
    `faults: ${faults}; ${selfCheckLine(s.selfChecks)}; violations=${s.violations.length}`
  );
}

/** What the tiers report of their history checks (/_relay/status, /_replica/status). */
export interface SelfCheckCounts {
  /** The relay process's counts since its last start (it restarts during a run). */
  readonly relay?: { checks: number; ok: number; mismatches: number; historyChanges: number };
  readonly edge?: {
    relayChecks: number;
    relayMismatches: number;
    selfChecks: number;
    selfMismatches: number;
    repairs: number;
  };
}

async function selfCheckCounts(relayUrl: string, edgeUrl: string | undefined): Promise<SelfCheckCounts> {
  const out: { relay?: SelfCheckCounts['relay']; edge?: SelfCheckCounts['edge'] } = {};
  try {
    const body = (await (await fetch(`${relayUrl}/_relay/status`)).json()) as {
      prefixes?: { prefix: string; history?: NonNullable<SelfCheckCounts['relay']> }[];
    };
    const h = body.prefixes?.find((p) => p.prefix === EXPOSED)?.history;
    if (h)
      out.relay = { checks: h.checks, ok: h.ok, mismatches: h.mismatches, historyChanges: h.historyChanges };
  } catch {
    // the relay is not answering: no counts
  }
  if (edgeUrl !== undefined) {
    try {
      const body = (await (await fetch(`${edgeUrl}/_replica/status${EXPOSED}`)).json()) as {
        history?: NonNullable<SelfCheckCounts['edge']>;
      };
      const h = body.history;
      if (h)
        out.edge = {
          relayChecks: h.relayChecks,
          relayMismatches: h.relayMismatches,
          selfChecks: h.selfChecks,
          selfMismatches: h.selfMismatches,
          repairs: h.repairs,
        };
    } catch {
      // the edge is not answering: no counts
    }
  }
  return out;
}

function selfCheckLine(c: SelfCheckCounts): string {
  const relay = c.relay
    ? `relay checks ${c.relay.checks} (ok ${c.relay.ok}, mismatches ${c.relay.mismatches}), history changes ${c.relay.historyChanges}`
    : 'relay: no status';
  const edge = c.edge
    ? `; edge digest comparisons ${c.edge.relayChecks} (mismatches ${c.edge.relayMismatches}), self-checks ${c.edge.selfChecks} (mismatches ${c.edge.selfMismatches}), repairs ${c.edge.repairs}`
    : '';
  return `self-checks: ${relay}${edge}`;
}

/** The relay's history start for `prefix`, or undefined when it cannot say (restarting). */
async function relayWindowStart(url: string, prefix: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${url}/_relay/status`);
    const body = (await res.json()) as { prefixes?: { prefix: string; historyStart: number }[] };
    return body.prefixes?.find((p) => p.prefix === prefix)?.historyStart;
  } catch {
    return undefined;
  }
}

/** The edge replica's history start for `prefix`, or undefined when it cannot say. */
async function replicaWindowStart(url: string, prefix: string): Promise<number | undefined> {
  try {
    const res = await fetch(`${url}/_replica/status${prefix}`);
    const body = (await res.json()) as { ready?: boolean; historyStart?: number };
    return body.ready ? body.historyStart : undefined;
  } catch {
    return undefined;
  }
}
