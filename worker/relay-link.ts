/**
 * A replica's replication stream from the relay: one outbound WebSocket, authenticated with the
 * shared secret, that delivers a snapshot or the deltas since the replica's revision, then
 * ordered batches and progress marks (core/protocol.ts). It reconnects with backoff, detects a
 * dead link with heartbeats, and answers "what is etcd's current revision?" for most-recent reads.
 *
 *     idle ─start()─► connecting ─open─► streaming ─close/error/silence─► waiting (backoff) ─┐
 *       ▲                 │  ▲                                                                │
 *       │                 │  └────────────────────────────────────────────────────────────────┘
 *       │                 └─ refused / unreachable / no answer in connectTimeoutMs ─► waiting
 *       └──── stop() from any state (aborts a pending upgrade) ─────────────────────────────────
 *
 * The link only moves messages; what they do to the replica's state is the `LinkHandlers`' job.
 * An outbound socket pins the Durable Object in memory: `stop()` it when the replica is idle.
 */
import type { ScopeTable } from '../core/auth.ts';
import { Backoff } from '../core/backoff.ts';
import { ServiceUnavailable } from '../core/errors.ts';
import {
  decodeRelayMessage,
  type EdgeMessage,
  encode,
  PROTOCOL_VERSION,
  type ReplicaReport,
} from '../core/protocol.ts';
import type { Cancel, Clock, KvObject, Revision, RevisionBatch } from '../core/types.ts';

export interface LinkHandlers {
  /**
   * A snapshot of the prefix at `revision` begins: its objects follow in key order through
   * `snapshotChunk`, and `snapshotEnd` says it is complete. A stream cut before the end just
   * starts over (the next connect sends a new `snapshotStart`), so the receiver stages the chunks
   * and swaps them in only at the end. `newHistory`: the relay found the replica's state in
   * another etcd history (core/protocol.ts "History identity"): stop serving it now, and take
   * this snapshot even if it is older.
   */
  snapshotStart(revision: Revision, newHistory?: boolean): void;
  snapshotChunk(objects: readonly KvObject[]): void;
  /** `digest`: the relay's digest of the snapshot, for the replica to check what it received. */
  snapshotEnd(revision: Revision, digest?: string): void;
  /** `digest`: the relay's digest after the last batch. */
  batches(batches: readonly RevisionBatch[], digest?: string): void;
  /** `digest`: the relay's digest at `revision`. */
  progress(revision: Revision, digest?: string): void;
  /** The relay's client tokens and scopes (on connect and whenever they change). */
  scopes(table: ScopeTable): void;
  log(msg: string, fields?: Record<string, string | number | boolean | undefined>): void;
}

export interface RelayLinkOptions {
  relayUrl: string;
  secret: string;
  prefix: string;
  replica: string;
  clock: Clock;
  /** The revision the replica's state is at (asked at every connect); undefined for none. */
  fromRevision(): Revision | undefined;
  /** The digest of the replica's state at that revision (its history identity), sent with it. */
  digest?(): string | undefined;
  handlers: LinkHandlers;
  /** What each ping tells the relay about the replica (its dashboard); none when absent. */
  report?: () => ReplicaReport;
  /** Send a ping this often. */
  heartbeatMs?: number;
  /** Declare the link dead after this long without any message. */
  silenceMs?: number;
  /** Give up on an upgrade the relay has not answered after this long. Default `silenceMs`. */
  connectTimeoutMs?: number;
  /** Uniform in [0, 1), for the reconnect jitter (core/backoff.ts). Default `Math.random`. */
  random?: () => number;
  /** How the upgrade request is sent; `fetch` except in unit tests. */
  upgrade?: UpgradeFetch;
}

/** What the link needs of `fetch`: an upgrade request that can be aborted. */
export type UpgradeFetch = (
  url: string,
  init: { headers: Record<string, string>; signal: AbortSignal },
) => Promise<{ status: number; webSocket: LinkSocket | null; body: ReadableStream | null }>;

/** What the link uses of workerd's WebSocket (a seam for unit tests). */
export interface LinkSocket {
  accept(): void;
  send(message: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'message', handler: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close' | 'error', handler: () => void): void;
}

export class RelayLink {
  readonly #o: RelayLinkOptions;
  readonly #heartbeatMs: number;
  readonly #silenceMs: number;
  readonly #connectTimeoutMs: number;
  readonly #backoff: Backoff;
  readonly #upgrade: UpgradeFetch;
  #socket: LinkSocket | undefined;
  /** Aborts the upgrade request in flight, if any. */
  #connecting: AbortController | undefined;
  #running = false;
  #connected = false;
  #timers: Cancel[] = [];
  #lastMessageAt = 0;
  #nextId = 1;
  #pending = new Map<
    number,
    { resolve: (r: Revision) => void; reject: (e: Error) => void; cancel: Cancel }
  >();
  /**
   * The snapshot being received (between snapshotStart and snapshotEnd): its revision, how many
   * objects the relay said it holds, and how many have arrived; the two must agree at the end.
   */
  #snapshot: { revision: Revision; total: number; received: number } | undefined;
  /** Messages received, by type: what crossed the wire (tests assert warm restarts on it). */
  readonly received: Record<string, number> = {};
  lastContactAt = 0;

  constructor(options: RelayLinkOptions) {
    this.#o = options;
    this.#heartbeatMs = options.heartbeatMs ?? 5_000;
    this.#silenceMs = options.silenceMs ?? 15_000;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? this.#silenceMs;
    this.#backoff = new Backoff({
      clock: options.clock,
      ...(options.random ? { random: options.random } : {}),
    });
    this.#upgrade = options.upgrade ?? ((url, init) => fetch(url, init));
  }

  get connected(): boolean {
    return this.#connected;
  }

  get running(): boolean {
    return this.#running;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#connect();
  }

  stop(): void {
    this.#running = false;
    this.#teardown('stopped');
  }

  /**
   * Drops the current stream and opens a new one at once (the replica dropped its state and
   * needs a snapshot). Nothing happens when the link is stopped or not connected yet: the next
   * hello asks for what the replica holds then anyway.
   */
  reconnect(why: string): void {
    const socket = this.#socket;
    if (!this.#running || socket === undefined) return;
    this.#teardown(why);
    void this.#connect();
  }

  /** etcd's current revision, via the relay; the relay promises progress reaching it. */
  requestRevision(timeoutMs: number): Promise<Revision> {
    const socket = this.#socket;
    if (!this.#connected || socket === undefined) {
      return Promise.reject(new ServiceUnavailable('the edge has no link to the relay'));
    }
    const id = this.#nextId++;
    return new Promise<Revision>((resolve, reject) => {
      const cancel = this.#o.clock.setTimeout(() => {
        this.#pending.delete(id);
        reject(new ServiceUnavailable('the relay did not answer a revision request in time'));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, cancel });
      this.#send({ v: PROTOCOL_VERSION, type: 'revisionRequest', id });
    });
  }

  async #connect(): Promise<void> {
    if (!this.#running) return;
    const attempt = new AbortController();
    this.#connecting = attempt;
    // Silence detection starts once the socket is open; until then this deadline stands in for
    // it, or a relay that accepts the connection and never answers would hang the link for good.
    const cancelDeadline = this.#o.clock.setTimeout(() => attempt.abort(), this.#connectTimeoutMs);
    const opened = await this.#open(attempt.signal);
    cancelDeadline();
    // stop() (perhaps followed by start()) while the upgrade was pending ended this attempt.
    if (this.#connecting !== attempt) {
      if ('socket' in opened) opened.socket.close(1000, 'stopped');
      return;
    }
    this.#connecting = undefined;
    if (!('socket' in opened)) {
      this.#o.handlers.log(opened.failed, opened.fields);
      return this.#retry();
    }
    const { socket } = opened;
    socket.accept();
    this.#socket = socket;
    this.#lastMessageAt = this.#o.clock.now();
    socket.addEventListener('message', (event) => this.#onMessage(socket, event.data));
    socket.addEventListener('close', () => this.#onDown(socket, 'closed'));
    socket.addEventListener('error', () => this.#onDown(socket, 'error'));
    const from = this.#o.fromRevision();
    const digest = from !== undefined && from > 0 ? this.#o.digest?.() : undefined;
    this.#send({
      v: PROTOCOL_VERSION,
      type: 'hello',
      prefix: this.#o.prefix,
      replica: this.#o.replica,
      ...(from !== undefined && from > 0 ? { fromRevision: from } : {}),
      ...(digest !== undefined ? { digest } : {}),
    });
    this.#heartbeat(socket);
  }

  /** Sends the upgrade request: the relay's socket, or why there is none. */
  async #open(
    signal: AbortSignal,
  ): Promise<{ socket: LinkSocket } | { failed: string; fields: Record<string, string | number> }> {
    const { relayUrl, secret } = this.#o;
    try {
      const res = await this.#upgrade(`${relayUrl.replace(/\/$/, '')}/v1/replicate`, {
        headers: { Upgrade: 'websocket', Authorization: `Bearer ${secret}` },
        signal,
      });
      if (res.webSocket !== null) return { socket: res.webSocket };
      await res.body?.cancel();
      return { failed: 'relay refused the replication stream', fields: { status: res.status } };
    } catch (error) {
      const failed = signal.aborted ? 'relay did not answer the upgrade in time' : 'relay unreachable';
      return { failed, fields: { error: String(error) } };
    }
  }

  #heartbeat(socket: LinkSocket): void {
    const tick = () => {
      if (this.#socket !== socket) return;
      if (this.#o.clock.now() - this.#lastMessageAt > this.#silenceMs) {
        this.#o.handlers.log('relay link silent; reconnecting');
        this.#onDown(socket, 'silent');
        return;
      }
      const report = this.#o.report?.();
      this.#send({ v: PROTOCOL_VERSION, type: 'ping', ...(report ? { report } : {}) });
      this.#timers.push(this.#o.clock.setTimeout(tick, this.#heartbeatMs));
    };
    this.#timers.push(this.#o.clock.setTimeout(tick, this.#heartbeatMs));
  }

  #onMessage(socket: LinkSocket, data: unknown): void {
    if (this.#socket !== socket) return;
    this.#lastMessageAt = this.#o.clock.now();
    this.lastContactAt = this.#lastMessageAt;
    let message: ReturnType<typeof decodeRelayMessage>;
    try {
      message = decodeRelayMessage(data);
    } catch (error) {
      this.#o.handlers.log('bad message from relay; reconnecting', { error: String(error) });
      this.#onDown(socket, 'protocol');
      return;
    }
    this.received[message.type] = (this.received[message.type] ?? 0) + 1;
    const h = this.#o.handlers;
    switch (message.type) {
      case 'snapshotStart':
        this.#snapshot = { revision: message.revision, total: message.total, received: 0 };
        h.snapshotStart(message.revision, message.newHistory === true);
        return;
      case 'snapshotChunk':
        if (this.#snapshot === undefined) {
          this.#onDown(socket, 'protocol');
          return;
        }
        this.#snapshot.received += message.objects.length;
        h.snapshotChunk(message.objects);
        return;
      case 'snapshotEnd': {
        const snapshot = this.#snapshot;
        this.#snapshot = undefined;
        if (snapshot?.revision !== message.revision || snapshot.received !== snapshot.total) {
          this.#o.handlers.log('incomplete snapshot from relay; reconnecting', {
            revision: message.revision,
            total: snapshot?.total,
            received: snapshot?.received,
          });
          this.#onDown(socket, 'protocol');
          return;
        }
        this.#up();
        h.snapshotEnd(snapshot.revision, message.digest);
        return;
      }
      case 'batches':
        this.#up();
        h.batches(message.batches, message.digest);
        return;
      case 'progress':
        this.#up();
        h.progress(message.revision, message.digest);
        return;
      case 'revisionResponse': {
        const pending = this.#pending.get(message.id);
        if (!pending) return;
        this.#pending.delete(message.id);
        pending.cancel();
        if ('error' in message) pending.reject(new ServiceUnavailable(message.error.message));
        else pending.resolve(message.revision);
        return;
      }
      case 'scopes':
        h.scopes(message.table);
        return;
      case 'ping':
        this.#send({ v: PROTOCOL_VERSION, type: 'pong' });
        return;
      case 'pong':
        return;
      case 'error':
        h.log('relay ended the stream', { code: message.status.code, reason: message.status.message });
        this.#onDown(socket, 'relay error');
        return;
    }
  }

  /** The stream delivers state: the link counts as connected, and backoff starts over. */
  #up(): void {
    this.#backoff.reset();
    this.#connected = true;
  }

  #onDown(socket: LinkSocket, why: string): void {
    if (this.#socket !== socket) return;
    this.#teardown(why);
    this.#retry();
  }

  #teardown(why: string): void {
    const socket = this.#socket;
    this.#socket = undefined;
    this.#snapshot = undefined;
    this.#connecting?.abort();
    this.#connecting = undefined;
    for (const cancel of this.#timers) cancel();
    this.#timers = [];
    for (const [id, pending] of this.#pending) {
      pending.cancel();
      pending.reject(new ServiceUnavailable(`the relay link went down (${why})`));
      this.#pending.delete(id);
    }
    if (socket) {
      try {
        socket.close(1000, why.slice(0, 100));
      } catch {
        // already closed
      }
    }
    this.#connected = false;
  }

  #retry(): void {
    if (!this.#running) return;
    this.#timers.push(this.#backoff.retry(() => void this.#connect()));
  }

  #send(message: EdgeMessage): void {
    try {
      this.#socket?.send(encode(message));
    } catch (error) {
      const socket = this.#socket;
      if (socket) this.#onDown(socket, `send failed: ${String(error)}`);
    }
  }
}
