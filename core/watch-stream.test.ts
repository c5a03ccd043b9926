/**
 * One watch stream on a manual clock, through its public function `watchStream`, over a real
 * WatchCache's fan-out: what it sends, in which order, and every way it ends. No timer is real:
 * keep-alives, bookmarks, the stall cut and timeoutSeconds move with the test's clock.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { makeObject } from './object.ts';
import type { KvObject, RevisionBatch } from './types.ts';
import { WatchCache } from './watch-cache.ts';
import {
  BOOKMARK_INTERVAL_MS,
  BOOKMARK_MIN_GAP_MS,
  KEEPALIVE_MS,
  STALL_MS,
  type WatchStreamOptions,
  watchStream,
} from './watch-stream.ts';

const PREFIX = '/registry/';
const utf8 = new TextEncoder();
const text = new TextDecoder();

const obj = (key: string, value: string, revision: number, create = revision, version = 1): KvObject =>
  makeObject({ key, value: utf8.encode(value), createRevision: create, modRevision: revision, version });

function put(revision: number, key: string, value: string, prev?: KvObject): RevisionBatch {
  const object = obj(key, value, revision, prev?.createRevision ?? revision, (prev?.version ?? 0) + 1);
  return { revision, events: [{ type: 'PUT', object, ...(prev ? { prev } : {}) }] };
}

/** A ready cache at revision 3 with two keys under the prefix and one outside it. */
function setup(limits: { maxEvents?: number } = {}) {
  const clock = new ManualClock();
  const cache = new WatchCache({ clock, ...limits });
  const a = obj(`${PREFIX}a`, 'a1', 2);
  cache.replace(3, [a, obj(`${PREFIX}b`, 'b1', 3), obj('/elsewhere/x', 'x', 1)]);
  let ended = 0;
  const stream = (options: Partial<WatchStreamOptions> = {}) =>
    watchStream({
      prefix: PREFIX,
      start: { after: cache.revision },
      initialEventsEnd: false,
      allowBookmarks: false,
      framing: 'ndjson',
      clock,
      subscribe: (o) => cache.watch(o),
      onEnd: () => ended++,
      ...options,
    });
  const open = (options: Partial<WatchStreamOptions> = {}) => new Lines(stream(options).getReader());
  return { clock, cache, a, stream, open, ended: () => ended };
}

/** One NDJSON line: an event, or '' for a keep-alive. */
type Line = '' | { type: string; object: Record<string, unknown> };

/** Reads a watch body as lines of JSON ('' for a keep-alive). */
class Lines {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer = '';
  done = false;
  constructor(reader: ReadableStreamDefaultReader<Uint8Array>) {
    this.#reader = reader;
  }
  /** The next chunk's lines (one read: what the stream had pending, or the next it produces). */
  async next(): Promise<Line[]> {
    const chunk = await this.#reader.read();
    if (chunk.done) {
      this.done = true;
      return [];
    }
    this.#buffer += text.decode(chunk.value, { stream: true });
    const lines = this.#buffer.split('\n');
    this.#buffer = lines.pop() ?? '';
    return lines.map((l): Line => (l === '' ? '' : (JSON.parse(l) as Exclude<Line, ''>)));
  }
  cancel(): Promise<void> {
    return this.#reader.cancel();
  }
}

describe('watchStream', () => {
  it('sends the initial state as ADDED, the end-of-initial-events bookmark, then the changes', async () => {
    const { cache, a, open } = setup();
    const w = open({ start: { initial: cache.snapshot() }, initialEventsEnd: true });
    const initial = await w.next();
    expect(initial.map((e) => (e === '' ? '' : [e.type, e.object.key ?? e.object.resourceVersion]))).toEqual([
      ['ADDED', `${PREFIX}a`],
      ['ADDED', `${PREFIX}b`],
      ['BOOKMARK', '3'],
    ]);
    expect(initial[2]).toMatchObject({ object: { initialEventsEnd: true } });
    cache.apply(put(4, `${PREFIX}a`, 'a2', a));
    cache.apply(put(5, '/elsewhere/y', 'y'));
    expect(await w.next()).toEqual([
      { type: 'MODIFIED', object: expect.objectContaining({ modRevision: 4 }) },
    ]);
    await w.cancel();
  });

  it('sends only the changes after the start revision, as one chunk when the reader was busy', async () => {
    const { cache, a, open } = setup();
    const w = open();
    cache.apply(put(4, `${PREFIX}a`, 'a2', a));
    cache.apply(put(5, `${PREFIX}c`, 'c1'));
    const chunk = await w.next();
    expect(chunk.map((e) => (e === '' ? '' : `${e.type} ${e.object.modRevision}`))).toEqual([
      'MODIFIED 4',
      'ADDED 5',
    ]);
    await w.cancel();
  });

  it('sends a keep-alive on a quiet watch without bookmarks every KEEPALIVE_MS', async () => {
    const { clock, open } = setup();
    const w = open();
    const next = w.next();
    await clock.advance(KEEPALIVE_MS - 1_000);
    let got: unknown;
    void next.then((v) => {
      got = v;
    });
    await clock.advance(0);
    expect(got).toBeUndefined();
    await clock.advance(1_000);
    expect(await next).toEqual(['']);
    await w.cancel();
  });

  it('sends an idle bookmark every BOOKMARK_INTERVAL_MS, and coalesces progress to one per BOOKMARK_MIN_GAP_MS', async () => {
    const { clock, cache, open } = setup();
    const w = open({ allowBookmarks: true });
    const idle = w.next();
    await clock.advance(BOOKMARK_INTERVAL_MS);
    expect(await idle).toEqual([{ type: 'BOOKMARK', object: { resourceVersion: '3' } }]);
    cache.progress(6);
    cache.progress(7);
    cache.progress(8);
    await clock.advance(BOOKMARK_MIN_GAP_MS);
    // The first progress after the idle bookmark waits out the gap; the later ones join it.
    expect(await w.next()).toEqual([{ type: 'BOOKMARK', object: { resourceVersion: '8' } }]);
    await w.cancel();
  });

  it('cuts a client that leaves bytes unread for STALL_MS with an ERROR 410, and ends once', async () => {
    const { clock, cache, open, ended } = setup();
    const w = open();
    cache.apply(put(4, `${PREFIX}c`, 'c1'));
    await clock.advance(STALL_MS + 1_000);
    const lines = await w.next();
    expect(lines.at(0)).toMatchObject({ type: 'ADDED' });
    expect(lines.at(-1)).toMatchObject({ type: 'ERROR', object: { code: 410, reason: 'Expired' } });
    expect(await w.next()).toEqual([]);
    expect(w.done).toBe(true);
    expect(ended()).toBe(1);
    expect(cache.fanout.count).toBe(0);
  });

  it('never cuts a client that stops reading when stallMs is 0', async () => {
    const { clock, cache, open, ended } = setup();
    const w = open({ stallMs: 0 });
    cache.apply(put(4, `${PREFIX}c`, 'c1'));
    await clock.advance(10 * STALL_MS);
    expect(ended()).toBe(0);
    const lines = await w.next();
    expect(lines.filter((l) => l !== '' && l.type === 'ERROR')).toEqual([]);
    await w.cancel();
  });

  it('ends cleanly, without an ERROR, after timeoutMs', async () => {
    const { clock, open, ended } = setup();
    const w = open({ timeoutMs: 1_500 });
    const next = w.next();
    await clock.advance(1_500);
    expect(await next).toEqual([]);
    expect(w.done).toBe(true);
    expect(ended()).toBe(1);
  });

  it('ends when the client goes away (its signal aborts), and lets go of its subscription', async () => {
    const { cache, open, ended } = setup();
    const abort = new AbortController();
    const w = open({ signal: abort.signal });
    expect(cache.fanout.count).toBe(1);
    abort.abort();
    expect(ended()).toBe(1);
    expect(cache.fanout.count).toBe(0);
    expect(await w.next()).toEqual([]);
  });

  it('ends when the reader cancels the body, and lets go of its subscription', async () => {
    const { cache, open, ended } = setup();
    const w = open();
    await w.cancel();
    expect(ended()).toBe(1);
    expect(cache.fanout.count).toBe(0);
  });

  it('answers a start revision older than the window with one ERROR 410, then the end', async () => {
    const { cache, open } = setup({ maxEvents: 1 });
    cache.apply(put(4, `${PREFIX}c`, 'c1'));
    cache.apply(put(5, `${PREFIX}d`, 'd1'));
    const w = open({ start: { after: 3 } });
    expect(await w.next()).toEqual([
      {
        type: 'ERROR',
        object: expect.objectContaining({ code: 410, message: expect.stringContaining('too old') }),
      },
    ]);
    expect(await w.next()).toEqual([]);
  });

  it('frames events and keep-alives for SSE when asked', async () => {
    const { clock, cache, stream } = setup();
    const reader = stream({ framing: 'sse' }).getReader();
    cache.apply(put(4, `${PREFIX}c`, 'c1'));
    const event = text.decode((await reader.read()).value);
    expect(event).toMatch(/^event: ADDED\ndata: \{.*"modRevision":4.*\}\n\n$/);
    const keepAlive = reader.read();
    await clock.advance(KEEPALIVE_MS + 1_000);
    expect(text.decode((await keepAlive).value)).toBe(': keep-alive\n\n');
    await reader.cancel();
  });
});
