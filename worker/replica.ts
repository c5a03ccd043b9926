/**
 * An edge replica: one Durable Object per (location, exposed prefix[, shard]).
 *
 * It holds a WatchCache (core/) fed by the relay's replication stream (RelayLink) and serves the
 * read API from it with the very code the relay runs (core/read-api.ts); what it cannot serve it
 * forwards to the relay. The class only handles lifecycle and routing (STYLE.md §8).
 *
 *     cold ──first request──► serving ──no reader or watcher for idleMs──► serving, link stopped
 *       ▲   (#start inside        ▲                                             │    │
 *       │    blockConcurrency-    └──────────── next read: link restarted ──────┘    │
 *       │    While: no request                                                       │
 *       │    sees it half done)                                                      │
 *       └──────── evicted (no outbound socket pins it): the next request warm-starts ┘
 *
 * `Status` has no "starting": while #start runs no other request runs, so none can see it.
 *
 * No time travel: the cache only moves forward. A snapshot older than what the replica holds is
 * ignored, and batches at or below its revision are skipped, so a relay that restarted behind
 * the replica cannot move it backwards; the replica keeps serving until the relay passes it.
 */
import { DurableObject } from 'cloudflare:workers';
import { Authorizer, type ScopeTable } from '../core/auth.ts';
import { ServiceUnavailable } from '../core/errors.ts';
import { errorResponse } from '../core/format.ts';
import { isK8sPath, serveK8s } from '../core/k8s/serve.ts';
import { recordResponse, startTimer } from '../core/metrics.ts';
import { type ReadTier, serveRead } from '../core/read-api.ts';
import type { Readiness } from '../core/readiness.ts';
import { type Clock, type KvObject, type Revision, type RevisionBatch, systemClock } from '../core/types.ts';
import { WatchCache } from '../core/watch-cache.ts';
import { edgeTier } from './edge-tier.ts';
import { type Bindings, type EdgeSettings, parseEnv } from './env.ts';
import { k8sStreamed } from './k8s.ts';
import { workerLogger } from './log.ts';
import {
  analyticsPoint,
  collectReplicaState,
  MemoryMetrics,
  PROMETHEUS_CONTENT_TYPE,
  ReplicaCacheMetrics,
  replicaReadiness,
  selfCheckWord,
} from './metrics.ts';
import { RateLimiter } from './rate-limit.ts';
import { RelayLink } from './relay-link.ts';
import { ReplicaHistory } from './replica-history.ts';
import { ReplicaStorage } from './storage.ts';

/** Headers the Worker sets when it routes a request here. */
export const REPLICA_HEADER = 'X-Edgewatch-Replica';
export const PREFIX_HEADER = 'X-Edgewatch-Prefix';

/** The edge keeps a shorter window than the relay: a Durable Object has 128 MB. */
/** How often a replica writes its metrics to the optional Analytics Engine dataset (on a heartbeat). */
const ANALYTICS_INTERVAL_MS = 60_000;

const EDGE_HISTORY = { maxEvents: 20_000, maxAgeMs: 75_000, maxBytes: 16 * 1024 * 1024 };

type Status = { kind: 'cold' } | { kind: 'serving'; name: string; prefix: string };

export class Replica extends DurableObject<Bindings> {
  #status: Status = { kind: 'cold' };
  /** Validated once; the Worker has refused every request already if they are bad. */
  readonly #settings: EdgeSettings = parseEnv(this.env);
  readonly #clock: Clock = systemClock;
  readonly #metrics = new MemoryMetrics();
  readonly #cacheMetrics = new ReplicaCacheMetrics(this.#metrics);
  readonly #cache = new WatchCache({ clock: systemClock, ...EDGE_HISTORY, metrics: this.#cacheMetrics });
  #readiness: Readiness | undefined;
  /** With an EDGE_METRICS binding: writes a data point, at most once per ANALYTICS_INTERVAL_MS. */
  #writeAnalytics: () => void = () => {};
  #analyticsAt = Number.NEGATIVE_INFINITY;
  #storage: ReplicaStorage | undefined;
  #link: RelayLink | undefined;
  /** History identity, digest comparisons and the self-check (worker/replica-history.ts). */
  #history: ReplicaHistory | undefined;
  #lastActivityAt = 0;
  #watchers = 0;
  #idleTimer: (() => void) | undefined;
  /** Client tokens and scopes from the relay; undefined until the first table arrives. */
  #authorizer: Authorizer | undefined;
  #readTier: ReadTier | undefined;
  /** Requests waiting for the first scope table; each removes itself when its wait times out. */
  readonly #scopeWaiters = new Set<(authorizer: Authorizer) => void>();
  /** The snapshot being received, unless it is ignored (older than the state held). */
  #snapshot: { revision: Revision; objects: KvObject[] } | undefined;

  override async fetch(request: Request): Promise<Response> {
    const name = request.headers.get(REPLICA_HEADER);
    const prefix = request.headers.get(PREFIX_HEADER);
    if (name === null || prefix === null) {
      return errorResponse(new ServiceUnavailable('replica reached without routing headers'), 'edge');
    }
    const cold = this.#status.kind === 'cold';
    if (cold) await this.ctx.blockConcurrencyWhile(async () => this.#start(name, prefix));
    // Looking at the status, metrics or readiness is not reading: it must not keep an idle
    // replica's stream open (one it woke up closes after the idle time).
    const internal = this.#internal(new URL(request.url), name);
    if (internal !== undefined) {
      if (cold) this.#touch();
      return internal;
    }
    const elapsed = startTimer(this.#clock);
    const response = await this.#serveClient(request);
    recordResponse(this.#metrics, request, response, 'edge', elapsed());
    return response;
  }

  #internal(url: URL, name: string): Response | undefined {
    switch (url.pathname) {
      case '/_replica/status':
        return Response.json(this.status());
      case '/_replica/metrics': {
        const location = name.split('|')[0] ?? '';
        const text = this.#metrics.text({ tier: 'edge', location });
        return new Response(text, { headers: { 'Content-Type': PROMETHEUS_CONTENT_TYPE } });
      }
      case '/_replica/readyz':
        return this.#readiness?.response(url.searchParams.has('verbose'));
      case '/_replica/corrupt':
        return this.#settings.testHooks ? this.#corruptForTest(url) : undefined;
      default:
        return undefined;
    }
  }

  async #serveClient(request: Request): Promise<Response> {
    this.#touch();
    const clean = stripInternalHeaders(request);
    // The relay sends the client tokens right after the stream opens; until they are here the
    // replica cannot authorize anyone, and it must not hand the decision to a relay that may run
    // in local-development mode, so it waits briefly and then refuses.
    const authorizer = this.#authorizer ?? (await this.#scopesArrived(this.#settings.waitMs));
    if (authorizer === undefined) {
      return errorResponse(
        new ServiceUnavailable('the edge has not received its client tokens from the relay'),
        'edge',
      );
    }
    // A state loaded from SQLite is served only once the relay vouched for it (worker/replica-history.ts).
    await this.#history?.whenVerified(this.#settings.waitMs);
    if (this.#readTier && isK8sPath(new URL(clean.url).pathname)) {
      return k8sStreamed(
        await serveK8s(this.#readTier, clean, { explicit: this.#settings.k8sResources }),
        clean,
      );
    }
    return this.#readTier
      ? serveRead(this.#readTier, clean)
      : errorResponse(new ServiceUnavailable('replica not started'), 'edge');
  }

  /** What the replica holds and how its link is doing (tests and the future dashboard). */
  status() {
    return {
      status: this.#status.kind,
      revision: this.#cache.revision,
      historyStart: this.#cache.history.startRevision,
      ready: this.#cache.ready,
      objects: this.#cache.size,
      watchers: this.#watchers,
      waitingForTokens: this.#scopeWaiters.size,
      connected: this.#link?.connected ?? false,
      linkRunning: this.#link?.running ?? false,
      received: { ...(this.#link?.received ?? {}) },
      history: this.#history?.status(),
    };
  }

  /**
   * Test hook (EDGEWATCH_TEST_HOOKS=1 only): changes one stored object's value in SQLite and in
   * memory without an event or a digest update, as a corrupted disk or a bug would, so that the
   * tests can watch the self-check find and repair it.
   */
  #corruptForTest(url: URL): Response {
    const key = url.searchParams.get('key') ?? '';
    const value = url.searchParams.get('value') ?? 'corrupt';
    const current = this.#cache.snapshot().get(key);
    if (current === undefined || this.#storage === undefined)
      return new Response('no such key', { status: 404 });
    const { valueBase64: _, ...rest } = current;
    const planted: KvObject = Object.freeze({ ...rest, value });
    this.#storage.corruptForTest(planted);
    this.#cache.corruptForTest(planted);
    return Response.json(planted);
  }

  /** Runs inside blockConcurrencyWhile: loads the stored state, then opens the relay stream. */
  #start(name: string, prefix: string): void {
    if (this.#status.kind !== 'cold') return;
    const storage = new ReplicaStorage(this.ctx.storage, prefix);
    this.#storage = storage;
    const stored = storage.load();
    // Loaded but unverified: reads are forwarded until the relay vouches for this state.
    if (stored) this.#cache.replace(stored.revision, stored.objects);
    const scopes = this.ctx.storage.kv.get<ScopeTable>(SCOPES_KEY);
    if (scopes !== undefined) this.#setScopes(scopes);
    this.#status = { kind: 'serving', name, prefix };
    const log = workerLogger('replica', { replica: name });
    const history = new ReplicaHistory({
      cache: this.#cache,
      clock: this.#clock,
      clearStorage: () => storage.clear(),
      reconnect: (why) => this.#link?.reconnect(why),
      log: (msg, fields) => log.info(msg, fields),
      intervalMs: this.#settings.selfCheckMs,
    });
    this.#history = history;
    this.#link = new RelayLink({
      relayUrl: this.#settings.relayUrl,
      secret: this.#settings.replicationSecret,
      prefix,
      replica: name,
      clock: this.#clock,
      fromRevision: () => (this.#cache.ready ? this.#cache.revision : undefined),
      digest: () => history.helloDigest(),
      handlers: {
        snapshotStart: (revision, newHistory) => {
          history.onSnapshotStart(newHistory === true);
          this.#onSnapshotStart(storage, revision);
        },
        snapshotChunk: (objects) => this.#onSnapshotChunk(storage, objects),
        snapshotEnd: (revision, digest) => {
          if (this.#onSnapshotEnd(storage, revision)) history.onSnapshot(revision, digest);
        },
        batches: (batches, digest) => {
          this.#onBatches(batches);
          const last = batches.at(-1);
          if (last) history.onMessage(last.revision, digest);
        },
        progress: (revision, digest) => {
          this.#onProgress(revision);
          history.onMessage(revision, digest);
        },
        scopes: (table) => {
          this.ctx.storage.kv.put(SCOPES_KEY, table);
          this.#setScopes(table);
        },
        log: (msg, fields) => log.info(msg, fields),
      },
      report: () => {
        this.#writeAnalytics();
        return {
          revision: this.#cache.revision,
          watchers: this.#watchers,
          selfCheck: selfCheckWord(history),
        };
      },
      heartbeatMs: this.#settings.heartbeatMs,
    });
    this.#readTier = this.#makeTier(name, this.#link);
    this.#cacheMetrics.prefix = prefix;
    const state = {
      prefix,
      replica: name,
      cache: this.#cache,
      watchers: () => this.#watchers,
      link: this.#link,
      clock: this.#clock,
      hasTokens: () => this.#authorizer !== undefined,
      history,
    };
    const readiness = replicaReadiness(state);
    this.#readiness = readiness;
    collectReplicaState(this.#metrics, state, readiness);
    const dataset = this.env.EDGE_METRICS;
    if (dataset) {
      this.#writeAnalytics = () => {
        const now = this.#clock.now();
        if (now - this.#analyticsAt < ANALYTICS_INTERVAL_MS) return;
        this.#analyticsAt = now;
        // Never let metrics break the heartbeat that calls this (the binding throws on bad points).
        try {
          dataset.writeDataPoint(analyticsPoint(this.#metrics, state, readiness));
        } catch (error) {
          log.warn('analytics data point not written', { error: String(error) });
        }
      };
    }
    this.#link.start();
  }

  #setScopes(table: ScopeTable): void {
    const authorizer = new Authorizer(table, this.#settings.insecureNoAuth);
    this.#authorizer = authorizer;
    const waiters = [...this.#scopeWaiters];
    this.#scopeWaiters.clear();
    for (const waiter of waiters) waiter(authorizer);
  }

  /** Resolves with the authorizer once the first scope table arrives, or undefined after `ms`. */
  #scopesArrived(ms: number): Promise<Authorizer | undefined> {
    return new Promise((resolve) => {
      const waiter = (authorizer: Authorizer) => {
        cancel();
        resolve(authorizer);
      };
      // Without the delete a replica that never gets its tokens (a wrong secret, a relay down at
      // cold start) would keep one closure per request it refused.
      const cancel = this.#clock.setTimeout(() => {
        this.#scopeWaiters.delete(waiter);
        resolve(this.#authorizer);
      }, ms);
      this.#scopeWaiters.add(waiter);
    });
  }

  /**
   * A snapshot streams into SQLite's staging table chunk by chunk (one small transaction each)
   * and is swapped in at its end, in one transaction, with the cache replaced in the same
   * synchronous step; until then `load()` and every reader see the previous complete state. A
   * snapshot older than what the replica holds is ignored whole (no time travel) — unless the
   * relay said the held state is from another history: then `ReplicaHistory` has dropped it
   * already (the cache is not ready) and any snapshot is taken.
   */
  #onSnapshotStart(storage: ReplicaStorage, revision: Revision): void {
    if (this.#cache.ready && revision < this.#cache.revision) {
      this.#snapshot = undefined;
      return;
    }
    storage.beginSnapshot(revision);
    this.#snapshot = { revision, objects: [] };
  }

  #onSnapshotChunk(storage: ReplicaStorage, objects: readonly KvObject[]): void {
    const snapshot = this.#snapshot;
    if (snapshot === undefined) return;
    storage.writeSnapshotChunk(objects);
    // The cache is built from the same decoded objects (it keeps them), so this array costs a
    // pointer per object, not a copy.
    for (const o of objects) snapshot.objects.push(o);
  }

  /** Swaps the staged snapshot in; false when it was ignored. */
  #onSnapshotEnd(storage: ReplicaStorage, revision: Revision): boolean {
    const snapshot = this.#snapshot;
    this.#snapshot = undefined;
    if (snapshot?.revision !== revision) return false;
    storage.commitSnapshot(revision);
    this.#cache.replace(revision, snapshot.objects);
    return true;
  }

  /**
   * One replication message's batches: written to SQLite in one transaction with their revision
   * *before* the cache (and so any reader or watcher) sees them. The Durable Object's output gate
   * then holds every response and watch chunk that reflects them until the write is durable, so
   * an eviction can never make a replica serve an older revision than a client already saw.
   * (Saving on a timer instead let a restarted replica go back a few revisions: found by the
   * robustness suite, seed 7.)
   */
  #onBatches(batches: readonly RevisionBatch[]): void {
    const fresh = batches.filter((b) => b.revision > this.#cache.revision);
    if (fresh.length === 0 || !this.#cache.ready) return;
    this.#storage?.applyBatches(fresh);
    for (const batch of fresh) this.#cache.apply(batch);
  }

  #onProgress(revision: Revision): void {
    if (!this.#cache.ready || revision <= this.#cache.revision) return;
    this.#storage?.setRevision(revision);
    this.#cache.progress(revision);
  }

  /** The replica as a read tier: built once, when the replica starts (it reads live state). */
  #makeTier(name: string, link: RelayLink): ReadTier {
    const { rateLimit } = this.#settings;
    return edgeTier({
      settings: this.#settings,
      clock: this.#clock,
      cache: this.#cache,
      serving: () => this.#history?.verified === true,
      link,
      replica: name,
      authorizer: () => this.#authorizer,
      limiter: new RateLimiter(rateLimit.ratePerSecond, rateLimit.burst, this.#clock),
      metrics: this.#metrics,
      onWatch: (delta) => {
        this.#watchers += delta;
        this.#touch();
      },
    });
  }

  /** Keeps the relay stream open while anyone reads; closes it after the idle time. */
  #touch(): void {
    this.#lastActivityAt = this.#clock.now();
    if (this.#link && !this.#link.running) this.#link.start();
    this.#history?.arm(() => this.#link?.running === true);
    if (this.#idleTimer) return;
    const { idleMs } = this.#settings;
    const check = () => {
      this.#idleTimer = undefined;
      if (this.#watchers > 0 || this.#clock.now() - this.#lastActivityAt < idleMs) {
        this.#idleTimer = this.#clock.setTimeout(check, idleMs);
        return;
      }
      this.#link?.stop();
    };
    this.#idleTimer = this.#clock.setTimeout(check, idleMs);
  }
}

/** Where the client tokens are kept across restarts, next to the replica's state. */
const SCOPES_KEY = 'edgewatch:scopes';

function stripInternalHeaders(request: Request): Request {
  const headers = new Headers(request.headers);
  headers.delete(REPLICA_HEADER);
  headers.delete(PREFIX_HEADER);
  // Keep the signal: it is how a watch learns that its client went away.
  return new Request(request.url, { method: request.method, headers, signal: request.signal });
}
