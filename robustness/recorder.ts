/**
 * The ground truth of a run: etcd's full history, recorded by a watch of every key from
 * revision 1 with `prev_kv`, on an etcd3 client of its own that shares nothing with edgewatch
 * (it reuses only the test suite's independent `toModelObject`).
 *
 * The raw gRPC watch is driven directly (as relay/etcd/watch-stream.ts explains, etcd3's
 * high-level watcher resumes from the wrong revision). When the stream breaks (etcd killed), the
 * recorder reconnects with a fresh client from the revision after the last one it holds, so the
 * history stays gap-free; the run only compacts revisions the recorder already holds, so that
 * resume is always possible. Invariant: `revisions` is contiguous from 2 to `revision`.
 */
import { noop } from 'cockatiel';
import { Etcd3, type IEvent, type IWatchResponse } from 'etcd3';
import { toModelObject } from '../test/contract/etcd-model.ts';
import type { RecordedEvent, RecordedRevision } from './model.ts';

export function rawClient(endpoints: string | readonly string[], callTimeoutMs = 5_000): Etcd3 {
  return new Etcd3({
    hosts: typeof endpoints === 'string' ? endpoints : [...endpoints],
    faultHandling: { global: noop, host: () => noop },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  });
}

export class Recorder {
  /** The current history's revisions (a new array per `startHistory`). */
  revisions: RecordedRevision[] = [];
  /** Reconnections after a broken stream. */
  reconnects = 0;
  readonly #endpoints: string | readonly string[];
  #client: Etcd3 | undefined;
  #stopped = false;
  #waiters: { target: number; resolve: () => void }[] = [];
  #problem: string | undefined;
  /** The revision the current history starts at (1, or a restored snapshot's). */
  #base = 1;
  #suspended = false;
  #resume: (() => void) | undefined;

  /** `endpoints`: one etcd, or every member of a cluster (a broken stream resumes on any). */
  constructor(endpoints: string | readonly string[]) {
    this.#endpoints = endpoints;
  }

  /** The last revision recorded (1: nothing yet). */
  get revision(): number {
    return this.revisions[this.revisions.length - 1]?.revision ?? this.#base;
  }

  /**
   * Stops recording (etcd is about to get another history): the stream is closed and not
   * reopened until `startHistory`, so nothing of the next history lands in this one's record.
   */
  suspend(): void {
    this.#suspended = true;
    this.#client?.close();
  }

  /** Records a new history from `base` + 1 on (a wipe: 1; a restore: the snapshot's revision). */
  startHistory(base: number): void {
    this.revisions = [];
    this.#base = base;
    this.#suspended = false;
    this.#resume?.();
  }

  /** A broken invariant (a revision out of order), if any: the history is then unusable. */
  get problem(): string | undefined {
    return this.#problem;
  }

  start(): void {
    void this.#loop();
  }

  /** Resolves once `revision` is recorded; rejects after `timeoutMs`. */
  waitFor(revision: number, timeoutMs: number): Promise<void> {
    if (this.revision >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`recorder at ${this.revision}, not ${revision}, after ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        target: revision,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  stop(): void {
    this.#stopped = true;
    this.#resume?.();
    this.#client?.close();
  }

  async #loop(): Promise<void> {
    for (let attempt = 0; !this.#stopped && attempt < 10_000; attempt++) {
      try {
        await this.#watchOnce();
      } catch {
        // reconnect below
      }
      if (this.#stopped) return;
      while (this.#suspended && !this.#stopped) await new Promise<void>((r) => (this.#resume = r));
      if (this.#stopped) return;
      this.reconnects++;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** One watch attempt from the revision after the last recorded; resolves when it breaks. */
  async #watchOnce(): Promise<void> {
    const client = rawClient(this.#endpoints);
    this.#client = client;
    try {
      const stream = await client.watchClient.watch();
      await new Promise<void>((resolve) => {
        const done = () => {
          stream.cancel();
          resolve();
        };
        stream.on('data', (res: IWatchResponse) => {
          if (res.canceled || (res.compact_revision && res.compact_revision !== '0')) {
            if (res.compact_revision && res.compact_revision !== '0')
              this.#problem = `recorder watch compacted at ${res.compact_revision}`;
            return done();
          }
          this.#onEvents(res.events);
        });
        stream.on('error', done);
        stream.on('end', done);
        stream.write({
          create_request: {
            key: Buffer.from([0]),
            range_end: Buffer.from([0]),
            start_revision: this.revision + 1,
            prev_kv: true,
          },
        });
      });
    } finally {
      client.close();
    }
  }

  #onEvents(events: readonly IEvent[]): void {
    let i = 0;
    while (i < events.length) {
      const revision = Number(events[i]?.kv.mod_revision);
      const batch: RecordedEvent[] = [];
      while (i < events.length && Number(events[i]?.kv.mod_revision) === revision) {
        batch.push(toRecorded(events[i] as IEvent));
        i++;
      }
      if (revision !== this.revision + 1) {
        this.#problem ??= `recorder got revision ${revision} after ${this.revision}`;
        if (revision <= this.revision) continue;
      }
      this.revisions.push({ revision, events: batch, at: Date.now() });
    }
    const ready = this.#waiters.filter((w) => w.target <= this.revision);
    this.#waiters = this.#waiters.filter((w) => w.target > this.revision);
    for (const w of ready) w.resolve();
  }
}

function toRecorded(e: IEvent): RecordedEvent {
  const key = e.kv.key.toString('utf8');
  const prev = e.prev_kv ? toModelObject(e.prev_kv) : undefined;
  if (e.type === 'Delete') return prev ? { type: 'DELETE', key, prev } : { type: 'DELETE', key };
  const object = toModelObject(e.kv);
  return prev ? { type: 'PUT', key, object, prev } : { type: 'PUT', key, object };
}
