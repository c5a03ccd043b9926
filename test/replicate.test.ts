/**
 * The relay's replication endpoint against a real etcd and a real relay, with a plain `ws` client
 * playing the edge. Every assertion is on what crossed the wire (decoded with the edge's own
 * `decodeRelayMessage`, so the relay's output is validated too) or on the relay's log lines.
 */

import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RawData, WebSocket } from 'ws';
import type { ScopeTable } from '../core/auth.ts';
import { formatDigest } from '../core/digest.ts';
import {
  type BatchesMessage,
  decodeRelayMessage,
  type EdgeMessage,
  encode,
  type RelayMessage,
  TARGET_MESSAGE_BYTES,
} from '../core/protocol.ts';
import { type RevisionBatch, systemClock } from '../core/types.ts';
import { WatchCache } from '../core/watch-cache.ts';
import { parseConfig } from '../relay/config.ts';
import type { LogFields, Logger } from '../relay/log.ts';
import { attachReplication, type ReplicationOptions, type ReplicationSource } from '../relay/replicate.ts';
import { type RunningRelay, startRelay } from '../relay/server.ts';
import { type EtcdProcess, startEtcd } from '../scripts/lib/etcd-process.ts';
import { TEST_SECRET } from './helpers/stack.ts';

const DEADLINE_MS = 10_000;
const PRELOADED = 300;

/** Log lines as the relay wrote them, one JSON text each. */
function recordingLogger(lines: string[]): Logger {
  const record = (level: string) => (msg: string, fields?: LogFields) =>
    lines.push(JSON.stringify({ level, msg, ...fields }));
  return { info: record('info'), warn: record('warn'), error: record('error') };
}

/**
 * A minimal edge: every message it received, in order, and a cursor to wait on the next ones.
 * It answers the relay's pings, messages and frames (unless told not to) and keeps them out of `messages`; the scope
 * tables the relay sends are kept in `scopes`, apart from the replication stream proper.
 */
class Edge {
  readonly messages: RelayMessage[] = [];
  readonly scopes: ScopeTable[] = [];
  readonly closed: Promise<number>;
  readonly ws: WebSocket;
  pings = 0;
  #read = 0;
  #wake: (() => void) | undefined;

  private constructor(ws: WebSocket, answerPings: boolean) {
    this.ws = ws;
    ws.on('message', (data: RawData) => {
      const message = decodeRelayMessage(String(data));
      if (message.type === 'ping') {
        this.pings++;
        if (answerPings) this.send({ v: 1, type: 'pong' });
      } else if (message.type === 'scopes') {
        this.scopes.push(message.table);
      } else {
        this.messages.push(message);
      }
      this.#wake?.();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  }

  static open(url: string, secret = TEST_SECRET, answerPings = true): Promise<Edge> {
    // A silent edge answers nothing, not even the relay's WebSocket ping frames.
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/replicate`, {
      headers: { Authorization: `Bearer ${secret}` },
      autoPong: answerPings,
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Edge(ws, answerPings)));
      ws.once('error', reject);
    });
  }

  send(message: EdgeMessage): void {
    this.ws.send(encode(message));
  }

  /** The next message not yet read, waiting for it up to the deadline. */
  async next(): Promise<RelayMessage> {
    const deadline = Date.now() + DEADLINE_MS;
    while (this.#read >= this.messages.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${DEADLINE_MS} ms (got ${this.messages.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.messages[this.#read++] as RelayMessage;
  }

  /** Reads messages until one satisfies `done`; returns every message read, that one included. */
  async until(done: (m: RelayMessage) => boolean): Promise<RelayMessage[]> {
    const read: RelayMessage[] = [];
    for (;;) {
      const m = await this.next();
      read.push(m);
      if (done(m)) return read;
    }
  }

  /** Reads until the stream reached `revision` by batches or progress; returns the batches read. */
  async reach(revision: number): Promise<RevisionBatch[]> {
    const read = await this.until(
      (m) =>
        (m.type === 'batches' && (m.batches.at(-1)?.revision ?? 0) >= revision) ||
        (m.type === 'progress' && m.revision >= revision),
    );
    return read.flatMap((m) => (m.type === 'batches' ? m.batches : []));
  }
}

/** The upgrade is refused: the HTTP status and the JSON body. */
function refusedUpgrade(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: unknown }> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), { headers });
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
    });
    ws.on('open', () => reject(new Error('the upgrade was accepted')));
    ws.on('error', reject);
  });
}

const revisionOf = (res: { header: { revision: string } }) => Number(res.header.revision);

describe('the replication endpoint', () => {
  let etcd: EtcdProcess;
  let client: Etcd3;
  let relay: RunningRelay;
  const lines: string[] = [];
  const edges: Edge[] = [];
  const open = async (url = relay.url, secret = TEST_SECRET, answerPings = true) => {
    const edge = await Edge.open(url, secret, answerPings);
    edges.push(edge);
    return edge;
  };
  /** A write outside every exposed prefix: etcd's revision moves, the relay's prefix sees nothing. */
  const tick = async () => revisionOf(await client.put('/elsewhere/tick').value(String(Date.now())));

  beforeAll(async () => {
    etcd = await startEtcd();
    client = new Etcd3({ hosts: etcd.endpoint });
    // Written before the relay starts, so revision 2 is below its history window.
    const value = 'x'.repeat(2048); // 300 × 2 KB: more than one snapshot chunk
    for (let i = 0; i < PRELOADED; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          client.put(`/registry/pre/${String(i + j).padStart(4, '0')}`).value(value),
        ),
      );
    }
    const config = parseConfig(
      ['--port', '0', '--etcd', etcd.endpoint, '--secret', TEST_SECRET, '--prefix', '/registry/'],
      {},
    );
    relay = await startRelay(config, recordingLogger(lines));
    await relay.ready();
  });
  afterEach(() => {
    for (const edge of edges.splice(0)) edge.ws.terminate();
  });
  afterAll(async () => {
    await relay?.stop();
    client?.close();
    await etcd?.stop();
  });

  it('sends a snapshot of every key in chunks, then the live changes in order and without prev', async () => {
    const keys = (await client.getAll().prefix('/registry/').keys()).sort();
    const edge = await open();
    edge.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-snapshot' });
    const start = await edge.next();
    if (start.type !== 'snapshotStart') throw new Error(`expected snapshotStart, got ${start.type}`);
    expect(start.total).toBe(keys.length);
    const read = await edge.until((m) => m.type === 'snapshotEnd');
    const chunks = read.filter((m) => m.type === 'snapshotChunk');
    const objects = chunks.flatMap((m) => m.objects);
    expect(read.at(-1)).toEqual({
      v: 1,
      type: 'snapshotEnd',
      revision: start.revision,
      digest: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
    expect(
      read.every((m) => m.type === 'snapshotChunk' || m.type === 'snapshotEnd' || m.type === 'ping'),
    ).toBe(true);
    expect(objects.map((o) => o.key)).toEqual(keys);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks)
      expect(JSON.stringify(chunk).length).toBeLessThan(TARGET_MESSAGE_BYTES + 4096);

    const revisions = [
      revisionOf(await client.put('/registry/live/a').value('1')),
      revisionOf(await client.put('/registry/live/a').value('2')),
      revisionOf(await client.put('/registry/live/b').value('1')),
      revisionOf(await client.delete().key('/registry/live/a')),
    ];
    const batches = await edge.reach(revisions[3] as number);
    expect(batches.map((b) => b.revision)).toEqual(revisions);
    expect(batches.map((b) => b.events.map((e) => [e.type, e.object.key, e.object.value]))).toEqual([
      [['PUT', '/registry/live/a', '1']],
      [['PUT', '/registry/live/a', '2']],
      [['PUT', '/registry/live/b', '1']],
      [['DELETE', '/registry/live/a', '2']],
    ]);
    expect(batches.flatMap((b) => b.events).some((e) => 'prev' in e)).toBe(false);
  });

  it('resumes from a revision in its window with only the missing batches, never a snapshot', async () => {
    const from = revisionOf(await client.put('/registry/resume/a').value('1'));
    const missing = [
      revisionOf(await client.put('/registry/resume/b').value('1')),
      revisionOf(await client.put('/registry/resume/c').value('1')),
      revisionOf(await client.put('/registry/resume/a').value('2')),
    ];
    const edge = await open();
    edge.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-resume', fromRevision: from });
    const batches = await edge.reach(missing[2] as number);
    expect(edge.messages[0]?.type).toMatch(/^(batches|progress)$/);
    expect(edge.messages.some((m) => m.type.startsWith('snapshot'))).toBe(false);
    expect(batches.map((b) => b.revision)).toEqual(missing);
    const connected = lines.map((l) => JSON.parse(l)).find((l) => l.replica === 'test-resume');
    expect(connected).toMatchObject({
      msg: 'replica connected',
      prefix: '/registry/',
      mode: 'resume',
      fromRevision: from,
    });

    // A resume at exactly the cache's revision hears `progress` at once: its resume was accepted.
    const current = await open();
    current.send({
      v: 1,
      type: 'hello',
      prefix: '/registry/',
      replica: 'test-current',
      fromRevision: missing[2],
    });
    expect(await current.next()).toEqual({
      v: 1,
      type: 'progress',
      revision: missing[2],
      digest: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
  });

  it('sends a snapshot to a replica whose revision has left the window', async () => {
    const edge = await open();
    edge.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-too-old', fromRevision: 2 });
    const first = await edge.next();
    expect(first.type).toBe('snapshotStart');
    expect(first.type === 'snapshotStart' && first.revision).toBeGreaterThan(PRELOADED);
    const connected = lines.map((l) => JSON.parse(l)).find((l) => l.replica === 'test-too-old');
    expect(connected).toMatchObject({ msg: 'replica connected', mode: 'snapshot', fromRevision: 2 });
  });

  it('delivers a transaction of many keys as one batch', async () => {
    const edge = await open();
    edge.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-txn', fromRevision: await tick() });
    const puts = Array.from({ length: 100 }, (_, i) => client.put(`/registry/txn/${i}`).value(`v${i}`));
    const revision = revisionOf(
      await client
        .if('/registry/txn/0', 'Create', '==', 0)
        .then(...puts)
        .commit(),
    );
    const batches = await edge.reach(revision);
    const messages = edge.messages.filter(
      (m): m is BatchesMessage => m.type === 'batches' && m.batches.some((b) => b.revision === revision),
    );
    expect(messages).toHaveLength(1);
    expect(batches).toHaveLength(1);
    expect(batches[0]?.events).toHaveLength(100);
    expect(new Set(batches[0]?.events.map((e) => e.object.key)).size).toBe(100);
  });

  it('sends a replica that is ahead of etcd itself (another history) a snapshot marked newHistory', async () => {
    const ahead = (await tick()) + 3;
    const edge = await open();
    edge.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-ahead', fromRevision: ahead });
    const start = await edge.next();
    expect(start).toMatchObject({ type: 'snapshotStart', newHistory: true });
    expect(start.type === 'snapshotStart' && start.revision).toBeLessThan(ahead);
  });

  it('resumes a replica whose digest at its revision is the relay’s, and re-snapshots one whose digest is not', async () => {
    const revision = revisionOf(await client.put('/registry/digest/a').value('1'));
    const cache = relay.caches.get('/registry/')?.cache;
    if (!cache) throw new Error('no cache');
    await cache.waitFor(revision, DEADLINE_MS);
    const digest = formatDigest(cache.digestAt(revision) ?? 0n);
    const same = await open();
    same.send({
      v: 1,
      type: 'hello',
      prefix: '/registry/',
      replica: 'test-same',
      fromRevision: revision,
      digest,
    });
    expect(await same.until((m) => m.type === 'progress' || m.type.startsWith('snapshot'))).toContainEqual({
      v: 1,
      type: 'progress',
      revision,
      digest,
    });
    const other = await open();
    const wrong = digest === 'ffffffffffffffff' ? '0000000000000000' : 'ffffffffffffffff';
    other.send({
      v: 1,
      type: 'hello',
      prefix: '/registry/',
      replica: 'test-other',
      fromRevision: revision,
      digest: wrong,
    });
    const read = await other.until((m) => m.type === 'snapshotEnd');
    expect(read.find((m) => m.type === 'snapshotStart')).toMatchObject({ newHistory: true });
    expect(read.at(-1)).toMatchObject({ type: 'snapshotEnd', digest: formatDigest(cache.digest) });
  });

  it('answers a revisionRequest with etcd revision at least the last write, then progress reaching it', async () => {
    const edge = await open();
    edge.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-revision' });
    await edge.until((m) => m.type === 'snapshotEnd');
    const written = await tick();
    edge.send({ v: 1, type: 'revisionRequest', id: 7 });
    const [response] = (await edge.until((m) => m.type === 'revisionResponse')).slice(-1);
    expect(response).toMatchObject({ type: 'revisionResponse', id: 7 });
    const revision = response?.type === 'revisionResponse' && 'revision' in response ? response.revision : 0;
    expect(revision).toBeGreaterThanOrEqual(written);
    const after = await edge.until((m) => m.type === 'progress' && m.revision >= revision);
    expect(after.at(-1)).toMatchObject({ type: 'progress' });
  });

  it('refuses a wrong or missing secret, and every secret when none is configured, with a 401 Status', async () => {
    const wrong = 'wrong-secret-f00d';
    const url = `${relay.url}/v1/replicate`;
    const attempts: Record<string, string>[] = [
      { Authorization: `Bearer ${wrong}` },
      {},
      { Authorization: TEST_SECRET },
    ];
    for (const headers of attempts) {
      const { status, body } = await refusedUpgrade(url, headers);
      expect(status).toBe(401);
      expect(body).toMatchObject({ kind: 'Status', status: 'Failure', code: 401, reason: 'Unauthorized' });
    }
    expect(
      await refusedUpgrade(`${relay.url}/v1/elsewhere`, { Authorization: `Bearer ${TEST_SECRET}` }),
    ).toMatchObject({
      status: 404,
      body: { code: 404 },
    });

    const offLines: string[] = [];
    const off = await startRelay(
      parseConfig(['--port', '0', '--etcd', etcd.endpoint, '--prefix', '/registry/'], {}),
      recordingLogger(offLines),
    );
    try {
      const { status, body } = await refusedUpgrade(`${off.url}/v1/replicate`, {
        Authorization: `Bearer ${TEST_SECRET}`,
      });
      expect(status).toBe(401);
      expect(body).toMatchObject({ kind: 'Status', code: 401 });
    } finally {
      await off.stop();
    }
    expect(offLines.filter((l) => l.includes('replication is disabled')).length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => l.includes('replication refused'))).toHaveLength(3);
    for (const line of [...lines, ...offLines]) {
      expect(line).not.toContain(TEST_SECRET);
      expect(line).not.toContain(wrong);
    }
  });

  it('answers a garbage first message, a first message that is not hello and an unknown prefix with an error and closes', async () => {
    const cases: [string, number][] = [
      ['{not json', 400],
      [encode({ v: 1, type: 'ping' }), 400],
      [encode({ v: 1, type: 'hello', prefix: '/secret/', replica: 'test-403' }), 403],
    ];
    for (const [text, code] of cases) {
      const edge = await open();
      edge.ws.send(text);
      expect(await edge.next()).toMatchObject({ type: 'error', status: { kind: 'Status', code } });
      expect(await edge.closed).toBe(4000 + code);
    }
  });

  /** A second endpoint over the relay's caches, with its own settings; closed by the test. */
  const extraEndpoint = async (options: Partial<ReplicationOptions>) => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const endpoint = attachReplication(server, {
      caches: relay.caches,
      secrets: [TEST_SECRET],
      log: recordingLogger(lines),
      ...options,
    });
    return {
      url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
      endpoint,
      async close() {
        for (const edge of edges.splice(0)) edge.ws.terminate();
        await endpoint.close();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  };

  it('keeps delivering to one replica while another stops reading, and the slow one misses nothing', async () => {
    const { url, endpoint, close } = await extraEndpoint({
      highWaterBytes: 1024 * 1024,
      lowWaterBytes: 256 * 1024,
    });
    try {
      const slow = await open(url);
      const fast = await open(url);
      slow.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-slow' });
      fast.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-fast' });
      await Promise.all([
        slow.until((m) => m.type === 'snapshotEnd'),
        fast.until((m) => m.type === 'snapshotEnd'),
      ]);
      const received = slow.messages.length;
      (slow.ws as unknown as { _socket: Socket })._socket.pause();
      const slowInfo = () => endpoint.replicas().find((r) => r.replica === 'test-slow');

      // Big writes until the slow replica's stream is paused, then a few more: the fast replica
      // gets each one as it is written, whatever the slow one's socket holds.
      const value = 'y'.repeat(128 * 1024);
      const written: number[] = [];
      for (let i = 0, afterPause = 0; afterPause < 5; i++) {
        if (i >= 400) throw new Error('the slow replica was never paused');
        const revision = revisionOf(await client.put(`/registry/big/${i % 8}`).value(value));
        written.push(revision);
        const batches = await fast.reach(revision);
        expect(batches.at(-1)?.revision).toBe(revision);
        if (slowInfo()?.paused) afterPause++;
      }
      expect(slowInfo()).toMatchObject({ paused: true });
      expect(slowInfo()?.unflushedBytes).toBeGreaterThan(256 * 1024);
      expect(slow.messages.length).toBe(received); // it read nothing meanwhile

      (slow.ws as unknown as { _socket: Socket })._socket.resume();
      const slowBatches = await slow.reach(written.at(-1) as number);
      expect(slowBatches.map((b) => b.revision)).toEqual(written);
      expect(slowBatches.flatMap((b) => b.events).every((e) => e.object.value === value)).toBe(true);
    } finally {
      await close();
    }
    expect(endpoint.connections).toBe(0);
  });

  it('pings, accepts either of two rotated secrets, and cuts a replica that stays silent', async () => {
    const { url, endpoint, close } = await extraEndpoint({
      secrets: ['old-secret', TEST_SECRET],
      pingIntervalMs: 50,
      idleTimeoutMs: 300,
    });
    try {
      const silent = await open(url, 'old-secret', false);
      silent.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-silent' });
      expect(await silent.closed).toBe(4408); // the close frame goes out just before the socket is cut
      expect(silent.pings).toBeGreaterThan(0);
      expect(endpoint.stats.idleClosed).toBe(1);
      const lively = await open(url, TEST_SECRET, true);
      lively.send({ v: 1, type: 'hello', prefix: '/registry/', replica: 'test-lively' });
      lively.send({ v: 1, type: 'ping' });
      await lively.until((m) => m.type === 'pong');
      await lively.until((m) => m.type === 'snapshotEnd');
      const pings = lively.pings;
      // Answering pings keeps it open well past the idle timeout: a write still reaches it later.
      await expect.poll(() => lively.pings, { timeout: DEADLINE_MS }).toBeGreaterThan(pings + 10);
      const revision = revisionOf(await client.put('/registry/lively').value('1'));
      expect((await lively.reach(revision)).at(-1)?.revision).toBe(revision);
      expect(endpoint.stats.idleClosed).toBe(1);
    } finally {
      await close();
    }
  });

  it('answers 503 while a cache cannot load, and revisionRequest with 503 or 504 when etcd cannot confirm', async () => {
    // Failure paths need an etcd that misbehaves on cue, so these sources stand in for PrefixCache.
    const loaded = new WatchCache({ clock: systemClock });
    loaded.replace(5, []);
    const source = (prefix: string, fields: Partial<ReplicationSource>): ReplicationSource => ({
      prefix,
      cache: loaded,
      ready: true,
      whenReady: Promise.resolve(),
      latestRevision: async () => 5,
      ...fields,
    });
    const caches = new Map<string, ReplicationSource>([
      [
        '/loading/',
        source('/loading/', {
          cache: new WatchCache({ clock: systemClock }),
          ready: false,
          whenReady: new Promise(() => {}),
        }),
      ],
      [
        '/down/',
        source('/down/', { latestRevision: () => Promise.reject(new Error('connect ECONNREFUSED')) }),
      ],
      ['/behind/', source('/behind/', { latestRevision: async () => 1_000_000 })],
    ]);
    const { url, close } = await extraEndpoint({ caches, readyTimeoutMs: 100, waitTimeoutMs: 200 });
    try {
      const loading = await open(url);
      loading.send({ v: 1, type: 'hello', prefix: '/loading/', replica: 'test-loading' });
      expect(await loading.next()).toMatchObject({ type: 'error', status: { code: 503 } });
      expect(await loading.closed).toBe(4503);

      for (const [prefix, code] of [
        ['/down/', 503],
        ['/behind/', 504],
      ] as const) {
        const edge = await open(url);
        edge.send({ v: 1, type: 'hello', prefix, replica: `test${prefix}` });
        await edge.until((m) => m.type === 'snapshotEnd');
        edge.send({ v: 1, type: 'revisionRequest', id: 3 });
        const [response] = (await edge.until((m) => m.type === 'revisionResponse')).slice(-1);
        expect(response).toMatchObject({ id: 3, error: { kind: 'Status', code } });
        edge.send({ v: 1, type: 'ping' });
        await edge.until((m) => m.type === 'pong'); // a failed request does not end the stream
      }
    } finally {
      await close();
    }
  });
});
