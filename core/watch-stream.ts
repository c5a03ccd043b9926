/**
 * One client's watch as a byte stream: initial events, then every change after the start
 * revision, bookmarks, and a final ERROR event when the watch cannot go on. Both tiers run it
 * over their own cache's fan-out; only where the subscription comes from differs.
 *
 *     start ─► initial ─(all ADDED sent, [BOOKMARK initialEventsEnd])─► live ──┐
 *               │  one INITIAL_CHUNK of ADDED per read                         │
 *               └──────────────────────────────────────────────────────────────┴─► ended
 *        ended by: timeoutSeconds, the client going away (signal, cancel), a stalled client
 *        (ERROR 410), the subscription closing (its error as an ERROR event), a tier shutdown
 *
 * Delivery is pull-driven, with at most one chunk in flight (the stream's high-water mark is 0,
 * so `pull` means "the reader is waiting now"): lines produced while the reader is busy
 * accumulate in `#pending` and leave as ONE chunk at its next read. An idle watcher therefore
 * gets an event at once (at the end of the synchronous run that produced it, so the batches of
 * one replication message still travel together), and a busy one gets fewer, larger chunks
 * instead of one per event: the per-chunk cost of the runtime's stream machinery, and at the
 * edge of the Worker's hop, is paid per read, not per event × watcher.
 *
 * Backpressure: past HIGH_WATER_BYTES pending the subscription pauses, so the fan-out buffers
 * (and past its limit re-reads history); the writer is never made to wait (STYLE.md §7). A client
 * that has not read for STALL_MS while bytes wait is cut with 410.
 */
import { Expired } from './errors.ts';
import type { SubscribeOptions, Subscription } from './fanout.ts';
import {
  bookmark,
  errorEvent,
  eventType,
  frameEvent,
  type WatchEventLine,
  type WatchFraming,
} from './format.ts';
import type { KeyReader } from './store.ts';
import type { Cancel, ChangeEvent, Clock, KvObject, Revision, RevisionBatch } from './types.ts';

/** How often an idle watch with bookmarks enabled gets a BOOKMARK (API.md: at least every 10 s). */
export const BOOKMARK_INTERVAL_MS = 5_000;
/** A quiet watch without bookmarks gets a keep-alive this often (see `#tick`). */
export const KEEPALIVE_MS = 5_000;
/**
 * A client that has left bytes unread for this long is gone or stuck: its watch ends with 410
 * (it resumes from its last rv, or relists). Also how a watch whose response was never read at
 * all — abandoned before its first byte — is reclaimed.
 */
export const STALL_MS = 10_000;
const NDJSON_KEEPALIVE = new TextEncoder().encode('\n');
const SSE_KEEPALIVE = new TextEncoder().encode(': keep-alive\n\n');
/** Progress bookmarks are coalesced to at most one per this interval. */
export const BOOKMARK_MIN_GAP_MS = 250;
/** Initial events are produced this many objects per read, never all at once. */
const INITIAL_CHUNK = 256;
/** Bytes waiting for the client's next read before the subscription pauses. */
export const HIGH_WATER_BYTES = 1 << 20;

export interface WatchStreamOptions {
  /** The list prefix being watched. */
  prefix: string;
  /**
   * Where the watch starts: the state of a snapshot sent as synthetic ADDED events and then the
   * changes after its revision; or only the changes after `revision`.
   */
  start: { initial: KeyReader } | { after: Revision };
  /** Send `BOOKMARK {initialEventsEnd: true}` after the initial events (sendInitialEvents=true). */
  initialEventsEnd: boolean;
  allowBookmarks: boolean;
  /** Close the stream cleanly after this long (timeoutSeconds). */
  timeoutMs?: number | undefined;
  framing: WatchFraming;
  /** A front end's own event encoding (the Kubernetes-shaped API's); without it, API.md's lines. */
  encoder?: WatchEncoder | undefined;
  clock: Clock;
  /** The tier's fan-out; throws `Expired` when `fromRevision` has left its window. */
  subscribe(options: SubscribeOptions): Subscription;
  /** Called once when the stream ends, however it ends (for metrics and leak checks). */
  onEnd?(): void;
  /**
   * The client's request signal: aborts when the client goes away. Without it a quiet watch
   * would only notice a gone client at its next write (workerd cancels a body stream only then).
   */
  signal?: AbortSignal | undefined;
  /** Cut a client that leaves bytes unread this long (default STALL_MS); 0 never cuts. */
  stallMs?: number | undefined;
}

/**
 * How a front end writes watch events instead of API.md's lines. `initial` and `change` return
 * undefined for what this watcher does not receive (a selector filters it out). Implementations
 * keep bytes per event, so that watchers which send the same thing share one encoding.
 */
export interface WatchEncoder {
  readonly contentType: string;
  initial(object: KvObject): Uint8Array | undefined;
  change(event: ChangeEvent): Uint8Array | undefined;
  bookmark(revision: Revision, initialEventsEnd: boolean): Uint8Array;
  error(error: Error): Uint8Array;
}

/** Builds the stream. Errors at subscription time are sent as an ERROR event, then the end. */
export function watchStream(options: WatchStreamOptions): ReadableStream<Uint8Array> {
  return new WatchStream(options).readable;
}

type Phase =
  | { kind: 'initial'; items: readonly KvObject[]; next: number }
  | { kind: 'live' }
  | { kind: 'ended' };

/** See the module comment. Every method runs synchronously on the tier's one thread. */
class WatchStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly #o: WatchStreamOptions;
  readonly #clock: Clock;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #phase: Phase = { kind: 'live' };
  #subscription: Subscription | undefined;
  /** Highest revision the client has been brought to (events, progress, the snapshot). */
  #position: Revision;
  /** Lines not yet handed to the client, in order; they leave as one chunk. */
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** The reader is waiting (pull called, nothing enqueued since): the next lines leave at once. */
  #wanted = false;
  #flushQueued = false;
  /** When bytes last left (keep-alives and bookmarks are due only on a quiet stream). */
  #lastSentAt: number;
  /** When the client last asked for bytes. */
  #lastPullAt: number;
  #lastBookmarkAt = Number.NEGATIVE_INFINITY;
  #lastBookmarkRevision = 0;
  #timeout: Cancel | undefined;
  #pendingBookmark: Cancel | undefined;
  readonly #onAbort = () => this.#end();

  constructor(options: WatchStreamOptions) {
    this.#o = options;
    this.#clock = options.clock;
    this.#lastSentAt = this.#clock.now();
    this.#lastPullAt = this.#lastSentAt;
    this.#position = 'after' in options.start ? options.start.after : options.start.initial.revision;
    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => this.#start(controller),
        pull: () => this.#pull(),
        cancel: () => this.#end(undefined, false),
      },
      { highWaterMark: 0 },
    );
  }

  #start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.#controller = controller;
    const { signal, timeoutMs, start } = this.#o;
    if (signal?.aborted) {
      this.#end();
      return;
    }
    signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (timeoutMs !== undefined) this.#timeout = this.#clock.setTimeout(() => this.#end(), timeoutMs);
    Ticker.of(this.#clock).add(this);
    if ('initial' in start) {
      this.#phase = { kind: 'initial', items: start.initial.list(this.#o.prefix).items, next: 0 };
    } else {
      this.#startLive();
    }
  }

  /** The reader wants bytes: hand over what waits, or remember that it waits. */
  #pull(): void {
    this.#lastPullAt = this.#clock.now();
    const phase = this.#phase;
    if (phase.kind === 'ended') return;
    if (phase.kind === 'initial') {
      const stop = Math.min(phase.items.length, phase.next + INITIAL_CHUNK);
      for (; phase.next < stop; phase.next++) this.#added(phase.items[phase.next] as KvObject);
      if (phase.next >= phase.items.length) this.#startLive();
    }
    if (this.#pendingBytes > 0) {
      this.#flush();
      // Room again: what the fan-out held back while we were over the mark comes now, and
      // leaves at the next read (or at once, if the reader is already waiting by then).
      this.#subscription?.resume();
    } else {
      this.#wanted = true;
      this.#subscription?.resume();
    }
  }

  #startLive(): void {
    this.#phase = { kind: 'live' };
    if (this.#o.initialEventsEnd) this.#bookmarkLine(this.#position, true);
    try {
      this.#subscription = this.#o.subscribe({
        fromRevision: this.#position,
        prefix: this.#o.prefix,
        onBatch: (batch) => this.#onBatch(batch),
        onProgress: (revision) => this.#onProgress(revision),
        // No error: the tier is shutting down; the stream just ends and the client resumes
        // from its last rv (a 410 would make it relist for nothing).
        onClose: (error) => this.#end(error),
      });
    } catch (error) {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Queues a revision's events; false pauses the subscription until the client reads. */
  #onBatch(batch: RevisionBatch): boolean {
    this.#position = batch.revision;
    const encoder = this.#o.encoder;
    for (const change of batch.events) {
      const bytes = encoder ? encoder.change(change) : framedChange(change, this.#o.framing);
      if (bytes !== undefined) this.#bytes(bytes);
    }
    return this.#pendingBytes < HIGH_WATER_BYTES;
  }

  #onProgress(revision: Revision): void {
    this.#position = revision;
    if (!this.#o.allowBookmarks) return;
    const wait = this.#lastBookmarkAt + BOOKMARK_MIN_GAP_MS - this.#clock.now();
    if (wait <= 0) {
      this.#bookmark(revision);
      return;
    }
    if (this.#pendingBookmark) return;
    this.#pendingBookmark = this.#clock.setTimeout(() => {
      this.#pendingBookmark = undefined;
      this.#bookmark(this.#position);
    }, wait);
  }

  #bookmark(revision: Revision): void {
    if (this.#phase.kind === 'ended') return;
    if (
      revision <= this.#lastBookmarkRevision &&
      this.#clock.now() - this.#lastSentAt < BOOKMARK_INTERVAL_MS
    ) {
      return;
    }
    this.#lastBookmarkRevision = revision;
    this.#lastBookmarkAt = this.#clock.now();
    this.#bookmarkLine(revision, false);
    if (this.#pendingBytes >= HIGH_WATER_BYTES) this.#subscription?.pause();
  }

  #added(object: KvObject): void {
    const encoder = this.#o.encoder;
    if (encoder === undefined) {
      this.#line({ type: 'ADDED', object });
      return;
    }
    const bytes = encoder.initial(object);
    if (bytes !== undefined) this.#bytes(bytes);
  }

  #bookmarkLine(revision: Revision, initialEventsEnd: boolean): void {
    const encoder = this.#o.encoder;
    if (encoder) this.#bytes(encoder.bookmark(revision, initialEventsEnd));
    else this.#line(bookmark(revision, initialEventsEnd));
  }

  #line(event: WatchEventLine): void {
    this.#bytes(sharedEncoder.encode(frameEvent(event, this.#o.framing)));
  }

  /** Appends bytes; when the reader waits, they leave at the end of this synchronous run. */
  #bytes(bytes: Uint8Array): void {
    if (this.#phase.kind === 'ended') return;
    // Framed events sit side by side in the frame arena: a run of them extends the last view
    // instead of adding a piece, so a caught-up watcher's chunk is one view, sent without a copy.
    const last = this.#pending.length - 1;
    const tail = this.#pending[last];
    if (
      tail !== undefined &&
      tail.buffer === bytes.buffer &&
      tail.byteOffset + tail.byteLength === bytes.byteOffset
    ) {
      this.#pending[last] = new Uint8Array(tail.buffer, tail.byteOffset, tail.byteLength + bytes.byteLength);
    } else {
      this.#pending.push(bytes);
    }
    this.#pendingBytes += bytes.byteLength;
    if (this.#wanted && !this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => {
        this.#flushQueued = false;
        if (this.#wanted) this.#flush();
      });
    }
  }

  /** Everything pending as one chunk. */
  #flush(): void {
    const controller = this.#controller;
    if (this.#pendingBytes === 0 || controller === undefined) return;
    const chunk =
      this.#pending.length === 1
        ? (this.#pending[0] as Uint8Array)
        : concat(this.#pending, this.#pendingBytes);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#wanted = false;
    this.#lastSentAt = this.#clock.now();
    try {
      controller.enqueue(chunk);
    } catch {
      // cancelled by the client meanwhile; cancel() ends the watch
    }
  }

  /**
   * Runs about once a second for every open watch (one shared timer, `Ticker`). While nothing
   * else is sent: a BOOKMARK every BOOKMARK_INTERVAL_MS when bookmarks are allowed, else a
   * keep-alive (an empty NDJSON line, an SSE comment) every KEEPALIVE_MS. The keep-alive is how
   * a gone client is noticed where there is no signal: workerd cancels a response body only when
   * a write to it fails.
   */
  tick(now: number): void {
    if (this.#phase.kind === 'ended') return;
    const stallMs = this.#o.stallMs ?? STALL_MS;
    if (stallMs > 0 && this.#pendingBytes > 0 && now - this.#lastPullAt > stallMs) {
      this.#end(new Expired('the watch client stopped reading; resume from the last resourceVersion'));
      return;
    }
    const interval = this.#o.allowBookmarks ? BOOKMARK_INTERVAL_MS : KEEPALIVE_MS;
    if (now - this.#lastSentAt >= interval && this.#phase.kind === 'live') {
      if (this.#o.allowBookmarks) this.#bookmark(this.#position);
      else this.#bytes(this.#o.framing === 'sse' ? SSE_KEEPALIVE : NDJSON_KEEPALIVE);
    }
  }

  /**
   * The one teardown, however the watch ends. With an error, an ERROR event is the last line;
   * `closeBody` is false when the client cancelled (its body is gone already).
   */
  #end(error?: Error, closeBody = true): void {
    if (this.#phase.kind === 'ended') return;
    if (error && closeBody) {
      if (this.#o.encoder) this.#bytes(this.#o.encoder.error(error));
      else this.#line(errorEvent(error));
    }
    if (closeBody) this.#flush();
    this.#phase = { kind: 'ended' };
    this.#pending = [];
    this.#pendingBytes = 0;
    for (const cancel of [this.#timeout, this.#pendingBookmark]) cancel?.();
    Ticker.of(this.#clock).delete(this);
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#subscription?.close();
    if (closeBody) {
      try {
        this.#controller?.close();
      } catch {
        // already closed or cancelled by the client
      }
    }
    this.#o.onEnd?.();
  }
}

/** How often the shared ticker looks at every open watch. */
const TICK_MS = 1_000;

/**
 * One timer for all the watches on a clock instead of one per watch: measured in workerd with
 * 1,000 watchers, re-arming a timer per watch took a tenth of the replica's thread. A tick walks
 * every open watch (a few µs each), which is cheap next to the events they carry.
 */
class Ticker {
  static readonly #byClock = new WeakMap<Clock, Ticker>();
  readonly #clock: Clock;
  readonly #streams = new Set<WatchStream>();
  #cancel: Cancel | undefined;

  static of(clock: Clock): Ticker {
    let ticker = Ticker.#byClock.get(clock);
    if (ticker === undefined) {
      ticker = new Ticker(clock);
      Ticker.#byClock.set(clock, ticker);
    }
    return ticker;
  }

  private constructor(clock: Clock) {
    this.#clock = clock;
  }

  add(stream: WatchStream): void {
    this.#streams.add(stream);
    this.#cancel ??= this.#clock.setTimeout(() => this.#run(), TICK_MS);
  }

  delete(stream: WatchStream): void {
    this.#streams.delete(stream);
    if (this.#streams.size > 0) return;
    this.#cancel?.();
    this.#cancel = undefined;
  }

  #run(): void {
    this.#cancel = undefined;
    const now = this.#clock.now();
    // A tick may end a watch, which deletes it from the set; iterate a copy.
    for (const stream of [...this.#streams]) stream.tick(now);
    if (this.#streams.size > 0) this.#cancel = this.#clock.setTimeout(() => this.#run(), TICK_MS);
  }
}

/**
 * A change framed once and shared by every watcher that receives it: the fan-out hands the same
 * frozen event objects to all subscribers, so with N watchers the JSON is built once, not N times.
 *
 * The bytes go into an arena of ARENA_BYTES blocks, one after the other in the order events are
 * first framed (revision order, as the fan-out delivers them), so consecutive events are adjacent
 * and a watcher's pending run of them is one view (see `#bytes`): measured in workerd with 100
 * watchers at etcd's max write rate, copying each watcher's chunk together took a sixth of the
 * replica's thread. Arena bytes are written once and never changed, so sharing them is safe; a
 * block lives as long as a view of it does (the WeakMap entries die with their events).
 */
const framed = {
  ndjson: new WeakMap<ChangeEvent, Uint8Array>(),
  sse: new WeakMap<ChangeEvent, Uint8Array>(),
};
const sharedEncoder = new TextEncoder();
const ARENA_BYTES = 64 * 1024;
let arena = new Uint8Array(ARENA_BYTES);
let arenaAt = 0;

function framedChange(change: ChangeEvent, framing: WatchFraming): Uint8Array {
  const cache = framed[framing];
  let bytes = cache.get(change);
  if (bytes === undefined) {
    bytes = intoArena(frameEvent({ type: eventType(change), object: change.object }, framing));
    cache.set(change, bytes);
  }
  return bytes;
}

/**
 * `line` encoded straight into the arena (a line that might take over a quarter block gets a
 * buffer of its own). UTF-8 needs at most 3 bytes per UTF-16 code unit, so the room is checked
 * before encoding.
 */
function intoArena(line: string): Uint8Array {
  const most = line.length * 3;
  if (most > ARENA_BYTES / 4) return sharedEncoder.encode(line);
  if (arenaAt + most > arena.byteLength) {
    arena = new Uint8Array(ARENA_BYTES);
    arenaAt = 0;
  }
  const { written } = sharedEncoder.encodeInto(line, arena.subarray(arenaAt));
  const view = arena.subarray(arenaAt, arenaAt + written);
  arenaAt += written;
  return view;
}

function concat(chunks: readonly Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.byteLength;
  }
  return out;
}
