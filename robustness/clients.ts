/**
 * The read side of the workload: clients that read through a pluggable list of read targets
 * (the relay today, the edge once it serves) with every resourceVersion mode, and watchers that
 * keep one logical watch going, resuming after every disconnect by the checker's own
 * `resumePoint` rule and relisting after a 410. Everything they send and get is recorded for
 * robustness/checker.ts; nothing is judged here.
 */
import { ndjsonChunks } from '../client/ndjson.ts';
import { resumePoint } from './checker.ts';
import type {
  ModelObject,
  ReadMode,
  ReadRecord,
  SessionEnd,
  WatchSession,
  WatchStart,
  WireEvent,
} from './model.ts';
import type { Prng } from './prng.ts';
import { type Observed, sleep } from './writers.ts';

/**
 * Somewhere the read API is served. `windowStart` (when the target can tell) is its history
 * start, sampled right after a 410 arrives: windows only move forward, so this is at least the
 * start the tier had when it answered.
 */
export interface ReadTarget {
  readonly name: string;
  readonly baseUrl: string;
  /** `servedBy`: the watch response's `X-Served-By` (an edge forwards old watches to the relay). */
  windowStart?(exposedPrefix: string, servedBy: string | null): Promise<number | undefined>;
}

export interface ClientContext {
  readonly targets: readonly ReadTarget[];
  /** The exposed prefix the workload lives under (for `windowStart`). */
  readonly exposed: string;
  readonly keys: readonly string[];
  readonly listPrefixes: readonly string[];
  readonly observed: Observed;
  readonly reads: ReadRecord[];
  readonly sessions: WatchSession[];
  nextId(): number;
  stopped(): boolean;
}

const REQUEST_TIMEOUT_MS = 10_000;

function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function url(
  target: ReadTarget,
  kind: 'kv' | 'list',
  key: string,
  query: Record<string, string | number | undefined>,
): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
  const q = params.toString();
  return `${target.baseUrl}/v1/${kind}${encodeKeyPath(key)}${q ? `?${q}` : ''}`;
}

interface Fetched {
  status: number;
  served?: number;
  servedBy?: string;
  body?: Record<string, unknown>;
  reason?: string;
}

async function getJson(u: string): Promise<Fetched> {
  try {
    const res = await fetch(u, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const text = await res.text();
    const rv = res.headers.get('x-resource-version');
    let body: Record<string, unknown> | undefined;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = undefined;
    }
    return {
      status: res.status,
      ...(rv !== null && /^\d+$/.test(rv) ? { served: Number(rv) } : {}),
      ...(res.headers.get('x-served-by') ? { servedBy: res.headers.get('x-served-by') as string } : {}),
      ...(body ? { body } : {}),
      ...(res.status >= 400 ? { reason: String(body?.reason ?? text.slice(0, 200)) } : {}),
    };
  } catch (error) {
    return { status: 0, reason: String(error) };
  }
}

/** One reader client: a loop of gets and lists until the run stops. */
export async function runReader(ctx: ClientContext, name: string, rng: Prng): Promise<void> {
  let target = rng.pick(ctx.targets);
  let lastServed = 0;
  for (let n = 0; !ctx.stopped() && n < 1_000_000; n++) {
    if (rng.chance(0.05)) target = rng.pick(ctx.targets);
    const floor = ctx.observed.revision;
    const record = (
      r: Omit<ReadRecord, 'id' | 'client' | 'target' | 'floor' | 'sentAt' | 'receivedAt' | 'status'>,
      f: Fetched,
      sentAt: number,
    ) => {
      const full: ReadRecord = {
        id: ctx.nextId(),
        client: name,
        target: target.name,
        floor,
        sentAt,
        receivedAt: Date.now(),
        status: f.status,
        ...r,
        ...pick(f),
      };
      ctx.reads.push(full);
      if (f.served !== undefined && (f.status === 200 || f.status === 404)) {
        ctx.observed.observe(f.served, sentAt);
        if (r.mode !== 'exact' && r.mode !== 'continue') lastServed = Math.max(lastServed, f.served);
      }
      return full;
    };
    const sentAt = Date.now();
    if (rng.chance(0.4)) {
      const key = rng.pick(ctx.keys);
      const mode = rng.pick<ReadMode>(['mostRecent', 'any', 'notOlderThan']);
      const rv =
        mode === 'any'
          ? 0
          : mode === 'notOlderThan'
            ? Math.max(1, rng.chance(0.5) ? lastServed : floor - rng.int(0, 20))
            : undefined;
      const f = await getJson(url(target, 'kv', key, { resourceVersion: rv }));
      const object = f.status === 200 ? (f.body as unknown as ModelObject) : undefined;
      record(
        { verb: 'get', key, mode, ...(mode === 'notOlderThan' ? { rv } : {}), ...(object ? { object } : {}) },
        f,
        sentAt,
      );
    } else {
      const prefix = rng.pick(ctx.listPrefixes);
      const roll = rng.next();
      let mode: ReadMode;
      let query: Record<string, string | number | undefined>;
      let rv: number | undefined;
      let limit: number | undefined;
      if (roll < 0.2) [mode, query] = ['mostRecent', {}];
      else if (roll < 0.35) [mode, query] = ['any', { resourceVersion: 0 }];
      else if (roll < 0.55) {
        mode = 'notOlderThan';
        rv = Math.max(1, lastServed || floor);
        query = { resourceVersion: rv, resourceVersionMatch: rng.chance(0.5) ? 'NotOlderThan' : undefined };
      } else if (roll < 0.75) {
        mode = 'exact';
        rv = Math.max(2, floor - (rng.chance(0.15) ? rng.int(100, 2000) : rng.int(0, 40)));
        query = { resourceVersion: rv, resourceVersionMatch: 'Exact' };
      } else {
        // A paginated list: first page most recent (or exact n), then every continue page.
        limit = rng.int(2, 7);
        if (rng.chance(0.3)) {
          mode = 'exact';
          rv = Math.max(2, floor - rng.int(0, 40));
          query = { limit, resourceVersion: rv };
        } else [mode, query] = ['mostRecent', { limit }];
      }
      const f = await getJson(url(target, 'list', prefix, query));
      const first = record(
        {
          verb: 'list',
          key: prefix,
          mode,
          ...(rv !== undefined ? { rv } : {}),
          ...(limit !== undefined ? { limit } : {}),
          ...listPart(f),
        },
        f,
        sentAt,
      );
      if (limit !== undefined) await followPages(ctx, name, target, prefix, limit, first, f);
    }
    await sleep(rng.int(5, 25));
  }
}

function pick(f: Fetched): Partial<ReadRecord> {
  return {
    ...(f.served !== undefined ? { served: f.served } : {}),
    ...(f.servedBy !== undefined ? { servedBy: f.servedBy } : {}),
    ...(f.reason !== undefined ? { reason: f.reason } : {}),
  };
}

function listPart(f: Fetched): Partial<ReadRecord> {
  if (f.status !== 200 || !f.body) return {};
  const metadata = (f.body.metadata ?? {}) as { continue?: string; remainingItemCount?: number };
  return {
    items: (f.body.items ?? []) as ModelObject[],
    continued: typeof metadata.continue === 'string' && metadata.continue !== '',
    ...(metadata.remainingItemCount !== undefined ? { remaining: metadata.remainingItemCount } : {}),
  };
}

async function followPages(
  ctx: ClientContext,
  name: string,
  target: ReadTarget,
  prefix: string,
  limit: number,
  first: ReadRecord,
  f: Fetched,
): Promise<void> {
  let page = f;
  let previous = first;
  for (let i = 0; i < 50 && !ctx.stopped(); i++) {
    const token = (page.body?.metadata as { continue?: string } | undefined)?.continue;
    const last = previous.items?.[previous.items.length - 1];
    if (page.status !== 200 || !token || !last || first.served === undefined) return;
    const floor = ctx.observed.revision;
    const sentAt = Date.now();
    page = await getJson(url(target, 'list', prefix, { limit, continue: token }));
    const r: ReadRecord = {
      id: ctx.nextId(),
      client: name,
      target: target.name,
      verb: 'list',
      key: prefix,
      mode: 'continue',
      rv: first.served,
      limit,
      after: last.key,
      floor,
      sentAt,
      receivedAt: Date.now(),
      status: page.status,
      ...pick(page),
      ...listPart(page),
    };
    ctx.reads.push(r);
    previous = r;
  }
}

/** One watcher: a logical watch of `prefix`, resumed or relisted after every session. */
export class Watcher {
  readonly name: string;
  /** The client stops reading until this time (the slow-watcher fault). */
  stallUntil = 0;
  events = 0;
  readonly #ctx: ClientContext;
  readonly #rng: Prng;
  readonly #prefix: string;
  #abort: AbortController | undefined;

  constructor(ctx: ClientContext, name: string, prefix: string, rng: Prng) {
    this.#ctx = ctx;
    this.name = name;
    this.#prefix = prefix;
    this.#rng = rng;
  }

  /** Ends the open session at once (the run is over). */
  interrupt(): void {
    this.#abort?.abort();
  }

  async run(): Promise<void> {
    const rng = this.#rng;
    let target = rng.pick(this.#ctx.targets);
    let resume: number | undefined;
    for (let n = 0; !this.#ctx.stopped() && n < 100_000; n++) {
      const targets = this.#ctx.targets;
      if (rng.chance(0.3)) target = rng.pick(targets);
      // Every fourth session moves on to the next tier anyway, so each run resumes watches at
      // the other tier in both directions, whatever the random picks were.
      else if (n % 4 === 3) target = targets[(targets.indexOf(target) + 1) % targets.length] ?? target;
      let start: WatchStart;
      const query: Record<string, string | number | undefined> = { watch: 'true' };
      if (resume !== undefined) {
        start = { kind: 'after', rv: resume };
        query.resourceVersion = resume;
        if (rng.chance(0.7)) query.allowWatchBookmarks = 'true';
      } else {
        const mode = rng.pick(['mostRecent', 'any', 'notOlderThan'] as const);
        if (mode === 'notOlderThan') {
          const rv = rng.chance(0.5) ? this.#ctx.observed.revision : undefined;
          start = {
            kind: 'initial',
            mode: rv === undefined ? 'mostRecent' : 'notOlderThan',
            ...(rv !== undefined ? { rv } : {}),
            sendInitialEvents: true,
          };
          Object.assign(query, {
            sendInitialEvents: 'true',
            resourceVersionMatch: 'NotOlderThan',
            allowWatchBookmarks: 'true',
            resourceVersion: rv,
          });
        } else {
          start = { kind: 'initial', mode, sendInitialEvents: false };
          if (mode === 'any') query.resourceVersion = 0;
          if (rng.chance(0.5)) query.allowWatchBookmarks = 'true';
        }
      }
      if (rng.chance(0.35)) query.timeoutSeconds = rng.int(2, 8);
      const lifetime = rng.chance(0.35) ? rng.int(1000, 6000) : undefined;
      const session = await this.#session(target, start, query, lifetime);
      this.#ctx.sessions.push(session);
      if (session.end === 'refused') await sleep(rng.int(50, 250));
      else resume = resumePoint(session);
    }
  }

  async #session(
    target: ReadTarget,
    start: WatchStart,
    query: Record<string, string | number | undefined>,
    lifetimeMs: number | undefined,
  ): Promise<WatchSession> {
    const ctx = this.#ctx;
    const id = ctx.nextId();
    const floor = ctx.observed.revision;
    const sentAt = Date.now();
    const abort = new AbortController();
    this.#abort = abort;
    const events: WireEvent[] = [];
    let status = 0;
    let headerRv: number | undefined;
    let end: SessionEnd = 'refused';
    let slow = false;
    let windowStart: number | undefined;
    let clientClosed = false;
    const timer =
      lifetimeMs !== undefined
        ? setTimeout(() => {
            clientClosed = true;
            abort.abort();
          }, lifetimeMs)
        : undefined;
    try {
      const res = await fetch(url(target, 'list', this.#prefix, query), { signal: abort.signal });
      status = res.status;
      const servedBy = res.headers.get('x-served-by');
      const rv = res.headers.get('x-resource-version');
      if (rv !== null && /^\d+$/.test(rv)) headerRv = Number(rv);
      if (res.status !== 200 || !res.body) {
        await res.text().catch(() => '');
      } else {
        end = 'broken';
        // The client's NDJSON reader, raw: every event as it came off the wire, ERRORs included.
        // It ends when the body ends (clean) or the session is aborted, and throws when it breaks.
        for await (const chunk of ndjsonChunks(res.body, abort.signal, `watch ${this.name}`)) {
          const wait = this.stallUntil - Date.now();
          if (wait > 0) {
            slow = true;
            await sleep(Math.min(wait, 10_000));
          }
          for (const value of chunk) {
            const event = value as WireEvent;
            events.push(event);
            if (event.type === 'ERROR') windowStart = await target.windowStart?.(ctx.exposed, servedBy);
            else if (event.type === 'BOOKMARK')
              ctx.observed.observe(Number(event.object.resourceVersion), sentAt);
            else {
              this.events++;
              ctx.observed.observe(Number(event.object.modRevision), sentAt);
            }
          }
        }
        // The reader returns quietly when the session was aborted; only a server's end is clean.
        end = !abort.signal.aborted
          ? 'clean'
          : clientClosed
            ? 'clientClosed'
            : ctx.stopped()
              ? 'running'
              : 'broken';
      }
    } catch {
      if (status !== 0) end = clientClosed ? 'clientClosed' : ctx.stopped() ? 'running' : 'broken';
    } finally {
      if (timer) clearTimeout(timer);
      abort.abort();
    }
    return {
      id,
      watcher: this.name,
      target: target.name,
      prefix: this.#prefix,
      start,
      floor,
      sentAt,
      endedAt: Date.now(),
      status,
      ...(headerRv !== undefined ? { headerRv } : {}),
      events,
      end: status === 200 ? end : 'refused',
      slow,
      ...(windowStart !== undefined ? { windowStart } : {}),
    };
  }
}
