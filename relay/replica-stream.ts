/**
 * One edge replica's replication stream over an accepted WebSocket (relay/replicate.ts accepts
 * and authenticates it). Per connection (one replica, one prefix):
 *
 *   accepted ─► wait hello ─┬─ state in this history and window (replica-history.ts) ─► resume
 *                           └─ none, too old, or another history ─► snapshot (replica-snapshot.ts)
 *                                                                         │
 *   closed ◄── error {status} (400 garbage, 403 prefix, 503 not ready, ◄── live: batches/progress,
 *              410 expired) or silence > idleTimeoutMs (replica-heartbeat)     revisionRequest (replica-
 *                                                                               revisions.ts), ping
 *              a relist into another history: a new snapshot, newHistory, on the same socket
 *
 * Promises kept (core/protocol.ts): a resume never starts with a snapshot, and a fromRevision
 * above the cache's revision (the relay restarted and is behind the replica) is never answered
 * with anything at or below it: the replica keeps serving its state until the cache passes it.
 * Batches go out in revision order, a transaction as one batch, without `prev`. One slow replica
 * never delays the others: its subscription pauses (the fan-out buffers, then re-reads history)
 * while its unflushed bytes are above `highWaterBytes`, and resumes below `lowWaterBytes`.
 *
 * WebSocket close codes: 4000 + the Status code after an `error` message (4400, 4403, 4410, 4503),
 * 4408 when cut as silent, 1001 when the relay shuts down.
 */
import type { RawData, WebSocket } from 'ws';
import type { ScopeTable } from '../core/auth.ts';
import {
  BadRequest,
  Expired,
  Forbidden,
  HistoryChanged,
  ServiceUnavailable,
  toStatus,
} from '../core/errors.ts';
import type { Subscription } from '../core/fanout.ts';
import { objectSize } from '../core/object.ts';
import {
  decodeEdgeMessage,
  type EdgeMessage,
  encode,
  type HelloMessage,
  type RelayMessage,
  type ReplicaReport,
  TARGET_MESSAGE_BYTES,
} from '../core/protocol.ts';
import type { Revision, RevisionBatch } from '../core/types.ts';
import { Heartbeat } from './replica-heartbeat.ts';
import { digestField, replicaStart } from './replica-history.ts';
import { RevisionRequests, within } from './replica-revisions.ts';
import { sendSnapshot } from './replica-snapshot.ts';
import type {
  ReplicaInfo,
  ReplicaStreamContext,
  ReplicationSource,
  ReplicationStats,
} from './replica-types.ts';

export type { ReplicaInfo, ReplicaStreamContext, ReplicationSource, ReplicationStats };

/** A send that took this long to reach the kernel waited for the replica to read. */
const BACKED_UP_MS = 250;
const SHUTDOWN_GRACE_MS = 1000;

/**
 * One replica's stream. Single-threaded by construction: fan-out callbacks only queue (they must
 * not await); `#flush` sends once per tick; awaits happen only in `#start`/`#sendSnapshot` and
 * revision requests, which re-check `#closed` after each.
 */
export class ReplicaStream {
  readonly closed: Promise<void>;
  readonly #ws: WebSocket;
  readonly #ctx: ReplicaStreamContext;
  readonly #remote: string;
  readonly #openedAt: number;
  #markClosed: () => void = () => {};
  #isClosed = false;
  #hello: HelloMessage | undefined;
  #source: ReplicationSource | undefined;
  #mode: 'resume' | 'snapshot' | undefined;
  #subscription: Subscription | undefined;
  /** False while the snapshot is being sent: the subscription stays paused until snapshotEnd. */
  #live = false;
  /** Highest revision the replica has been brought to (batches, progress or snapshot). */
  #sentRevision: Revision = 0;
  #pending: { batch: RevisionBatch; bytes: number }[] = [];
  #pendingBytes = 0;
  #pendingProgress: Revision = 0;
  #flushScheduled = false;
  /** Bumped per snapshot: a snapshot still being sent stops when a newer one starts. */
  #snapshotGeneration = 0;
  /** Bytes handed to ws.send whose callback has not fired (written to the kernel). */
  #unflushed = 0;
  #drainWaiters: (() => void)[] = [];
  readonly #heartbeat: Heartbeat;
  /** What the replica said about itself with its last ping. */
  #report: ReplicaReport | undefined;
  readonly #revisions: RevisionRequests;

  constructor(ws: WebSocket, remote: string, ctx: ReplicaStreamContext) {
    this.#ws = ws;
    this.#ctx = ctx;
    this.#remote = remote;
    this.#openedAt = ctx.clock.now();
    this.closed = new Promise((resolve) => {
      this.#markClosed = resolve;
    });
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('pong', () => this.#heartbeat.heard());
    ws.on('error', (error) =>
      ctx.log.warn('replica socket error', { ...this.#fields(), error: error.message }),
    );
    ws.on('close', (code) => this.#onClose(code));
    this.#revisions = new RevisionRequests(ctx.clock, ctx.waitTimeoutMs, (m) => this.#send(m));
    this.#heartbeat = new Heartbeat({
      clock: ctx.clock,
      pingIntervalMs: ctx.pingIntervalMs,
      idleTimeoutMs: ctx.idleTimeoutMs,
      ping: () => {
        this.#send({ v: 1, type: 'ping' });
        // Also a WebSocket ping frame: workerd's socket layer answers it with a pong without
        // waiting for the replica's JavaScript, so a replica whose thread is busy with its
        // watchers still answers (`pong` above counts as hearing from it).
        if (this.#ws.readyState === this.#ws.OPEN) this.#ws.ping();
      },
      onSilent: (silentMs) => this.#onSilent(silentMs),
    });
  }

  info(): ReplicaInfo {
    return {
      replica: this.#hello?.replica,
      prefix: this.#hello?.prefix,
      remote: this.#remote,
      mode: this.#mode,
      revision: this.#sentRevision,
      unflushedBytes: this.#unflushed,
      paused: this.#live && this.#subscription?.paused === true,
      report: this.#report,
      lastHeardAt: this.#heartbeat.lastHeardAt,
    };
  }

  /** Sends the current scope table (after hello; again whenever the relay reloads its tokens). */
  sendScopes(table: ScopeTable): void {
    if (this.#hello === undefined || this.#isClosed) return;
    this.#send({ v: 1, type: 'scopes', table });
  }

  /** Closes for a relay shutdown; resolves once the socket is gone (terminated after a grace). */
  shutdown(): Promise<void> {
    this.#closeWith(1001, 'relay shutting down');
    const cancel = this.#ctx.clock.setTimeout(() => this.#ws.terminate(), SHUTDOWN_GRACE_MS);
    return this.closed.then(cancel);
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    this.#heartbeat.heard();
    if (this.#isClosed) return;
    let message: EdgeMessage;
    try {
      message = decodeEdgeMessage(isBinary ? data : text(data));
    } catch (error) {
      this.#fail(new BadRequest(error instanceof Error ? error.message : 'invalid message'));
      return;
    }
    if (this.#hello === undefined) {
      if (message.type !== 'hello') {
        this.#fail(new BadRequest('the first message must be hello'));
        return;
      }
      this.#hello = message;
      const scopes = this.#ctx.scopes?.();
      if (scopes) this.sendScopes(scopes);
      this.#start(message).catch((error: unknown) => {
        this.#ctx.log.error('replication start failed', { ...this.#fields(), error: String(error) });
        this.#fail(error);
      });
      return;
    }
    if (message.type === 'hello') this.#fail(new BadRequest('hello sent twice'));
    else if (message.type === 'ping') {
      if (message.report) this.#report = message.report;
      this.#send({ v: 1, type: 'pong' });
    }
    // Before the hello was answered (or when it was refused) there is no source: nothing to say.
    else if (message.type === 'revisionRequest' && this.#source)
      this.#revisions.answer(this.#source, message.id);
  }

  async #start(hello: HelloMessage): Promise<void> {
    const source = this.#ctx.caches.get(hello.prefix);
    if (source === undefined) {
      return this.#fail(new Forbidden(`prefix ${JSON.stringify(hello.prefix)} is not exposed by this relay`));
    }
    this.#source = source;
    if (!source.ready && !(await within(this.#ctx.clock, source.whenReady, this.#ctx.readyTimeoutMs))) {
      return this.#fail(new ServiceUnavailable(`the relay's cache of ${hello.prefix} is still loading`));
    }
    if (this.#isClosed) return;
    // History identity (relay/replica-history.ts): resume only a state that is in this history.
    const start = await replicaStart(source, hello, this.#ctx.readyTimeoutMs);
    if (this.#isClosed) return;
    if (start.mode === 'resume') return this.#resume(source, start.from);
    if (start.newHistory)
      this.#ctx.log.warn('replica holds another history, sending a snapshot', this.#fields());
    return this.#sendSnapshot(source, start.newHistory);
  }

  /** Everything after `from` from the history, then live. Synchronous: no gap with the cache. */
  #resume(source: ReplicationSource, from: Revision): void {
    const revision = source.cache.revision;
    this.#mode = 'resume';
    this.#ctx.stats.resumes++;
    this.#sentRevision = from;
    this.#live = true;
    this.#logConnected(revision);
    this.#subscribe(source, from, false);
    // Nothing new: say so at once, so the replica knows its resume was accepted. Not when the
    // replica is ahead of the cache: nothing at or below its revision may be sent.
    if (from <= revision && this.#pending.length === 0 && this.#pendingProgress === 0) {
      this.#send({ v: 1, type: 'progress', revision: from, ...digestField(source, from) });
    }
  }

  /** The state at the cache's revision in chunks, subscribed from it in the same synchronous step. */
  async #sendSnapshot(source: ReplicationSource, newHistory = false): Promise<void> {
    const generation = ++this.#snapshotGeneration;
    const sent = await sendSnapshot(
      source,
      {
        send: (message) => this.#send(message),
        drained: () => this.#drained(),
        current: () => !this.#isClosed && generation === this.#snapshotGeneration,
      },
      newHistory,
      (revision) => {
        this.#mode = 'snapshot';
        this.#ctx.stats.snapshots++;
        this.#subscribe(source, revision, true);
        this.#logConnected(revision);
      },
    );
    if (sent === undefined) return;
    this.#sentRevision = sent;
    this.#live = true;
    this.#subscription?.resume();
  }

  #subscribe(source: ReplicationSource, from: Revision, paused: boolean): void {
    this.#subscription = source.cache.watch({
      fromRevision: from,
      prefix: source.prefix,
      paused,
      ...(this.#ctx.bufferLimit !== undefined ? { bufferLimit: this.#ctx.bufferLimit } : {}),
      onBatch: (batch) => this.#onBatch(batch),
      onProgress: (revision) => {
        if (revision > this.#pendingProgress) this.#pendingProgress = revision;
        this.#scheduleFlush();
      },
      onClose: (error) => this.#onSubscriptionClosed(error),
    });
  }

  /** Queues one revision for this tick's message; false pauses the subscription (backpressure). */
  #onBatch(batch: RevisionBatch): boolean {
    const stripped = batch.events.some((e) => e.prev !== undefined)
      ? { revision: batch.revision, events: batch.events.map((e) => ({ type: e.type, object: e.object })) }
      : batch;
    let bytes = 32;
    for (const event of stripped.events) bytes += objectSize(event.object) + 16;
    this.#pending.push({ batch: stripped, bytes });
    this.#pendingBytes += bytes;
    this.#scheduleFlush();
    if (this.#unflushed + this.#pendingBytes <= this.#ctx.highWaterBytes) return true;
    this.#ctx.stats.pauses++;
    return false;
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  /** Sends what queued this tick: batches packed to ~TARGET_MESSAGE_BYTES, then coalesced progress. */
  #flush(): void {
    this.#flushScheduled = false;
    const pending = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    let group: RevisionBatch[] = [];
    let bytes = 0;
    for (const item of pending) {
      if (group.length > 0 && bytes + item.bytes > TARGET_MESSAGE_BYTES) {
        this.#send({ v: 1, type: 'batches', batches: group });
        group = [];
        bytes = 0;
      }
      group.push(item.batch);
      bytes += item.bytes;
      this.#sentRevision = item.batch.revision;
    }
    // The last message of the tick carries the relay's digest there, for the replica to compare.
    const source = this.#source;
    if (group.length > 0) {
      const last = this.#pendingProgress > this.#sentRevision ? {} : digestField(source, this.#sentRevision);
      this.#send({ v: 1, type: 'batches', batches: group, ...last });
    }
    if (this.#pendingProgress > this.#sentRevision) {
      this.#sentRevision = this.#pendingProgress;
      this.#send({
        v: 1,
        type: 'progress',
        revision: this.#pendingProgress,
        ...digestField(source, this.#pendingProgress),
      });
    }
    this.#pendingProgress = 0;
  }

  #send(message: RelayMessage): void {
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    const data = encode(message);
    const bytes = Buffer.byteLength(data);
    this.#unflushed += bytes;
    this.#ctx.stats.messagesSent++;
    this.#ctx.stats.bytesSent += bytes;
    const sentAt = this.#ctx.clock.now();
    this.#ws.send(data, () => {
      this.#unflushed -= bytes;
      // A send that waited in the relay's buffer completed because the replica read from its
      // socket: it is alive, however late its own messages are (a replica busy feeding its
      // watchers answers pings late, and must not be cut for it). A send taken at once proves
      // nothing (the kernel took it), so it does not count.
      if (this.#ctx.clock.now() - sentAt >= BACKED_UP_MS) this.#heartbeat.heard();
      if (this.#unflushed > this.#ctx.lowWaterBytes) return;
      for (const resolve of this.#drainWaiters.splice(0)) resolve();
      if (this.#live && this.#subscription?.paused) this.#subscription.resume();
    });
  }

  /** Resolves when the socket has taken what was sent (below the low-water mark), or on close. */
  #drained(): Promise<void> {
    if (this.#unflushed <= this.#ctx.highWaterBytes || this.#isClosed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Nothing heard for idleTimeoutMs: the replica is gone or wedged. */
  #onSilent(silentMs: number): void {
    if (this.#isClosed) return;
    this.#ctx.stats.idleClosed++;
    this.#ctx.log.warn('replica silent, cutting it', { ...this.#fields(), silentMs });
    this.#closeWith(4408, 'silent');
    this.#ws.terminate(); // a silent peer will not complete a close handshake either
  }

  #onSubscriptionClosed(error: Error | undefined): void {
    if (this.#isClosed) return;
    if (error === undefined) {
      this.#closeWith(1001, 'relay shutting down');
    } else if (error instanceof HistoryChanged && this.#source !== undefined) {
      // The relay's cache now holds another history: the replica must drop its state at once,
      // so it gets a new snapshot on this very socket, marked `newHistory`. Not from inside the
      // cache's relist (this runs in its fan-out reset): on the next turn.
      const source = this.#source;
      this.#ctx.stats.expired++;
      this.#subscription = undefined;
      this.#live = false;
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#pendingProgress = 0;
      this.#snapshotGeneration++;
      setImmediate(() => {
        if (this.#isClosed) return;
        this.#sendSnapshot(source, true).catch((e: unknown) => this.#fail(e));
      });
    } else if (error instanceof Expired) {
      this.#ctx.stats.expired++;
      this.#fail(error);
    } else {
      this.#ctx.log.error('replication stream failed', { ...this.#fields(), error: String(error) });
      this.#fail(error);
    }
  }

  /** Sends `error {status}` and closes with 4000 + its code. */
  #fail(error: unknown): void {
    if (this.#isClosed) return;
    const status = toStatus(error);
    this.#send({ v: 1, type: 'error', status });
    this.#closeWith(4000 + status.code, status.reason);
  }

  #closeWith(code: number, reason: string): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#stop();
    this.#ws.close(code, reason);
  }

  #onClose(code: number): void {
    this.#isClosed = true;
    this.#stop();
    this.#ctx.log.info('replica disconnected', {
      ...this.#fields(),
      code,
      durationMs: this.#ctx.clock.now() - this.#openedAt,
    });
    this.#markClosed();
  }

  #stop(): void {
    this.#heartbeat.stop();
    this.#subscription?.close();
    this.#pending = [];
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  #logConnected(revision: Revision): void {
    this.#ctx.log.info('replica connected', {
      ...this.#fields(),
      fromRevision: this.#hello?.fromRevision,
      revision,
    });
  }

  #fields() {
    return {
      replica: this.#hello?.replica,
      prefix: this.#hello?.prefix,
      mode: this.#mode,
      remote: this.#remote,
      sentRevision: this.#sentRevision,
    };
  }
}

function text(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data).toString('utf8');
}
