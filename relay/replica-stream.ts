/**
 * One edge replica's replication stream over an accepted WebSocket (relay/replicate.ts accepts
 * and authenticates it): hello, then a snapshot or a resume, then the live tail of the prefix's
 * cache, with revision requests and heartbeats alongside. See relay/replicate.ts for the states.
 */
import type { RawData, WebSocket } from 'ws';
import type { ScopeTable } from '../core/auth.ts';
import { formatDigest } from '../core/digest.ts';
import {
  BadRequest,
  Expired,
  Forbidden,
  HistoryChanged,
  ServiceUnavailable,
  TooManyRequests,
  toStatus,
} from '../core/errors.ts';
import type { Subscription } from '../core/fanout.ts';
import { keyAfter } from '../core/keys.ts';
import { objectSize } from '../core/object.ts';
import {
  decodeEdgeMessage,
  type EdgeMessage,
  encode,
  type HelloMessage,
  type RelayMessage,
  TARGET_MESSAGE_BYTES,
} from '../core/protocol.ts';
import type { Cancel, Clock, KvObject, Revision, RevisionBatch } from '../core/types.ts';
import type { Logger } from './log.ts';
import type { PrefixCache } from './prefix-cache.ts';
import { digestField, replicaStart } from './replica-history.ts';

/** What replication needs of a prefix's cache; `PrefixCache` is one. */
export type ReplicationSource = Pick<
  PrefixCache,
  'prefix' | 'cache' | 'ready' | 'whenReady' | 'latestRevision'
>;

/** Counters since attach, for logs, metrics and tests. */
export interface ReplicationStats {
  accepted: number;
  refused: number;
  snapshots: number;
  resumes: number;
  messagesSent: number;
  bytesSent: number;
  /** Times a replica's subscription was paused because its socket was backed up. */
  pauses: number;
  /** Replicas cut with 410 (fell out of the window, or the cache relisted). */
  expired: number;
  /** Replicas cut for silence. */
  idleClosed: number;
}

/** One replica as the relay sees it, for the dashboard and tests. */
export interface ReplicaInfo {
  readonly replica: string | undefined;
  readonly prefix: string | undefined;
  readonly remote: string;
  readonly mode: 'resume' | 'snapshot' | undefined;
  /** The revision the replica has been brought to (sent; maybe not yet received). */
  readonly revision: Revision;
  /** Bytes sent that the socket has not taken yet. */
  readonly unflushedBytes: number;
  /** The live tail is paused because the replica does not read fast enough. */
  readonly paused: boolean;
}

/** Revision requests one replica may have waiting at once; more get 429 (they are cheap to repeat). */
const MAX_INFLIGHT_REVISION_REQUESTS = 32;
/** Objects read from the snapshot per page while packing chunks. */
const SNAPSHOT_PAGE = 512;
const SHUTDOWN_GRACE_MS = 1000;

/** What every stream shares: the caches, the endpoint's settings and its counters. */
export interface ReplicaStreamContext {
  readonly caches: ReadonlyMap<string, ReplicationSource>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly waitTimeoutMs: number;
  readonly readyTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly idleTimeoutMs: number;
  readonly highWaterBytes: number;
  readonly lowWaterBytes: number;
  readonly bufferLimit: number | undefined;
  readonly stats: ReplicationStats;
  /** The client tokens and scopes the edge enforces; sent after hello and on every change. */
  readonly scopes: (() => ScopeTable) | undefined;
}

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
  #lastHeard: number;
  #heartbeat: Cancel | undefined;
  #inflight = 0;

  constructor(ws: WebSocket, remote: string, ctx: ReplicaStreamContext) {
    this.#ws = ws;
    this.#ctx = ctx;
    this.#remote = remote;
    this.#openedAt = ctx.clock.now();
    this.#lastHeard = this.#openedAt;
    this.closed = new Promise((resolve) => {
      this.#markClosed = resolve;
    });
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('pong', () => {
      this.#lastHeard = ctx.clock.now();
    });
    ws.on('error', (error) =>
      ctx.log.warn('replica socket error', { ...this.#fields(), error: error.message }),
    );
    ws.on('close', (code) => this.#onClose(code));
    this.#heartbeat = ctx.clock.setTimeout(() => this.#beat(), ctx.pingIntervalMs);
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
    this.#lastHeard = this.#ctx.clock.now();
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
    else if (message.type === 'ping') this.#send({ v: 1, type: 'pong' });
    else if (message.type === 'revisionRequest') this.#answerRevision(message.id);
  }

  async #start(hello: HelloMessage): Promise<void> {
    const source = this.#ctx.caches.get(hello.prefix);
    if (source === undefined) {
      return this.#fail(new Forbidden(`prefix ${JSON.stringify(hello.prefix)} is not exposed by this relay`));
    }
    this.#source = source;
    if (!source.ready && !(await this.#within(source.whenReady, this.#ctx.readyTimeoutMs))) {
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
    const snapshot = source.cache.snapshot();
    const revision = snapshot.revision;
    const digest = formatDigest(source.cache.digest);
    const generation = ++this.#snapshotGeneration;
    this.#mode = 'snapshot';
    this.#ctx.stats.snapshots++;
    this.#subscribe(source, revision, true);
    const head = snapshot.list(source.prefix, { limit: 1 });
    this.#logConnected(revision);
    this.#send({
      v: 1,
      type: 'snapshotStart',
      revision,
      total: head.items.length + head.remaining,
      ...(newHistory ? { newHistory: true } : {}),
    });
    let chunk: KvObject[] = [];
    let bytes = 0;
    let startKey: string | undefined;
    for (;;) {
      const page = snapshot.list(source.prefix, { ...(startKey ? { startKey } : {}), limit: SNAPSHOT_PAGE });
      for (const object of page.items) {
        chunk.push(object);
        bytes += objectSize(object);
        if (bytes < TARGET_MESSAGE_BYTES) continue;
        this.#send({ v: 1, type: 'snapshotChunk', objects: chunk });
        chunk = [];
        bytes = 0;
        await this.#drained();
        if (this.#isClosed || generation !== this.#snapshotGeneration) return;
      }
      const last = page.items.at(-1);
      if (last === undefined || page.remaining === 0) break;
      startKey = keyAfter(last.key);
    }
    if (chunk.length > 0) this.#send({ v: 1, type: 'snapshotChunk', objects: chunk });
    this.#send({ v: 1, type: 'snapshotEnd', revision, digest });
    this.#sentRevision = revision;
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
    this.#ws.send(data, () => {
      this.#unflushed -= bytes;
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

  /** etcd's revision by quorum read, answered once the cache has reached it (so progress follows). */
  #answerRevision(id: number): void {
    const source = this.#source;
    if (source === undefined) return; // the hello was refused; the socket is closing
    if (this.#inflight >= MAX_INFLIGHT_REVISION_REQUESTS) {
      const error = toStatus(new TooManyRequests('too many revision requests in flight'));
      this.#send({ v: 1, type: 'revisionResponse', id, error });
      return;
    }
    this.#inflight++;
    const answer = async (): Promise<Revision> => {
      let revision: Revision | undefined;
      try {
        revision = await this.#within(source.latestRevision(), this.#ctx.waitTimeoutMs);
      } catch (error) {
        throw new ServiceUnavailable(
          `etcd is unavailable: ${error instanceof Error ? error.message : error}`,
        );
      }
      if (revision === undefined) throw new ServiceUnavailable('etcd did not answer a quorum read in time');
      await source.cache.waitFor(revision, this.#ctx.waitTimeoutMs); // 504 Timeout when it does not
      return revision;
    };
    answer()
      .then(
        (revision) => this.#send({ v: 1, type: 'revisionResponse', id, revision }),
        (error: unknown) => this.#send({ v: 1, type: 'revisionResponse', id, error: toStatus(error) }),
      )
      .finally(() => this.#inflight--)
      .catch(() => {});
  }

  #beat(): void {
    if (this.#isClosed) return;
    const silent = this.#ctx.clock.now() - this.#lastHeard;
    if (silent >= this.#ctx.idleTimeoutMs) {
      this.#ctx.stats.idleClosed++;
      this.#ctx.log.warn('replica silent, cutting it', { ...this.#fields(), silentMs: silent });
      this.#closeWith(4408, 'silent');
      this.#ws.terminate(); // a silent peer will not complete a close handshake either
      return;
    }
    this.#send({ v: 1, type: 'ping' });
    const next = Math.min(this.#ctx.pingIntervalMs, this.#ctx.idleTimeoutMs - silent);
    this.#heartbeat = this.#ctx.clock.setTimeout(() => this.#beat(), Math.max(1, next));
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
    this.#heartbeat?.();
    this.#heartbeat = undefined;
    this.#subscription?.close();
    this.#pending = [];
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
  }

  /** Resolves with the value, or undefined after `ms`; rejects if `promise` rejects first. */
  #within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve, reject) => {
      const cancel = this.#ctx.clock.setTimeout(() => resolve(undefined), ms);
      promise.then(
        (value) => {
          cancel();
          resolve(value);
        },
        (error: unknown) => {
          cancel();
          reject(error);
        },
      );
    });
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
