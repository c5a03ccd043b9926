import { describe, expect, it } from 'vitest';
import { makeObject } from '../core/object.ts';
import type { CacheSink, KvObject, Revision, RevisionBatch } from '../core/types.ts';
import { ManualClock, settle } from '../test/helpers/manual-clock.ts';
import type { Logger } from './log.ts';
import {
  Compacted,
  type HistoryVerdict,
  type ListerWatcher,
  Reflector,
  ReflectorStopped,
  type Watch,
  WatchBroken,
  type WatchHandlers,
} from './reflector.ts';

const utf8 = new TextEncoder();
const obj = (key: string, revision: Revision): KvObject =>
  makeObject({ key, value: utf8.encode('v'), createRevision: revision, modRevision: revision, version: 1 });
const put = (revision: Revision, key = `/k${revision}`): RevisionBatch => ({
  revision,
  events: [{ type: 'PUT', object: obj(key, revision) }],
});

/** A ListerWatcher driven by the test: each call is recorded and answered on demand. */
class FakeListerWatcher implements ListerWatcher {
  listRevision = 10;
  listFailures = 0;
  lists = 0;
  readonly watches: { from: Revision; handlers: WatchHandlers; closed: boolean; progressRequests: number }[] =
    [];
  /** Errors to reject the next watch calls with. */
  readonly openFailures: Error[] = [];

  async list() {
    this.lists++;
    if (this.listFailures > 0) {
      this.listFailures--;
      throw new Error('etcd unavailable');
    }
    return { revision: this.listRevision, objects: [obj('/a', 1)] };
  }
  async watch(from: Revision, handlers: WatchHandlers): Promise<Watch> {
    const failure = this.openFailures.shift();
    if (failure) throw failure;
    const entry = { from, handlers, closed: false, progressRequests: 0 };
    this.watches.push(entry);
    return {
      requestProgress: () => {
        entry.progressRequests++;
      },
      close: () => {
        entry.closed = true;
      },
    };
  }
  get last() {
    const w = this.watches[this.watches.length - 1];
    if (!w) throw new Error('no watch opened');
    return w;
  }
}

/** Records every sink call. */
class RecordingSink implements CacheSink {
  readonly calls: string[] = [];
  replace(revision: Revision, objects: readonly KvObject[]) {
    this.calls.push(`replace ${revision} (${objects.length})`);
  }
  apply(batch: RevisionBatch) {
    this.calls.push(`apply ${batch.revision}`);
  }
  progress(revision: Revision) {
    this.calls.push(`progress ${revision}`);
  }
}

function setup(options: { progressIntervalMs?: number; silenceTimeoutMs?: number } = {}) {
  const clock = new ManualClock();
  const lw = new FakeListerWatcher();
  const sink = new RecordingSink();
  const lines: string[] = [];
  const record =
    (level: string): Logger['info'] =>
    (msg, fields) =>
      lines.push(`${level} ${msg} ${JSON.stringify(fields)}`);
  const log: Logger = { info: record('info'), warn: record('warn'), error: record('error') };
  // random() = 0.5 makes each delay exactly 3/4 of its exponential base.
  const reflector = new Reflector({ listerWatcher: lw, sink, clock, log, random: () => 0.5, ...options });
  return { clock, lw, sink, lines, reflector };
}

describe('Reflector', () => {
  it('lists, replaces the sink, then watches from the next revision', async () => {
    const { lw, sink, reflector } = setup();
    reflector.start();
    await reflector.ready;
    await settle();
    expect(reflector.isReady).toBe(true);
    expect(lw.last.from).toBe(11);
    lw.last.handlers.batch(put(12));
    lw.last.handlers.progress(15);
    expect(sink.calls).toEqual(['replace 10 (1)', 'apply 12', 'progress 15']);
    expect(reflector.revision).toBe(15);
    await reflector.stop();
  });

  it('resumes a broken watch from the revision after the last event or progress, never relisting', async () => {
    const { clock, lw, sink, reflector, lines } = setup();
    reflector.start();
    await settle();
    lw.last.handlers.batch(put(12));
    lw.last.handlers.ended(new WatchBroken('connection reset'));
    await clock.advance(100);
    expect(lw.last.from).toBe(13);
    lw.last.handlers.progress(20);
    lw.last.handlers.ended(new WatchBroken('connection reset'));
    await clock.advance(100);
    expect(lw.last.from).toBe(21);
    expect(lw.lists).toBe(1);
    expect(sink.calls).toEqual(['replace 10 (1)', 'apply 12', 'progress 20']);
    expect(lines.filter((l) => l.includes('watch broken'))).toHaveLength(2);
    expect(lines.some((l) => l.includes('"resumeFromRevision":13'))).toBe(true);
    await reflector.stop();
  });

  it('backs off exponentially while the watch cannot open and starts over after a success', async () => {
    const { clock, lw, reflector } = setup();
    lw.openFailures.push(new Error('refused'), new Error('refused'), new Error('refused'));
    reflector.start();
    await settle();
    // Each failed open is followed by a delay of 3/4 × 100, 200, 400 ms (jitter fixed at 0.5).
    for (const delay of [75, 150, 300]) {
      expect(clock.pending[0]).toBe(delay);
      await clock.advance(delay);
    }
    expect(lw.watches).toHaveLength(1);
    lw.last.handlers.ended(new WatchBroken('reset'));
    await settle();
    expect(clock.pending[0]).toBe(75);
    await reflector.stop();
  });

  it('caps the backoff at the maximum delay', async () => {
    const { clock, lw, reflector } = setup();
    lw.listFailures = 20;
    reflector.start();
    await settle();
    for (let i = 0; i < 10; i++) await clock.advance(clock.pending[0] ?? 0);
    expect(clock.pending[0]).toBe(3750);
    await reflector.stop();
  });

  it('relists when the watch reports compaction and resumes after the new list', async () => {
    const { clock, lw, sink, reflector, lines } = setup();
    reflector.start();
    await settle();
    lw.last.handlers.batch(put(11));
    lw.listRevision = 50;
    lw.last.handlers.ended(new Compacted(40));
    await clock.advance(0);
    expect(lw.lists).toBe(2);
    expect(lw.last.from).toBe(51);
    expect(sink.calls).toEqual(['replace 10 (1)', 'apply 11', 'replace 50 (1)']);
    expect(lines.some((l) => l.includes('watch compacted') && l.includes('"compactRevision":40'))).toBe(true);
    await reflector.stop();
  });

  it('relists when a batch does not come after the current revision', async () => {
    const { clock, lw, sink, reflector } = setup();
    reflector.start();
    await settle();
    lw.last.handlers.batch(put(12));
    lw.last.handlers.batch(put(12, '/other'));
    await clock.advance(0);
    expect(lw.watches[0]?.closed).toBe(true);
    expect(lw.lists).toBe(2);
    expect(sink.calls).toEqual(['replace 10 (1)', 'apply 12', 'replace 10 (1)']);
    await reflector.stop();
  });

  it('asks for progress when the watch is quiet and reconnects when it stays silent', async () => {
    const { clock, lw, reflector } = setup({ progressIntervalMs: 1_000, silenceTimeoutMs: 3_000 });
    reflector.start();
    await settle();
    const first = lw.last;
    await clock.advance(1_000);
    expect(first.progressRequests).toBe(1);
    first.handlers.progress(10); // an answer resets the silence…
    await clock.advance(2_000); // …and while silence lasts, the request is repeated every interval
    expect(first.progressRequests).toBe(3);
    expect(first.closed).toBe(false);
    await clock.advance(1_000); // 3 s without a message
    expect(first.closed).toBe(true);
    await clock.advance(100);
    expect(lw.watches).toHaveLength(2);
    expect(lw.last.from).toBe(11);
    await reflector.stop();
  });

  it('ignores callbacks from a watch it has abandoned', async () => {
    const { clock, lw, sink, reflector } = setup();
    reflector.start();
    await settle();
    const old = lw.last;
    old.handlers.ended(new WatchBroken('reset'));
    await clock.advance(100);
    old.handlers.batch(put(30));
    old.handlers.progress(40);
    expect(sink.calls).toEqual(['replace 10 (1)']);
    expect(reflector.revision).toBe(10);
    await reflector.stop();
  });

  it('rejects ready when stopped before the first list, and calls the sink no more after stop', async () => {
    const { lw, sink, reflector } = setup();
    lw.listFailures = 1;
    reflector.start();
    await settle();
    await reflector.stop();
    await expect(reflector.ready).rejects.toBeInstanceOf(ReflectorStopped);
    expect(sink.calls).toEqual([]);
    expect(reflector.requestProgress()).toBe(false);
  });

  it('opens no watch when stopped while its list was completing', async () => {
    const lw = new FakeListerWatcher();
    let stopping: Promise<void> | undefined;
    const sink: CacheSink = {
      replace: () => {
        stopping = reflector.stop();
      },
      apply: () => {},
      progress: () => {},
    };
    const reflector = new Reflector({ listerWatcher: lw, sink, clock: new ManualClock() });
    reflector.start();
    await settle();
    await stopping;
    expect(stopping).toBeDefined();
    expect(lw.watches).toHaveLength(0);
  });

  it('closes the open watch on stop', async () => {
    const { lw, reflector } = setup();
    reflector.start();
    await settle();
    expect(reflector.requestProgress()).toBe(true);
    await reflector.stop();
    expect(lw.last.closed).toBe(true);
    expect(lw.last.progressRequests).toBe(1);
  });
});

describe('Reflector history checks', () => {
  function withVerifier(verify: (revision: Revision) => Promise<HistoryVerdict>) {
    const clock = new ManualClock();
    const lw = new FakeListerWatcher();
    const calls: string[] = [];
    const sink: CacheSink = {
      replace: (revision, objects, options) =>
        calls.push(`replace ${revision} (${objects.length})${options?.newHistory ? ' newHistory' : ''}`),
      apply: (batch) => calls.push(`apply ${batch.revision}`),
      progress: (revision) => calls.push(`progress ${revision}`),
    };
    const asked: Revision[] = [];
    const reflector = new Reflector({
      listerWatcher: lw,
      sink,
      clock,
      random: () => 0.5,
      verifyHistory: (revision) => {
        asked.push(revision);
        return verify(revision);
      },
    });
    return { clock, lw, calls, asked, reflector };
  }

  it('proves the history before resuming a broken watch, and resumes when it is the same', async () => {
    const { clock, lw, calls, asked, reflector } = withVerifier(async () => ({ kind: 'same' }));
    reflector.start();
    await settle();
    lw.last.handlers.batch(put(12));
    lw.last.handlers.ended(new WatchBroken('reset'));
    await clock.advance(100);
    expect(asked).toEqual([12]);
    expect(lw.last.from).toBe(13);
    expect(calls).toEqual(['replace 10 (1)', 'apply 12']);
    expect(reflector.stats.verifications).toBe(1);
    await reflector.stop();
  });

  it('relists as a new history when etcd holds another one, and relists plainly when the revision is compacted', async () => {
    for (const verdict of [{ kind: 'other', reason: 'head below' }, { kind: 'compacted' }] as const) {
      const { clock, lw, calls, reflector } = withVerifier(async () => verdict);
      reflector.start();
      await settle();
      lw.last.handlers.batch(put(12));
      lw.listRevision = 4;
      lw.last.handlers.ended(new WatchBroken('reset'));
      await clock.advance(100);
      expect(calls).toEqual([
        'replace 10 (1)',
        'apply 12',
        `replace 4 (1)${verdict.kind === 'other' ? ' newHistory' : ''}`,
      ]);
      expect(lw.last.from).toBe(5);
      expect(reflector.stats.historyChanges).toBe(verdict.kind === 'other' ? 1 : 0);
      await reflector.stop();
    }
  });

  it('keeps asking (with backoff) while etcd cannot answer, and never watches before it did', async () => {
    let answers = 0;
    const { clock, lw, asked, reflector } = withVerifier(async () => {
      answers++;
      if (answers < 3) throw new Error('unavailable');
      return { kind: 'same' };
    });
    reflector.start();
    await settle();
    lw.last.handlers.ended(new WatchBroken('reset'));
    await clock.advance(100);
    expect(lw.watches).toHaveLength(1);
    await clock.advance(1_000);
    expect(asked).toEqual([10, 10, 10]);
    expect(lw.watches).toHaveLength(2);
    expect(lw.last.from).toBe(11);
    await reflector.stop();
  });

  it('says when a list starts and when it is in, and whether the state may be another history (readiness)', async () => {
    const clock = new ManualClock();
    const lw = new FakeListerWatcher();
    const events: string[] = [];
    const reflector = new Reflector({
      listerWatcher: lw,
      sink: new RecordingSink(),
      clock,
      random: () => 0.5,
      onRelisting: (reason, newHistory) =>
        events.push(`start ${reason}${newHistory ? ' (new history)' : ''}`),
      onRelisted: (reason) => events.push(`in ${reason}`),
    });
    reflector.start();
    await reflector.ready;
    await settle();
    expect(events).toEqual(['start initial', 'in initial']);
    events.length = 0;
    lw.listFailures = 1;
    reflector.resync('self-check mismatch');
    await clock.advance(10);
    // The first list failed: the relist is still under way, so readiness stays failed.
    expect(events).toEqual(['start self-check mismatch (new history)']);
    await clock.advance(5_000);
    expect(events).toEqual([
      'start self-check mismatch (new history)',
      'start self-check mismatch (new history)',
      'in self-check mismatch',
    ]);
    await reflector.stop();
  });

  it('resync ends the watch and relists as a new history once', async () => {
    const { clock, lw, calls, reflector } = withVerifier(async () => ({ kind: 'same' }));
    reflector.start();
    await settle();
    lw.listRevision = 20;
    reflector.resync('self-check mismatch');
    reflector.resync('self-check mismatch');
    await clock.advance(10);
    expect(calls).toEqual(['replace 10 (1)', 'replace 20 (1) newHistory']);
    expect(lw.watches.filter((w) => !w.closed)).toHaveLength(1);
    expect(lw.last.from).toBe(21);
    await reflector.stop();
  });
});
