/**
 * A watch client for tests: reads NDJSON (through the client's one NDJSON reader,
 * client/ndjson.ts) or Server-Sent Events from a fetch body and hands out events one at a time,
 * never sleeping. It checks the wire form itself (content type, event types, SSE framing) and
 * takes any event object, so the Kubernetes-shaped watches use it too. Each wait has a deadline that fails the test with what
 * was read so far, so a missing event is a clear failure rather than a hung test.
 *
 * Invariants: every event the server sent is returned exactly once, in order; a `read()` that
 * hit its deadline is not lost (the pending chunk is picked up by the next wait); `close()`
 * aborts the request and is safe to call twice.
 */
import { expect } from 'vitest';
import { ndjsonChunks } from '../../client/ndjson.ts';

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  // biome-ignore lint/suspicious/noExplicitAny: wire JSON; each test narrows it with expect().
  object: Record<string, any>;
}

/** What a wait returns when the stream ended instead. */
export const END = Symbol('end of stream');

const DEFAULT_DEADLINE_MS = 5_000;

export class WatchReader {
  readonly response: Response;
  /** Every event read so far, in order (for failure messages and whole-stream checks). */
  readonly seen: WatchEvent[] = [];
  readonly #abort: AbortController;
  /** What the next wait reads from: NDJSON values a piece at a time, or SSE text. */
  readonly #source: Source;
  #queue: WatchEvent[] = [];
  #pending: Promise<Piece> | undefined;
  #ended = false;

  private constructor(response: Response, abort: AbortController, sse: boolean) {
    if (!response.body) throw new Error(`watch ${response.url}: no body`);
    this.response = response;
    this.#abort = abort;
    this.#source = sse ? new SseSource(response.body) : new NdjsonSource(response.body, abort.signal);
  }

  /** Opens a watch; asserts a 200 with the framing's content type. */
  static async open(
    url: string,
    options: { sse?: boolean; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<WatchReader> {
    const abort = new AbortController();
    const sse = options.sse === true;
    const res = await fetch(url, {
      signal: abort.signal,
      headers: { ...(sse ? { Accept: 'text/event-stream' } : {}), ...options.headers },
    });
    if (res.status !== 200) {
      const text = await res.text();
      abort.abort();
      expect.fail(`watch ${url}: expected 200, got ${res.status} ${text}`);
    }
    expect(res.headers.get('content-type') ?? '', `watch ${url}: content type`).toContain(
      options.contentType ?? (sse ? 'text/event-stream' : 'application/x-ndjson'),
    );
    return new WatchReader(res, abort, sse);
  }

  /** The next event, or `END` when the server closed the stream. Fails after `deadlineMs`. */
  async next(deadlineMs = DEFAULT_DEADLINE_MS): Promise<WatchEvent | typeof END> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const queued = this.#queue.shift();
      if (queued) {
        this.seen.push(queued);
        return queued;
      }
      if (this.#ended) return END;
      this.#pending ??= this.#source.read();
      const left = deadline - Date.now();
      const piece = await withDeadline(this.#pending, left, () => this.#timeoutMessage(deadlineMs));
      this.#pending = undefined;
      if (piece.done) this.#ended = true;
      for (const value of piece.values) this.#queue.push(this.#check(value));
    }
  }

  /** The next event; fails if the stream ends first. */
  async nextEvent(deadlineMs = DEFAULT_DEADLINE_MS): Promise<WatchEvent> {
    const event = await this.next(deadlineMs);
    if (event === END) return expect.fail(`${this.#url()}: stream ended; seen ${this.#seenText()}`);
    return event;
  }

  /** The next `n` events. */
  async take(n: number, deadlineMs = DEFAULT_DEADLINE_MS): Promise<WatchEvent[]> {
    const events: WatchEvent[] = [];
    while (events.length < n) events.push(await this.nextEvent(deadlineMs));
    return events;
  }

  /** Events up to and including the first one that satisfies `predicate`. */
  async until(
    predicate: (event: WatchEvent) => boolean,
    deadlineMs = DEFAULT_DEADLINE_MS,
  ): Promise<WatchEvent[]> {
    const deadline = Date.now() + deadlineMs;
    const events: WatchEvent[] = [];
    for (;;) {
      const event = await this.nextEvent(Math.max(0, deadline - Date.now()));
      events.push(event);
      if (predicate(event)) return events;
    }
  }

  /** All remaining events until the server ends the stream. */
  async toEnd(deadlineMs = DEFAULT_DEADLINE_MS): Promise<WatchEvent[]> {
    const deadline = Date.now() + deadlineMs;
    const events: WatchEvent[] = [];
    for (;;) {
      const event = await this.next(Math.max(0, deadline - Date.now()));
      if (event === END) return events;
      events.push(event);
    }
  }

  close(): void {
    this.#abort.abort();
    this.#pending?.catch(() => undefined);
    this.#source.cancel();
  }

  /** An event off the wire: a known type and an object (an SSE event also named after its type). */
  #check(value: { json: unknown; name?: string | undefined } | unknown): WatchEvent {
    const sse = this.#source instanceof SseSource;
    const { json, name } = sse
      ? (value as { json: unknown; name?: string })
      : { json: value, name: undefined };
    const text = JSON.stringify(json);
    const event = json as WatchEvent;
    expect(
      ['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'],
      `${this.#url()}: event type of ${text}`,
    ).toContain(event?.type);
    expect(typeof event.object, `${this.#url()}: event object of ${text}`).toBe('object');
    if (sse) expect(name, `${this.#url()}: SSE event name of ${text}`).toBe(event.type);
    return event;
  }

  #url(): string {
    return `watch ${this.response.url}`;
  }

  #seenText(): string {
    return this.seen.map((e) => JSON.stringify(e)).join('\n  ') || '(nothing)';
  }

  #timeoutMessage(deadlineMs: number): string {
    return `${this.#url()}: no event within ${deadlineMs} ms; seen:\n  ${this.#seenText()}`;
  }
}

/** What one read of the body gave: its events' values, and whether the body ended. */
interface Piece {
  readonly values: readonly unknown[];
  readonly done: boolean;
}

interface Source {
  read(): Promise<Piece>;
  cancel(): void;
}

/** NDJSON through the client's reader: a broken body throws its `TransportError`. */
class NdjsonSource implements Source {
  readonly #chunks: AsyncGenerator<unknown[], void, undefined>;
  constructor(body: ReadableStream<Uint8Array>, signal: AbortSignal) {
    this.#chunks = ndjsonChunks(body, signal, 'watch');
  }
  async read(): Promise<Piece> {
    const next = await this.#chunks.next();
    return next.done ? { values: [], done: true } : { values: next.value, done: false };
  }
  cancel(): void {
    this.#chunks.return(undefined).catch(() => undefined);
  }
}

/**
 * Server-Sent Events, which only tests read: blocks of `event: TYPE` and `data: {json}` lines;
 * comment lines (`:`) are keep-alives. Values are `{ json, name }`.
 */
class SseSource implements Source {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = '';
  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }
  async read(): Promise<Piece> {
    const result = await this.#reader.read();
    this.#buffer += result.done
      ? this.#decoder.decode()
      : this.#decoder.decode(result.value, { stream: true });
    const blocks = this.#buffer.split(/\r?\n\r?\n/);
    this.#buffer = blocks.pop() ?? '';
    if (result.done && this.#buffer.trim() !== '') blocks.push(this.#buffer);
    const values: { json: unknown; name: string | undefined }[] = [];
    for (const block of blocks) {
      let name: string | undefined;
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(':') || line === '') continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length === 0) continue;
      let json: unknown;
      try {
        json = JSON.parse(data.join('\n'));
      } catch {
        return expect.fail(`SSE data is not JSON: ${data.join('\n')}`);
      }
      values.push({ json, name });
    }
    return { values, done: result.done };
  }
  cancel(): void {
    this.#reader.cancel().catch(() => undefined);
  }
}

/** `promise`, or a rejection with `message()` after `ms`; the timer never outlives the race. */
async function withDeadline<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The events that are not bookmarks (for checks of the changes alone). */
export function changes(events: readonly WatchEvent[]): WatchEvent[] {
  return events.filter((e) => e.type !== 'BOOKMARK');
}
