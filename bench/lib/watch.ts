/**
 * A watch client for benchmarks: reads a tier's NDJSON watch stream (with the client's reader,
 * client/ndjson.ts) and reports, for each event, its revision and the moment its piece of bytes
 * was parsed (performance.now()). A `countOnly` watcher does not even parse JSON (it counts
 * lines), so that a thousand of them stay cheaper than the tiers they measure.
 */
import { performance } from 'node:perf_hooks';
import { ndjsonChunks } from '../../client/ndjson.ts';

export interface WatchHandle {
  /** Resolves when the response headers arrived (the watch is registered). */
  readonly opened: Promise<void>;
  /** Event lines seen (not bookmarks). */
  readonly events: number;
  /** ERROR events seen (410 Expired: cut as too slow, or the start revision was too old). */
  readonly errors: number;
  /** Highest event revision seen (parsing watchers only). */
  readonly revision: number;
  /** Set when the stream ended or failed. */
  readonly ended: boolean;
  close(): void;
}

export interface WatchOptions {
  url: string;
  headers?: Record<string, string>;
  /** Called per event with its modRevision and arrival time; not called when countOnly. */
  onEvent?: (revision: number, at: number) => void;
  countOnly?: boolean;
}

export function openWatch(options: WatchOptions): WatchHandle {
  const abort = new AbortController();
  const state = { events: 0, errors: 0, revision: 0, ended: false };
  const carry: LineCarry = { midLine: false, bytes: undefined };
  let resolveOpened: () => void = () => {};
  let rejectOpened: (e: unknown) => void = () => {};
  const opened = new Promise<void>((resolve, reject) => {
    resolveOpened = resolve;
    rejectOpened = reject;
  });
  opened.catch(() => {}); // awaited by the caller; never an unhandled rejection
  const run = async () => {
    const res = await fetch(options.url, { headers: options.headers ?? {}, signal: abort.signal });
    if (!res.ok || !res.body) throw new Error(`watch ${options.url}: ${res.status} ${await res.text()}`);
    resolveOpened();
    if (options.countOnly) {
      for await (const chunk of res.body) countLines(chunk as Uint8Array, state, carry);
      return;
    }
    // The client's NDJSON reader (client/ndjson.ts); a piece's events share its arrival time.
    for await (const chunk of ndjsonChunks(res.body, abort.signal, `watch ${options.url}`)) {
      const at = performance.now();
      for (const value of chunk) {
        const event = value as { type: string; object: { modRevision?: number } };
        if (event.type === 'ERROR') state.errors++;
        else if (event.type !== 'BOOKMARK') {
          state.events++;
          const rev = event.object.modRevision ?? 0;
          if (rev > state.revision) state.revision = rev;
          options.onEvent?.(rev, at);
        }
      }
    }
  };
  run().then(
    () => {
      state.ended = true;
    },
    (error: unknown) => {
      state.ended = true;
      rejectOpened(error);
    },
  );
  return {
    opened,
    get events() {
      return state.events;
    },
    get errors() {
      return state.errors;
    },
    get revision() {
      return state.revision;
    },
    get ended() {
      return state.ended;
    },
    close: () => abort.abort(),
  };
}

/** `{"type":"` is 9 bytes: the event type's first letter follows it. */
const TYPE_AT = 9;
const NEWLINE = 0x0a;
const BRACE = 0x7b;

/** Where the previous chunk stopped: inside a line already counted, or a line start cut short. */
interface LineCarry {
  midLine: boolean;
  bytes: Uint8Array | undefined;
}

/**
 * Counts event lines without decoding them: a line that starts with `{` is an event unless its
 * type starts with B (BOOKMARK) or E (ERROR); empty lines are keep-alives. The newline scan is
 * Buffer.indexOf (native), so a counting watcher costs the client far less than a tier's framing
 * costs the tier.
 */
function countLines(chunk: Uint8Array, state: { events: number; errors: number }, carry: LineCarry): void {
  let buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (carry.bytes !== undefined) {
    buf = Buffer.concat([carry.bytes, buf]);
    carry.bytes = undefined;
  }
  let at = 0;
  if (carry.midLine) {
    const nl = buf.indexOf(NEWLINE);
    if (nl < 0) return;
    carry.midLine = false;
    at = nl + 1;
  }
  while (at < buf.length) {
    if (buf[at] === BRACE) {
      if (at + TYPE_AT >= buf.length) {
        carry.bytes = Buffer.from(buf.subarray(at));
        return;
      }
      const letter = buf[at + TYPE_AT];
      if (letter === 0x45) state.errors++;
      else if (letter !== 0x42) state.events++;
    }
    const nl = buf.indexOf(NEWLINE, at);
    if (nl < 0) {
      carry.midLine = true;
      return;
    }
    at = nl + 1;
  }
}
