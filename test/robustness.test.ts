/**
 * The short robustness run inside `npm test` (issue 5): a seeded workload and every fault kind
 * against a real 3-member etcd, the relay as a child process and the edge Worker in workerd, with
 * reads and watches through both tiers, then the checker's verdict on the recorded history. The
 * long run is `npm run robustness -- --seed S --duration D --edge --cluster`.
 */
import { describe, expect, it } from 'vitest';
import { checkRun } from '../robustness/checker.ts';
import { FAULT_KINDS, type FaultKind, type ModelObject, type RunRecord } from '../robustness/model.ts';
import { type RunSummary, runRobustness, summaryLine } from '../robustness/run.ts';

const SEED = 20_251_127;
const DURATION_MS = 32_000;
/**
 * Every fault kind but three of the six history changes, to keep the run short (a history change
 * with the tiers stopped restarts the relay process, ~5 s here): the ones kept cover a wipe with
 * the tiers stopped (a replica warm-starts on the old history's SQLite) and a restore from a
 * snapshot with and without --bump-revision --mark-compacted while they run. The long run
 * (`npm run robustness`) schedules all of them.
 */
const SHORT_RUN_FAULTS: readonly FaultKind[] = FAULT_KINDS.filter(
  (k) => k !== 'etcdWipe' && k !== 'etcdRestoreStopped' && k !== 'etcdRestoreBumpedStopped',
);

describe('a short robustness run', () => {
  let summary: RunSummary | undefined;
  const run = async () => {
    summary ??= await runRobustness({
      seed: SEED,
      durationMs: DURATION_MS,
      edge: true,
      cluster: true,
      faults: SHORT_RUN_FAULTS,
    });
    return summary;
  };

  it('finds no violation while every scheduled fault fires and reads and events are checked', {
    timeout: 150_000,
  }, async () => {
    const s = await run();
    process.stdout.write(`${summaryLine(s)}\n`);
    expect(s.violations.map((v) => `${v.kind}: ${v.message}`)).toEqual([]);
    expect([...s.scheduled].sort()).toEqual([...SHORT_RUN_FAULTS].sort());
    // The tiers' own checks ran and, with no corruption planted, never disagreed with etcd.
    expect(s.selfChecks.relay?.checks ?? 0).toBeGreaterThan(0);
    expect(s.selfChecks.relay?.mismatches).toBe(0);
    expect(s.selfChecks.edge?.relayChecks ?? 0).toBeGreaterThan(0);
    expect(s.selfChecks.edge?.selfMismatches).toBe(0);
    for (const kind of s.scheduled) expect(s.faults[kind] ?? 0, `fault ${kind} fired`).toBeGreaterThan(0);
    expect(s.stats.readsChecked).toBeGreaterThan(200);
    expect(s.stats.eventsChecked).toBeGreaterThan(200);
    expect(s.stats.initialEventsChecked).toBeGreaterThan(0);
    const modes = new Set(
      s.record.reads.filter((r) => r.status === 200 || r.status === 404).map((r) => r.mode),
    );
    expect([...modes].sort()).toEqual(['any', 'continue', 'exact', 'mostRecent', 'notOlderThan']);
    expect(s.record.sessions.filter((sess) => sess.start.kind === 'after').length).toBeGreaterThan(0);
  });

  it('reads and watches through both tiers, and watchers resume from their last rv at the other tier', {
    timeout: 150_000,
  }, async () => {
    const { record } = await run();
    const servedBy = new Set(
      record.reads.filter((r) => r.status === 200).map((r) => `${r.target}:${r.servedBy}`),
    );
    expect(servedBy).toContain('edge:edge');
    expect(servedBy).toContain('relay:relay');
    const live = (target: string) =>
      record.sessions.filter(
        (sess) => sess.target === target && sess.status === 200 && sess.events.length > 0,
      );
    expect(live('edge').length).toBeGreaterThan(0);
    expect(live('relay').length).toBeGreaterThan(0);
    const switched = new Set<string>();
    for (const [i, sess] of record.sessions.entries()) {
      const before = record.sessions
        .slice(0, i)
        .filter((p) => p.watcher === sess.watcher && p.status === 200);
      const previous = before[before.length - 1];
      if (sess.start.kind === 'after' && sess.status === 200 && previous && previous.target !== sess.target)
        switched.add(`${previous.target}→${sess.target}`);
    }
    expect([...switched].sort()).toEqual(['edge→relay', 'relay→edge']);
  });

  it('would have caught a wrong read and a lost watch event in that very run', {
    timeout: 150_000,
  }, async () => {
    const { record } = await run();
    expect(plantWrongRead(record).map((v) => v.kind)).toContain('wrong-state');
    expect(plantLostEvent(record).map((v) => v.kind)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^(watch-gap|txn-split)$/)]),
    );
  });
});

/** The record with one served get given another revision's value. */
function plantWrongRead(record: RunRecord) {
  const index = record.reads.findIndex((r) => r.verb === 'get' && r.status === 200 && r.object !== undefined);
  expect(index, 'a successful get to tamper with').toBeGreaterThanOrEqual(0);
  const reads = record.reads.map((r, i) =>
    i === index && r.object
      ? { ...r, object: { ...r.object, value: `${r.object.value ?? ''}!` } as ModelObject }
      : r,
  );
  return checkRun({ ...record, reads }).violations;
}

/** The record with one live event dropped from the middle of a watch session. */
function plantLostEvent(record: RunRecord) {
  const index = record.sessions.findIndex(
    (s) => s.start.kind === 'after' && s.events.filter((e) => e.type !== 'BOOKMARK').length > 4,
  );
  expect(index, 'a resumed session with events to tamper with').toBeGreaterThanOrEqual(0);
  const sessions = record.sessions.map((s, i) => {
    if (i !== index) return s;
    const changes = s.events
      .map((e, j) => [e, j] as const)
      .filter(([e]) => e.type !== 'BOOKMARK' && e.type !== 'ERROR');
    const drop = changes[Math.floor(changes.length / 2)]?.[1];
    return { ...s, events: s.events.filter((_, j) => j !== drop) };
  });
  return checkRun({ ...record, sessions }).violations;
}
