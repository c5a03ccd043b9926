/**
 * One open watch stream (API.md "Watch"), read as NDJSON.
 *
 * `for await (const event of watch)` yields typed events in the order the tier sent them;
 * blank lines (the tier's keep-alives) are skipped. The loop ends when the tier closes the
 * stream (`timeoutSeconds`, a tier shutting down) or when the caller's signal aborts; it throws
 * `StatusError` when the stream ends with an `ERROR` event (410 Expired: relist) and
 * `TransportError` when the connection breaks. Either way, the last `revision` seen is where to
 * resume (the informer does all of this for you).
 *
 * `chunks()` yields the events parsed from each piece of bytes as it arrived, for consumers that
 * apply a revision's events together (a tier writes each revision's events in one piece).
 */
import type { KvObject } from '../core/types.ts';
import { EdgewatchError, type Status, StatusError, TransportError } from './errors.ts';
import { ndjsonChunks } from './ndjson.ts';

/** A change to one key. `revision` is the change's revision (the object's `modRevision`). */
export interface ChangeEvent {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  /** For DELETED: the key's last state, with `modRevision` = the deleting revision. */
  readonly object: KvObject;
  readonly revision: number;
}

/** The tier is current up to `revision`: no change under the prefix up to it was left out. */
export interface BookmarkEvent {
  readonly type: 'BOOKMARK';
  readonly object: { readonly resourceVersion: string; readonly initialEventsEnd?: boolean };
  readonly revision: number;
}

export type WatchEvent = ChangeEvent | BookmarkEvent;

interface WireLine {
  type?: unknown;
  object?: unknown;
}

export class Watch implements AsyncIterable<WatchEvent> {
  /** The revision the stream starts from (`X-Resource-Version`), when the tier said. */
  readonly startRevision: number | undefined;
  /** Which tier serves it (`X-Served-By`). */
  readonly servedBy: string | null;
  readonly #body: ReadableStream<Uint8Array>;
  readonly #abort: AbortController;
  readonly #request: string;
  #used = false;

  /** Built by `EdgewatchClient.watch` from a 200 response. */
  constructor(response: Response, abort: AbortController, request: string) {
    if (response.body === null) throw new TransportError(`${request}: the watch response has no body`);
    this.#body = response.body;
    this.#abort = abort;
    this.#request = request;
    const rv = response.headers.get('X-Resource-Version');
    this.startRevision = rv !== null && /^[0-9]+$/.test(rv) ? Number(rv) : undefined;
    this.servedBy = response.headers.get('X-Served-By');
  }

  /** Ends the stream; a loop over it returns. Safe to call more than once. */
  close(): void {
    this.#abort.abort();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WatchEvent> {
    for await (const chunk of this.chunks()) yield* chunk;
  }

  /** The events of each piece of bytes, in order (a piece without a whole line yields nothing). */
  async *chunks(): AsyncGenerator<WatchEvent[], void, undefined> {
    if (this.#used) throw new EdgewatchError('a watch can be read only once');
    this.#used = true;
    try {
      for await (const values of ndjsonChunks(this.#body, this.#abort.signal, this.#request)) {
        const events: WatchEvent[] = [];
        for (const value of values) {
          const event = this.#typed(value);
          if (event instanceof StatusError) {
            // The events before the ERROR are delivered; then the stream is over.
            if (events.length > 0) yield events;
            throw event;
          }
          events.push(event);
        }
        yield events;
      }
    } finally {
      this.#abort.abort();
    }
  }

  #typed(value: unknown): WatchEvent | StatusError {
    const { type, object } = (value ?? {}) as WireLine;
    if (typeof object !== 'object' || object === null) {
      throw new EdgewatchError(`${this.#request}: a watch event without an object`);
    }
    if (type === 'ERROR') return new StatusError(object as Status, this.#request);
    if (type === 'BOOKMARK') {
      const rv = (object as { resourceVersion?: unknown }).resourceVersion;
      if (typeof rv !== 'string' || !/^[0-9]+$/.test(rv)) {
        throw new EdgewatchError(`${this.#request}: a bookmark without a resourceVersion`);
      }
      return { type, object: object as BookmarkEvent['object'], revision: Number(rv) };
    }
    if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
      const kv = object as KvObject;
      if (typeof kv.key !== 'string' || typeof kv.modRevision !== 'number') {
        throw new EdgewatchError(`${this.#request}: a ${type} event whose object is not a key-value`);
      }
      return { type, object: kv, revision: kv.modRevision };
    }
    throw new EdgewatchError(`${this.#request}: unknown watch event type ${JSON.stringify(type)}`);
  }
}
