/**
 * One client's watch as a byte stream: initial events, then every change after the start
 * revision, bookmarks, and a final ERROR event when the watch cannot go on. Both tiers run it
 * over their own cache's fan-out; only where the subscription comes from differs.
 *
 * Backpressure: the stream is pull-based. While the client's queue is over its high-water mark
 * the subscription is paused, so the fan-out buffers (and, past its limit, re-reads history);
 * the writer is never made to wait (STYLE.md §7).
 *
 *     start ─► initial events (pulled in chunks from a snapshot) ─► [BOOKMARK initialEventsEnd]
 *           ─► live: batches, progress bookmarks ─► timeout: close │ error: ERROR event, close
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
/** A quiet watch without bookmarks gets a keep-alive this often (see `idleTicks`). */
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
/** Initial events are produced this many objects per pull, never all at once. */
const INITIAL_CHUNK = 256;
/** Bytes queued for the client before the subscription pauses. */
const HIGH_WATER_BYTES = 1 << 20;

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
}

/** Builds the stream. Errors at subscription time are sent as an ERROR event, then the end. */
export function watchStream(options: WatchStreamOptions): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const { clock, framing } = options;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let subscription: Subscription | undefined;
  let initial: { items: KvObject[]; next: number; revision: Revision } | undefined;
  let ended = false;
  let lastSentAt = clock.now();
  /** When the client last read (a pull follows every read that leaves the queue below its mark). */
  let lastPullAt = clock.now();
  let lastBookmarkAt = Number.NEGATIVE_INFINITY;
  let lastBookmarkRevision = 0;
  let position: Revision = 'after' in options.start ? options.start.after : options.start.initial.revision;
  /** The client's timeout; the recurring and pending timers have a slot each below. */
  const timers: Cancel[] = [];
  let idleTimer: Cancel | undefined;

  // Lines written in one synchronous run (a batch, several batches of one replication message,
  // a pull's initial events) leave as one chunk: each chunk costs a trip through the runtime's
  // stream machinery, and at the edge also through the Worker's pipe.
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let flushQueued = false;
  const flush = () => {
    flushQueued = false;
    if (pending.length === 0 || ended) return;
    const chunk = pending.length === 1 ? (pending[0] as Uint8Array) : concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    controller.enqueue(chunk);
  };
  // Measured (bench 2 and 3): holding a busy watch's chunks back for even 10 ms cost more
  // latency at moderate write rates than it saved at etcd's maximum, so a run's lines leave at
  // the end of that run.
  const enqueue = (bytes: Uint8Array): boolean => {
    if (ended) return false;
    pending.push(bytes);
    pendingBytes += bytes.byteLength;
    lastSentAt = clock.now();
    if (!flushQueued) {
      flushQueued = true;
      queueMicrotask(flush);
    }
    return (controller.desiredSize ?? 0) - pendingBytes > 0;
  };
  const send = (event: WatchEventLine): boolean => enqueue(encoder.encode(frameEvent(event, framing)));

  const end = (error?: Error) => {
    if (ended) return;
    if (error) send(errorEvent(error));
    try {
      flush();
    } catch {
      // cancelled by the client meanwhile
    }
    ended = true;
    for (const cancel of [...timers, idleTimer, pendingBookmark]) cancel?.();
    subscription?.close();
    try {
      controller.close();
    } catch {
      // already closed or cancelled by the client
    }
    options.onEnd?.();
  };

  const sendBookmark = (revision: Revision) => {
    if (revision <= lastBookmarkRevision && clock.now() - lastSentAt < BOOKMARK_INTERVAL_MS) return;
    lastBookmarkRevision = revision;
    lastBookmarkAt = clock.now();
    if (!send(bookmark(revision))) subscription?.pause();
  };

  let pendingBookmark: Cancel | undefined;
  const onProgress = (revision: Revision) => {
    position = revision;
    if (!options.allowBookmarks) return;
    const wait = lastBookmarkAt + BOOKMARK_MIN_GAP_MS - clock.now();
    if (wait <= 0) return sendBookmark(revision);
    if (pendingBookmark) return;
    pendingBookmark = clock.setTimeout(() => {
      pendingBookmark = undefined;
      if (!ended) sendBookmark(position);
    }, wait);
  };

  const onBatch = (batch: RevisionBatch): boolean => {
    position = batch.revision;
    let more = true;
    for (const change of batch.events) more = enqueue(framedChange(change, framing));
    return more;
  };

  const startLive = () => {
    if (options.initialEventsEnd) send(bookmark(position, true));
    try {
      subscription = options.subscribe({
        fromRevision: position,
        prefix: options.prefix,
        paused: (controller.desiredSize ?? 0) <= 0,
        onBatch,
        onProgress,
        // No error: the tier is shutting down; the stream just ends and the client resumes
        // from its last rv (a 410 would make it relist for nothing).
        onClose: (error) => end(error),
      });
    } catch (error) {
      end(error instanceof Error ? error : new Error(String(error)));
    }
  };

  /**
   * While nothing else is sent: a BOOKMARK every BOOKMARK_INTERVAL_MS when bookmarks are allowed,
   * else a keep-alive (an empty NDJSON line, an SSE comment) every KEEPALIVE_MS. The keep-alive
   * is how a gone client is noticed: workerd cancels a response body only when a write to it
   * fails, and without one a quiet watch (or one the edge forwarded) would stay open forever.
   */
  const idleTicks = () => {
    const interval = options.allowBookmarks ? BOOKMARK_INTERVAL_MS : KEEPALIVE_MS;
    const tick = () => {
      if (ended) return;
      const unread = (controller.desiredSize ?? 0) < HIGH_WATER_BYTES;
      if (unread && clock.now() - lastPullAt > STALL_MS) {
        end(new Expired('the watch client stopped reading; resume from the last resourceVersion'));
        return;
      }
      if (clock.now() - lastSentAt >= interval && initial === undefined) {
        if (options.allowBookmarks) sendBookmark(position);
        else enqueue(framing === 'sse' ? SSE_KEEPALIVE : NDJSON_KEEPALIVE);
      }
      idleTimer = clock.setTimeout(tick, interval);
    };
    idleTimer = clock.setTimeout(tick, interval);
  };

  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        if (options.signal?.aborted) return end();
        options.signal?.addEventListener('abort', () => end(), { once: true });
        if (options.timeoutMs !== undefined) timers.push(clock.setTimeout(() => end(), options.timeoutMs));
        idleTicks();
        if ('initial' in options.start) {
          const snapshot = options.start.initial;
          initial = { items: snapshot.list(options.prefix).items, next: 0, revision: snapshot.revision };
        } else {
          startLive();
        }
      },
      pull() {
        lastPullAt = clock.now();
        if (ended) return;
        if (initial !== undefined) {
          const { items } = initial;
          const stop = Math.min(items.length, initial.next + INITIAL_CHUNK);
          for (; initial.next < stop; initial.next++) {
            send({ type: 'ADDED', object: items[initial.next] });
          }
          if (initial.next >= items.length) {
            initial = undefined;
            startLive();
          }
          return;
        }
        subscription?.resume();
      },
      cancel() {
        if (ended) return;
        ended = true;
        for (const cancel of [...timers, idleTimer, pendingBookmark]) cancel?.();
        subscription?.close();
        options.onEnd?.();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: HIGH_WATER_BYTES }),
  );
}

/**
 * A change framed once and shared by every watcher that receives it: the fan-out hands the same
 * frozen event objects to all subscribers, so with N watchers the JSON is built once, not N times.
 * Enqueued chunks are never written to, so sharing the bytes is safe.
 */
const framed = {
  ndjson: new WeakMap<ChangeEvent, Uint8Array>(),
  sse: new WeakMap<ChangeEvent, Uint8Array>(),
};
const sharedEncoder = new TextEncoder();

function framedChange(change: ChangeEvent, framing: WatchFraming): Uint8Array {
  const cache = framed[framing];
  let bytes = cache.get(change);
  if (bytes === undefined) {
    bytes = sharedEncoder.encode(frameEvent({ type: eventType(change), object: change.object }, framing));
    cache.set(change, bytes);
  }
  return bytes;
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
