/**
 * A watch client for benchmarks: reads a tier's NDJSON watch stream and reports, for each event,
 * its revision and the moment its line arrived (performance.now()). Nothing else is parsed, and a
 * `countOnly` watcher does not even parse JSON (it counts lines), so the client stays cheaper than
 * the tiers it measures.
 */
import { performance } from 'node:perf_hooks';

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
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body) {
      const at = performance.now();
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
      let nl = buffered.indexOf('\n');
      while (nl >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        nl = buffered.indexOf('\n');
        if (line.length === 0) continue;
        if (options.countOnly) {
          if (line.startsWith('{"type":"ERROR"')) state.errors++;
          else if (!line.startsWith('{"type":"BOOKMARK"')) state.events++;
          continue;
        }
        const event = JSON.parse(line) as { type: string; object: { modRevision?: number } };
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
