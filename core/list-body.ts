/**
 * List bodies written as a stream of chunks straight from a snapshot, whatever the list's size:
 * each pull writes the next ~64 KB of objects into a fresh buffer, from the objects' kept JSON
 * (core/object.ts `EncodedObject`), so a list of 100k objects never exists as one string, one
 * array or one buffer (Kubernetes' KEP-5116 streams collections for the same reason). The
 * snapshot is immutable (core/store.ts), so a list streamed while writes land is still exactly
 * one revision.
 *
 * A body that fits in one chunk is returned as bytes, not as a stream: most lists are small, and
 * a stream costs a few round trips through the runtime's stream machinery.
 *
 * Why hand-written: the bytes are copied from strings kept per object with `encodeInto`, with the
 * envelope's constant parts copied from bytes encoded once, and numbers written digit by digit;
 * `JSON.stringify` of the page would re-escape every value and build the whole body at once.
 */
import { EncodedObject, encoded, keyJson } from './object.ts';
import type { KvObject } from './types.ts';

/** A chunk leaves once it holds this many bytes. */
export const CHUNK_BYTES = 64 * 1024;
/** Room past a chunk's size in each buffer (buffers are zero-filled on allocation: keep it small). */
const SLACK_BYTES = 16 * 1024;

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/**
 * Bytes appended into fixed buffers; `take` hands out what was written and starts a new buffer
 * (handed-out chunks are never written again).
 */
export class ChunkWriter {
  #buf = EMPTY;
  #pos = 0;

  /** Bytes written since the last `take`. */
  get size(): number {
    return this.#pos;
  }

  bytes(bytes: Uint8Array): void {
    const n = bytes.byteLength;
    this.#ensure(n);
    const buf = this.#buf;
    let pos = this.#pos;
    // The envelope's constants are a few bytes: a plain loop beats TypedArray.set's call there.
    if (n <= 32) for (let i = 0; i < n; i++) buf[pos++] = bytes[i] as number;
    else {
      buf.set(bytes, pos);
      pos += n;
    }
    this.#pos = pos;
  }

  /** `s` as UTF-8 (at most 3 bytes per UTF-16 unit; a lone surrogate becomes U+FFFD, as TextEncoder). */
  text(s: string): void {
    this.#ensure(s.length * 3);
    this.#pos += utf8.encodeInto(s, this.#buf.subarray(this.#pos)).written;
  }

  /** A non-negative integer in decimal. */
  int(n: number): void {
    if (n < 10) {
      this.#ensure(1);
      this.#buf[this.#pos++] = 48 + n;
      return;
    }
    const digits = String(n);
    this.#ensure(digits.length);
    for (let i = 0; i < digits.length; i++) this.#buf[this.#pos++] = digits.charCodeAt(i);
  }

  byte(b: number): void {
    this.#ensure(1);
    this.#buf[this.#pos++] = b;
  }

  /** What was written since the last `take`; the writer continues in a new buffer. */
  take(): Uint8Array {
    const chunk = this.#buf.subarray(0, this.#pos);
    this.#buf = EMPTY;
    this.#pos = 0;
    // A small body should not hold a whole chunk buffer while it waits to be sent.
    return chunk.byteLength < CHUNK_BYTES / 2 ? chunk.slice() : chunk;
  }

  /**
   * Makes room for `n` more bytes. A buffer holds a chunk and some slack, so the object that
   * fills a chunk usually fits without a copy; a larger one grows it.
   */
  #ensure(n: number): void {
    if (this.#pos + n <= this.#buf.byteLength) return;
    const bigger = new Uint8Array(Math.max(CHUNK_BYTES + SLACK_BYTES, this.#pos + n));
    bigger.set(this.#buf.subarray(0, this.#pos));
    this.#buf = bigger;
  }
}

const KEY = utf8.encode('{"key":');
const CREATE = utf8.encode(',"createRevision":');
const MOD = utf8.encode(',"modRevision":');
const VERSION = utf8.encode(',"version":');
const VALUE = utf8.encode(',"value":');
const VALUE_BASE64 = utf8.encode(',"valueBase64":');
const LEASE = utf8.encode(',"lease":');

/** Writes `JSON.stringify(o)` (core/object.ts `objectJson`) from the object's kept parts. */
export function writeObject(o: KvObject, w: ChunkWriter): void {
  const e = o instanceof EncodedObject ? o : encoded(o);
  w.bytes(KEY);
  w.text(keyJson(e.key));
  w.bytes(CREATE);
  w.int(e.createRevision);
  w.bytes(MOD);
  w.int(e.modRevision);
  w.bytes(VERSION);
  w.int(e.version);
  w.bytes(e.base64 ? VALUE_BASE64 : VALUE);
  w.text(e.valueJson);
  if (e.lease !== undefined) {
    w.bytes(LEASE);
    w.text(JSON.stringify(e.lease));
  }
  w.byte(0x7d); // }
}

/**
 * `head`, then the items separated by commas, then `tail`: as bytes when it all fits in one
 * chunk, else as a stream that writes one chunk per pull (backpressure: nothing is written until
 * the client has taken the previous chunk). `head` and `tail` are the envelope around the items
 * (`{"kind":"List",…,"items":[` and `]}` for API.md's list; another front end has its own).
 */
export function listBody<T>(
  head: string,
  items: Iterable<T>,
  tail: string,
  write: (item: T, w: ChunkWriter) => void,
): Uint8Array | ReadableStream<Uint8Array> {
  const w = new ChunkWriter();
  const it = items[Symbol.iterator]();
  let first = true;
  /** Writes items until the chunk is full (false) or they ran out and the tail is written (true). */
  const fill = (): boolean => {
    while (w.size < CHUNK_BYTES) {
      const next = it.next();
      if (next.done === true) {
        w.text(tail);
        return true;
      }
      if (!first) w.byte(0x2c); // ,
      first = false;
      write(next.value, w);
    }
    return false;
  };
  w.text(head);
  if (fill()) return w.take();
  let pending: Uint8Array | undefined = w.take();
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (pending !== undefined) {
          controller.enqueue(pending);
          pending = undefined;
          return;
        }
        const done = fill();
        controller.enqueue(w.take());
        if (done) controller.close();
      },
      cancel() {
        it.return?.();
      },
    },
    // One chunk ahead at most: a slow client holds ~64 KB of the tier's memory, not the list.
    { highWaterMark: 0 },
  );
}
