/**
 * The informer's list-then-watch logic against a scripted server (an injected `fetch` whose
 * answers each test writes by hand) and a manual clock: resume points, repeats after a cut,
 * relists after 410, never going backwards, backoff. The same informer against real tiers is
 * test/client.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { KvObject } from '../core/types.ts';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { EdgewatchClient } from './client.ts';
import type { Informer } from './informer.ts';

const PREFIX = '/registry/';

function obj(
  key: string,
  modRevision: number,
  value = `v${modRevision}`,
  createRevision = modRevision,
): KvObject {
  return { key: `${PREFIX}${key}`, value, createRevision, modRevision, version: 1 };
}

const line = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;
const added = (o: KvObject) => line(o.createRevision === o.modRevision ? 'ADDED' : 'MODIFIED', o);
const deleted = (o: KvObject) => line('DELETED', o);
const bookmark = (rv: number) => line('BOOKMARK', { resourceVersion: String(rv) });
const expired = () =>
  line('ERROR', { kind: 'Status', status: 'Failure', code: 410, reason: 'Expired', message: 'too old' });

/** A watch the test feeds: `send` a chunk, `cut` the connection, `end` it cleanly. */
interface ScriptedWatch {
  readonly url: URL;
  send(text: string): void;
  cut(): void;
  end(): void;
}

/** The server: answers lists from a queue, hands each watch to the test. */
class Server {
  readonly requests: URL[] = [];
  readonly lists: (() => Response)[] = [];
  /** Answers for the next watches instead of a stream (a Status the tier refused them with). */
  readonly watchRefusals: (() => Response)[] = [];
  readonly watches: ScriptedWatch[] = [];
  #watchWaiters: ((w: ScriptedWatch) => void)[] = [];

  readonly fetch: typeof fetch = async (input) => {
    const url = new URL(String(input));
    this.requests.push(url);
    if (url.searchParams.get('watch') === 'true') {
      const refusal = this.watchRefusals.shift();
      if (refusal) return refusal();
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({ start: (c) => (controller = c) });
      const encoder = new TextEncoder();
      const watch: ScriptedWatch = {
        url,
        send: (text) => controller.enqueue(encoder.encode(text)),
        cut: () => controller.error(new TypeError('terminated')),
        end: () => controller.close(),
      };
      this.watches.push(watch);
      for (const waiter of this.#watchWaiters.splice(0)) waiter(watch);
      return new Response(body, { status: 200, headers: { 'Content-Type': 'application/x-ndjson' } });
    }
    const next = this.lists.shift();
    if (!next) throw new Error(`unscripted list ${url}`);
    return next();
  };

  /** The next watch the informer opens (or the one it opened and nobody took yet). */
  async nextWatch(taken: number): Promise<ScriptedWatch> {
    const open = this.watches[taken];
    if (open) return open;
    return new Promise((resolve) => this.#watchWaiters.push(resolve));
  }
}

function listAnswer(revision: number, items: KvObject[]): () => Response {
  return () =>
    Response.json(
      { kind: 'List', metadata: { resourceVersion: String(revision) }, items },
      { headers: { 'X-Resource-Version': String(revision), 'X-Served-By': 'relay' } },
    );
}

function statusAnswer(code: number, reason: string, retryAfterSeconds?: number): () => Response {
  return () =>
    Response.json(
      {
        kind: 'Status',
        status: 'Failure',
        code,
        reason,
        message: reason,
        ...(retryAfterSeconds !== undefined ? { details: { retryAfterSeconds } } : {}),
      },
      { status: code },
    );
}

/** A watch refused because no tier reached its revision within the wait (API.md: 504). */
const tooLargeAnswer = (): Response =>
  Response.json(
    {
      kind: 'Status',
      status: 'Failure',
      code: 504,
      reason: 'Timeout',
      message: 'Too large resource version',
      details: { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }] },
    },
    { status: 504 },
  );

/** Waits for the informer to back off, then lets the delay pass; returns the delay. */
async function backOff(clock: ManualClock): Promise<number> {
  await until(() => clock.pending.length > 0, 'backing off');
  const delay = clock.pending[0] ?? 0;
  await clock.advance(delay);
  return delay;
}

/** Lets the informer's promises run until `ready()` holds (bounded; no timers involved). */
async function until(ready: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (ready()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`never ${what}`);
}

interface Recorded {
  log: string[];
  syncs: number[];
}

function record(informer: Informer): Recorded {
  const r: Recorded = { log: [], syncs: [] };
  informer.on('add', (o) => r.log.push(`add ${o.key} ${o.modRevision}`));
  informer.on('update', (o, p) => r.log.push(`update ${o.key} ${p.modRevision}->${o.modRevision}`));
  informer.on('delete', (o) => r.log.push(`delete ${o.key} ${o.modRevision}`));
  informer.on('sync', (rv) => r.syncs.push(rv));
  return r;
}

function setup() {
  const server = new Server();
  const clock = new ManualClock();
  const client = new EdgewatchClient({ url: 'http://tier.test', fetch: server.fetch });
  const informer = client.informer(PREFIX, { clock, random: () => 0.5 });
  return { server, clock, informer, recorded: record(informer) };
}

const keys = (informer: Informer) => informer.list().map((o) => `${o.key}@${o.modRevision}`);

describe('Informer', () => {
  it('lists, then watches from the list revision, applying each change once; keep-alive lines are skipped', async () => {
    const { server, informer, recorded } = setup();
    server.lists.push(listAnswer(10, [obj('a', 4), obj('b', 7)]));
    informer.start();
    const watch = await server.nextWatch(0);
    expect(informer.hasSynced()).toBe(true);
    expect(server.requests[0]?.searchParams.get('resourceVersion')).toBe('0');
    expect(watch.url.searchParams.get('resourceVersion')).toBe('10');
    expect(watch.url.searchParams.get('allowWatchBookmarks')).toBe('true');
    watch.send(`\n${added(obj('a', 11, 'new', 4))}\n`);
    watch.send(`${deleted(obj('b', 12, 'v7', 7))}${added(obj('c', 13))}`);
    await informer.waitForRevision(13);
    expect(keys(informer)).toEqual(['/registry/a@11', '/registry/c@13']);
    expect(informer.get('/registry/a/')).toBeUndefined();
    expect(informer.get('/registry/a')?.value).toBe('new');
    expect(recorded.log).toEqual([
      'add /registry/a 4',
      'add /registry/b 7',
      'update /registry/a 4->11',
      'delete /registry/b 12',
      'add /registry/c 13',
    ]);
    expect(recorded.syncs).toEqual([10, 11, 12]); // 13 is not proven whole yet
    watch.send(bookmark(20));
    await until(() => recorded.syncs.includes(20), 'synced at the bookmark');
    expect(recorded.syncs).toEqual([10, 11, 12, 13, 20]);
    expect(informer.revision).toBe(20);
    await informer.stop();
  });

  it('resumes after the last complete revision when a stream is cut mid-revision, and skips the repeats', async () => {
    const { server, clock, informer, recorded } = setup();
    server.lists.push(listAnswer(10, []));
    informer.start();
    const first = await server.nextWatch(0);
    // Revision 12 is a transaction of b and c; the cut comes after b.
    first.send(added(obj('a', 11)) + added(obj('b', 12)));
    await until(() => informer.revision === 12, 'applied b');
    first.cut();
    await backOff(clock);
    const second = await server.nextWatch(1);
    expect(second.url.searchParams.get('resourceVersion')).toBe('11');
    second.send(added(obj('b', 12)) + added(obj('c', 12)) + added(obj('d', 13)));
    await informer.waitForRevision(13);
    expect(recorded.log).toEqual([
      'add /registry/a 11',
      'add /registry/b 12',
      'add /registry/c 12',
      'add /registry/d 13',
    ]);
    expect(recorded.syncs).toEqual([10, 11, 12]);
    expect(informer.stats.changes).toBe(4);
    expect(informer.stats.lists).toBe(1);
    await informer.stop();
  });

  it('resumes from the last bookmark after a clean end, at once', async () => {
    const { server, clock, informer } = setup();
    server.lists.push(listAnswer(10, []));
    informer.start();
    const first = await server.nextWatch(0);
    first.send(added(obj('a', 11)) + bookmark(30));
    first.end();
    const second = await server.nextWatch(1);
    expect(second.url.searchParams.get('resourceVersion')).toBe('30');
    expect(clock.pending).toEqual([]);
    await informer.stop();
  });

  it('relists on 410, never goes backwards: an older relist is retried as not-older-than what it holds', async () => {
    const { server, clock, informer, recorded } = setup();
    server.lists.push(listAnswer(10, [obj('a', 4), obj('b', 7)]));
    informer.start();
    const first = await server.nextWatch(0);
    first.send(added(obj('c', 13)) + expired());
    // rv=0 relist answered by a tier that is behind: thrown away.
    server.lists.push(listAnswer(5, [obj('a', 4)]));
    server.lists.push(listAnswer(15, [obj('a', 14, 'x', 4), obj('c', 13), obj('d', 15)]));
    await backOff(clock);
    await backOff(clock);
    const second = await server.nextWatch(1);
    expect(second.url.searchParams.get('resourceVersion')).toBe('15');
    const lists = server.requests.filter((u) => u.searchParams.get('watch') !== 'true');
    expect(lists.map((u) => u.searchParams.get('resourceVersion'))).toEqual(['0', '0', '13']);
    expect(lists[2]?.searchParams.get('resourceVersionMatch')).toBeNull();
    expect(keys(informer)).toEqual(['/registry/a@14', '/registry/c@13', '/registry/d@15']);
    expect(recorded.log.slice(3)).toEqual([
      'delete /registry/b 7',
      'update /registry/a 4->14',
      'add /registry/d 15',
    ]);
    expect(recorded.syncs).toEqual([10, 15]);
    expect(informer.stats.expired).toBe(1);
    await informer.stop();
  });

  it('after a 410 saying the history changed, relists the most recent state even at an older revision', async () => {
    const { server, clock, informer, recorded } = setup();
    server.lists.push(listAnswer(40, [obj('a', 30), obj('b', 35)]));
    informer.start();
    const first = await server.nextWatch(0);
    first.send(
      line('ERROR', {
        kind: 'Status',
        status: 'Failure',
        code: 410,
        reason: 'Expired',
        message: 'etcd holds another history',
        details: { causes: [{ reason: 'HistoryChanged', message: 'restored' }] },
      }),
    );
    server.lists.push(listAnswer(12, [obj('a', 9), obj('c', 11)]));
    await backOff(clock);
    const second = await server.nextWatch(1);
    expect(second.url.searchParams.get('resourceVersion')).toBe('12');
    const lists = server.requests.filter((u) => u.searchParams.get('watch') !== 'true');
    expect(lists[1]?.searchParams.has('resourceVersion')).toBe(false); // most recent
    expect(keys(informer)).toEqual(['/registry/a@9', '/registry/c@11']);
    expect(recorded.log.slice(2)).toEqual([
      'delete /registry/b 35',
      'update /registry/a 30->9',
      'add /registry/c 11',
    ]);
    expect(informer.stats.historyChanges).toBe(1);
    await informer.stop();
  });

  it('after a watch finds no tier at its revision, relists the most recent state and takes an older answer as a new history', async () => {
    const { server, clock, informer, recorded } = setup();
    server.lists.push(listAnswer(807, [obj('a', 800), obj('b', 805)]));
    informer.start();
    const first = await server.nextWatch(0);
    first.cut(); // away while etcd is wiped: no tier is left to end its watch with a 410
    server.watchRefusals.push(tooLargeAnswer);
    server.lists.push(listAnswer(67, [obj('a', 60), obj('c', 66)]));
    await backOff(clock); // after the cut
    await backOff(clock); // after the 504
    const next = await server.nextWatch(1);
    expect(next.url.searchParams.get('resourceVersion')).toBe('67');
    const lists = server.requests.filter((u) => u.searchParams.get('watch') !== 'true');
    expect(lists[1]?.searchParams.has('resourceVersion')).toBe(false); // most recent, not "any"
    expect(keys(informer)).toEqual(['/registry/a@60', '/registry/c@66']);
    expect(recorded.syncs).toEqual([807, 67]);
    expect(informer.stats.tooLarge).toBe(1);
    expect(informer.stats.historyChanges).toBe(1);
    await informer.stop();
  });

  it('after a watch finds no tier at its revision, keeps a most-recent answer at or above it as the same history', async () => {
    const { server, clock, informer, recorded } = setup();
    server.lists.push(listAnswer(40, [obj('a', 30)]));
    informer.start();
    (await server.nextWatch(0)).cut();
    server.watchRefusals.push(tooLargeAnswer);
    server.lists.push(listAnswer(45, [obj('a', 44)]));
    await backOff(clock);
    await backOff(clock);
    expect((await server.nextWatch(1)).url.searchParams.get('resourceVersion')).toBe('45');
    expect(recorded.syncs).toEqual([40, 45]);
    expect(informer.stats.historyChanges).toBe(0);
    await informer.stop();
  });

  it('backs off exponentially with jitter between failures, at least as long as Retry-After asks', async () => {
    const { server, clock, informer } = setup();
    const errors: unknown[] = [];
    informer.on('error', (e) => errors.push(e));
    server.lists.push(statusAnswer(503, 'ServiceUnavailable'));
    server.lists.push(statusAnswer(503, 'ServiceUnavailable'));
    server.lists.push(statusAnswer(429, 'TooManyRequests', 3));
    server.lists.push(listAnswer(10, []));
    informer.start();
    const delays = [await backOff(clock), await backOff(clock), await backOff(clock)];
    await informer.waitForSync();
    // random() = 0.5: half of each base is fixed, a quarter more is the jitter.
    expect(delays).toEqual([75, 150, 3000]);
    expect(errors.map((e) => (e as { code?: number }).code)).toEqual([503, 503, 429]);
    await informer.stop();
  });

  it('rejects pending waits when it stops', async () => {
    const { server, informer } = setup();
    server.lists.push(listAnswer(10, []));
    informer.start();
    await server.nextWatch(0);
    const waiting = informer.waitForRevision(50);
    await informer.stop();
    await expect(waiting).rejects.toThrow(/stopped/);
    await expect(informer.waitForRevision(60)).rejects.toThrow(/stopped/);
    await expect(informer.waitForRevision(10)).resolves.toBeUndefined();
  });

  it('keeps going when a handler throws, and reports the error', async () => {
    const { server, informer } = setup();
    const errors: unknown[] = [];
    informer.on('add', () => {
      throw new Error('handler bug');
    });
    informer.on('error', (e) => errors.push(e));
    server.lists.push(listAnswer(10, [obj('a', 4)]));
    informer.start();
    const watch = await server.nextWatch(0);
    watch.send(added(obj('b', 11)));
    await informer.waitForRevision(11);
    expect(informer.size).toBe(2);
    expect(errors.map(String)).toEqual(['Error: handler bug', 'Error: handler bug']);
    await informer.stop();
  });
});
