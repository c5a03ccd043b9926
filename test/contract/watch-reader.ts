/**
 * A watch client for tests: reads NDJSON or Server-Sent Events from a fetch body and hands out
 * events one at a time, never sleeping. Each wait has a deadline that fails the test with what
 * was read so far, so a missing event is a clear failure rather than a hung test.
 *
 * Invariants: every event the server sent is returned exactly once, in order; a `read()` that
 * hit its deadline is not lost (the pending chunk is picked up by the next wait); `close()`
 * aborts the request and is safe to call twice.
 */
import { expect } from 'vitest';

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
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  readonly #sse: boolean;
  #buffer = '';
  #queue: WatchEvent[] = [];
  #pending: ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> | undefined;
  #ended = false;

  private constructor(response: Response, abort: AbortController, sse: boolean) {
    if (!response.body) throw new Error(`watch ${response.url}: no body`);
    this.response = response;
    this.#abort = abort;
    this.#sse = sse;
    this.#reader = response.body.getReader();
  }

  /** Opens a watch; asserts a 200 with the framing's content type. */
  static async open(url: string, options: { sse?: boolean } = {}): Promise<WatchReader> {
    const abort = new AbortController();
    const sse = options.sse === true;
    const res = await fetch(url, {
      signal: abort.signal,
      ...(sse ? { headers: { Accept: 'text/event-stream' } } : {}),
    });
    if (res.status !== 200) {
      const text = await res.text();
      abort.abort();
      expect.fail(`watch ${url}: expected 200, got ${res.status} ${text}`);
    }
    expect(res.headers.get('content-type') ?? '', `watch ${url}: content type`).toContain(
      sse ? 'text/event-stream' : 'application/x-ndjson',
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
      this.#pending ??= this.#reader.read();
      const left = deadline - Date.now();
      const result = await withDeadline(this.#pending, left, () => this.#timeoutMessage(deadlineMs));
      this.#pending = undefined;
      if (result.done) {
        this.#ended = true;
        this.#parse(this.#decoder.decode(), true);
      } else {
        this.#parse(this.#decoder.decode(result.value, { stream: true }), false);
      }
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
    this.#reader.cancel().catch(() => undefined);
  }

  #parse(text: string, final: boolean): void {
    this.#buffer += text;
    const separator = this.#sse ? /\r?\n\r?\n/ : /\r?\n/;
    const parts = this.#buffer.split(separator);
    this.#buffer = parts.pop() ?? '';
    if (final && this.#buffer.trim() !== '') parts.push(this.#buffer);
    for (const part of parts) {
      const event = this.#sse ? this.#parseSse(part) : this.#parseLine(part);
      if (event) this.#queue.push(event);
    }
  }

  #parseLine(line: string): WatchEvent | undefined {
    if (line.trim() === '') return undefined;
    return parseEvent(line, this.#url());
  }

  /** One SSE block: `event: TYPE` and `data: {json}`; comment lines (`:`) are keep-alives. */
  #parseSse(block: string): WatchEvent | undefined {
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
    if (data.length === 0) return undefined;
    const event = parseEvent(data.join('\n'), this.#url());
    expect(name, `${this.#url()}: SSE event name of ${data.join('\n')}`).toBe(event.type);
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

function parseEvent(json: string, where: string): WatchEvent {
  let event: WatchEvent;
  try {
    event = JSON.parse(json) as WatchEvent;
  } catch {
    return expect.fail(`${where}: not JSON: ${json}`);
  }
  expect(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'], `${where}: event type of ${json}`).toContain(
    event.type,
  );
  expect(typeof event.object, `${where}: event object of ${json}`).toBe('object');
  return event;
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
