/**
 * The relay link alone, on a manual clock: the upgrade deadline, the reconnect backoff, silence
 * detection and revision requests. The peer is a scripted socket; the link against a real relay
 * in workerd is test/edge.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { makeObject } from '../core/object.ts';
import {
  decodeEdgeMessage,
  type EdgeMessage,
  encode,
  PROTOCOL_VERSION,
  type RelayMessage,
} from '../core/protocol.ts';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { type LinkSocket, RelayLink, type RelayLinkOptions, type UpgradeFetch } from './relay-link.ts';

/** The relay's end of one replication socket, driven by the test. */
class PeerSocket implements LinkSocket {
  readonly sent: EdgeMessage[] = [];
  accepted = false;
  closed: { code?: number | undefined; reason?: string | undefined } | undefined;
  readonly #message: ((event: { data: unknown }) => void)[] = [];
  readonly #close: (() => void)[] = [];

  accept(): void {
    this.accepted = true;
  }
  send(message: string): void {
    this.sent.push(decodeEdgeMessage(message));
  }
  close(code?: number, reason?: string): void {
    this.closed = { code, reason };
  }
  addEventListener(type: 'message', handler: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close' | 'error', handler: () => void): void;
  addEventListener(type: string, handler: ((event: { data: unknown }) => void) | (() => void)): void {
    if (type === 'message') this.#message.push(handler);
    else if (type === 'close') this.#close.push(handler as () => void);
  }
  /** The relay sends `message`. */
  deliver(message: RelayMessage): void {
    for (const h of this.#message) h({ data: encode(message) });
  }
  /** The relay closes the socket. */
  hangUp(): void {
    for (const h of this.#close) h();
  }
}

/** One upgrade request the link sent; the test answers it (or never does). */
interface Upgrade {
  url: string;
  headers: Record<string, string>;
  signal: AbortSignal;
  open(): PeerSocket;
  refuse(status: number): void;
}

/** `answersLate`: the fake relay's response arrives even after the link aborted the request. */
function setup(options: Partial<RelayLinkOptions> = {}, answersLate = false) {
  const clock = new ManualClock();
  const upgrades: Upgrade[] = [];
  const logs: string[] = [];
  const seen: string[] = [];
  const upgrade: UpgradeFetch = (url, init) =>
    new Promise((resolve, reject) => {
      if (!answersLate) init.signal.addEventListener('abort', () => reject(new Error('aborted')));
      upgrades.push({
        url,
        headers: init.headers,
        signal: init.signal,
        open() {
          const socket = new PeerSocket();
          resolve({ status: 101, webSocket: socket, body: null });
          return socket;
        },
        refuse(status) {
          resolve({ status, webSocket: null, body: null });
        },
      });
    });
  let from: number | undefined;
  const link = new RelayLink({
    relayUrl: 'http://relay.test/',
    secret: 's3cret',
    prefix: '/registry/',
    replica: 'local|/registry/|0',
    clock,
    random: () => 0,
    upgrade,
    fromRevision: () => from,
    handlers: {
      snapshotStart: (revision) => seen.push(`snapshotStart ${revision}`),
      snapshotChunk: (objects) => seen.push(`snapshotChunk ${objects.length}`),
      snapshotEnd: (revision) => seen.push(`snapshotEnd ${revision}`),
      batches: (batches) => seen.push(`batches ${batches.map((b) => b.revision).join(',')}`),
      progress: (revision) => seen.push(`progress ${revision}`),
      scopes: () => seen.push('scopes'),
      log: (msg) => logs.push(msg),
    },
    heartbeatMs: 1_000,
    silenceMs: 3_000,
    connectTimeoutMs: 2_000,
    ...options,
  });
  const last = () => {
    const u = upgrades.at(-1);
    if (!u) throw new Error('no upgrade sent');
    return u;
  };
  return { clock, link, upgrades, logs, seen, last, setFrom: (r: number) => (from = r) };
}

const progress = (revision: number): RelayMessage => ({ v: PROTOCOL_VERSION, type: 'progress', revision });

describe('RelayLink', () => {
  it('opens the stream with the secret and says hello with the revision it holds', async () => {
    const { link, last, setFrom, clock } = setup();
    setFrom(41);
    link.start();
    await clock.advance(0);
    expect(last().url).toBe('http://relay.test/v1/replicate');
    expect(last().headers).toMatchObject({ Upgrade: 'websocket', Authorization: 'Bearer s3cret' });
    const socket = last().open();
    await clock.advance(0);
    expect(socket.accepted).toBe(true);
    expect(socket.sent).toEqual([
      { v: 1, type: 'hello', prefix: '/registry/', replica: 'local|/registry/|0', fromRevision: 41 },
    ]);
    expect(link.connected).toBe(false); // not until the stream delivers state
    socket.deliver(progress(41));
    expect(link.connected).toBe(true);
    link.stop();
  });

  it('gives up on an upgrade the relay never answers, then retries after the backoff', async () => {
    const { link, upgrades, logs, clock } = setup();
    link.start();
    await clock.advance(1_999);
    expect(upgrades).toHaveLength(1);
    expect(upgrades[0]?.signal.aborted).toBe(false);
    await clock.advance(1);
    expect(upgrades[0]?.signal.aborted).toBe(true);
    expect(logs).toContain('relay did not answer the upgrade in time');
    // random 0: the first retry waits half of the first 100 ms.
    await clock.advance(49);
    expect(upgrades).toHaveLength(1);
    await clock.advance(1);
    expect(upgrades).toHaveLength(2);
    link.stop();
  });

  it('backs off exponentially while refused and starts over once the stream delivers state', async () => {
    const { link, upgrades, last, clock } = setup({ connectTimeoutMs: 60_000 });
    link.start();
    await clock.advance(0);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) {
      last().refuse(401);
      await clock.advance(0);
      waits.push(...clock.pending.filter((ms) => ms < 60_000));
      await clock.advance(waits.at(-1) ?? 0);
    }
    expect(waits).toEqual([50, 100, 200, 400]);
    expect(upgrades).toHaveLength(5);
    const socket = last().open();
    await clock.advance(0);
    socket.deliver(progress(1));
    socket.hangUp();
    await clock.advance(0);
    expect(clock.pending.filter((ms) => ms < 60_000)).toEqual([50]);
    link.stop();
  });

  it('aborts a pending upgrade when stopped, and does not retry', async () => {
    const { link, upgrades, clock } = setup();
    link.start();
    await clock.advance(0);
    link.stop();
    expect(upgrades[0]?.signal.aborted).toBe(true);
    await clock.advance(60_000);
    expect(upgrades).toHaveLength(1);
    expect(clock.pending).toEqual([]);
  });

  it('closes a socket that opens after it was stopped and started again, keeping one stream', async () => {
    const { link, upgrades, clock } = setup({}, true);
    link.start();
    await clock.advance(0);
    link.stop();
    link.start();
    await clock.advance(0);
    expect(upgrades).toHaveLength(2);
    // The first upgrade's answer arrives late: that socket is closed, the second one is the stream.
    const late = upgrades[0]?.open();
    const live = upgrades[1]?.open();
    await clock.advance(0);
    expect(late?.accepted).toBe(false);
    expect(late?.closed).toMatchObject({ code: 1000 });
    expect(live?.accepted).toBe(true);
    expect(live?.sent.map((m) => m.type)).toEqual(['hello']);
    link.stop();
  });

  it('pings while streaming and reconnects after silenceMs without a message', async () => {
    const { link, upgrades, logs, last, clock } = setup();
    link.start();
    await clock.advance(0);
    const socket = last().open();
    await clock.advance(0);
    socket.deliver(progress(1));
    await clock.advance(1_000);
    expect(socket.sent.map((m) => m.type)).toEqual(['hello', 'ping']);
    socket.deliver({ v: PROTOCOL_VERSION, type: 'pong' });
    await clock.advance(3_000);
    expect(link.connected).toBe(true); // the pong at 1 s counts: silent for 3 s only now
    await clock.advance(1_000);
    expect(logs).toContain('relay link silent; reconnecting');
    expect(link.connected).toBe(false);
    expect(socket.closed).toMatchObject({ code: 1000 });
    await clock.advance(50);
    expect(upgrades).toHaveLength(2);
    link.stop();
  });

  it('answers a revision request from the relay, and rejects it when the relay is too slow', async () => {
    const { link, last, clock } = setup();
    link.start();
    await clock.advance(0);
    const socket = last().open();
    await clock.advance(0);
    socket.deliver(progress(1));
    const answered = link.requestRevision(500);
    const request = socket.sent.at(-1);
    expect(request).toMatchObject({ type: 'revisionRequest' });
    const id = request?.type === 'revisionRequest' ? request.id : -1;
    socket.deliver({ v: PROTOCOL_VERSION, type: 'revisionResponse', id, revision: 7 });
    await expect(answered).resolves.toBe(7);

    const slow = link.requestRevision(500);
    const caught = slow.catch((e: unknown) => e);
    await clock.advance(500);
    expect(await caught).toMatchObject({ code: 503 });
    link.stop();
  });

  it('refuses a revision request at once without a live stream', async () => {
    const { link } = setup();
    await expect(link.requestRevision(500)).rejects.toMatchObject({ code: 503 });
  });

  it('hands a snapshot to its handlers chunk by chunk; one cut by a reconnect is started over', async () => {
    const { link, last, seen, clock } = setup();
    link.start();
    await clock.advance(0);
    let socket = last().open();
    await clock.advance(0);
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotStart', revision: 5, total: 0 });
    socket.hangUp();
    await clock.advance(50);
    socket = last().open();
    await clock.advance(0);
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotStart', revision: 6, total: 0 });
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotChunk', objects: [] });
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotEnd', revision: 6 });
    socket.deliver(progress(8));
    // The receiver stages chunks and swaps them in at snapshotEnd, so a new snapshotStart after a
    // cut is all it needs to start over.
    expect(seen).toEqual([
      'snapshotStart 5',
      'snapshotStart 6',
      'snapshotChunk 0',
      'snapshotEnd 6',
      'progress 8',
    ]);
    link.stop();
  });

  it('refuses a snapshot whose object count is not the one its start announced, and reconnects', async () => {
    const { link, last, seen, logs, upgrades, clock } = setup();
    link.start();
    await clock.advance(0);
    const socket = last().open();
    await clock.advance(0);
    const object = makeObject({
      key: '/registry/a',
      value: new TextEncoder().encode('v'),
      createRevision: 2,
      modRevision: 2,
      version: 1,
    });
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotStart', revision: 6, total: 2 });
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotChunk', objects: [object] });
    socket.deliver({ v: PROTOCOL_VERSION, type: 'snapshotEnd', revision: 6 });
    expect(seen).toEqual(['snapshotStart 6', 'snapshotChunk 1']);
    expect(logs).toContain('incomplete snapshot from relay; reconnecting');
    expect(link.connected).toBe(false);
    await clock.advance(50);
    expect(upgrades).toHaveLength(2);
    link.stop();
  });
});
