/**
 * The relay's replication endpoint: edge replicas open `GET /v1/replicate` as a WebSocket and get
 * a snapshot or a resume, then the live tail of one prefix's cache (core/protocol.ts).
 *
 * Why here and not in hono: the stream is long-lived and push-based, with its own backpressure,
 * so it sits on the node server's `upgrade` event, beside the read API, over the same caches.
 *
 * This module accepts and authenticates (`Authorization: Bearer <secret>`, compared in constant
 * time; no or a wrong secret gets HTTP 401 Status before any upgrade); each accepted socket
 * becomes a `ReplicaStream` (relay/replica-stream.ts, which has the per-connection states and the
 * promises the stream keeps), built from its parts: replica-history.ts (resume or snapshot),
 * replica-snapshot.ts, replica-revisions.ts (revision requests), replica-heartbeat.ts.
 */

import { timingSafeEqual } from 'node:crypto';
import { type IncomingMessage, Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ServerType } from '@hono/node-server';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { WebSocketServer } from 'ws';
import type { ScopeTable } from '../core/auth.ts';
import { type ApiError, NotFound, ServiceUnavailable, toStatus, Unauthorized } from '../core/errors.ts';
import { TARGET_MESSAGE_BYTES } from '../core/protocol.ts';
import { sha256 } from '../core/sha256.ts';
import { type Clock, systemClock } from '../core/types.ts';
import type { Logger } from './log.ts';
import {
  type ReplicaInfo,
  ReplicaStream,
  type ReplicaStreamContext,
  type ReplicationSource,
  type ReplicationStats,
} from './replica-stream.ts';

export type { ReplicaInfo, ReplicationSource, ReplicationStats };

export const REPLICATION_PATH = '/v1/replicate';

export interface ReplicationOptions {
  /** The exposed prefixes' caches, by prefix (a replica names one in its hello). */
  caches: ReadonlyMap<string, ReplicationSource>;
  /** Accepted bearer secrets (two during a rotation). Empty: replication is disabled (all get 401). */
  secrets: readonly string[];
  log: Logger;
  clock?: Clock;
  /** How long a revisionRequest waits for etcd and then for the cache. Default 3000 ms. */
  waitTimeoutMs?: number;
  /** How long a hello waits for a loading cache before 503. Default 10_000 ms. */
  readyTimeoutMs?: number;
  /** A `ping` goes out this often. Default 5000 ms. */
  pingIntervalMs?: number;
  /** A replica that sent nothing (not even `pong`) for this long is cut. Default 15_000 ms. */
  idleTimeoutMs?: number;
  /** Pause a replica's subscription when this many bytes are queued but not yet written. Default 2 MiB. */
  highWaterBytes?: number;
  /** Resume it once the queue drains below this. Default 512 KiB. */
  lowWaterBytes?: number;
  /** Live revisions the fan-out buffers for a paused replica before it re-reads history. */
  bufferLimit?: number;
  /** The client tokens replicas enforce (relay/tokens.ts); replicas get them after hello and on change. */
  scopes?: { readonly table: ScopeTable; onChange(listener: (table: ScopeTable) => void): () => void };
}

export interface ReplicationEndpoint {
  /** Open replica connections. */
  readonly connections: number;
  readonly stats: Readonly<ReplicationStats>;
  /** The open replicas, with their revision and backpressure state. */
  replicas(): ReplicaInfo[];
  /** Stops accepting, closes every replica (1001) and waits for their sockets. */
  close(): Promise<void>;
}

/** Adds the endpoint to `server`'s upgrade handling. */
export function attachReplication(server: ServerType, options: ReplicationOptions): ReplicationEndpoint {
  if (!(server instanceof Server)) throw new Error('replication needs an HTTP/1.1 server');
  const ctx: ReplicaStreamContext = {
    caches: options.caches,
    log: options.log,
    clock: options.clock ?? systemClock,
    waitTimeoutMs: options.waitTimeoutMs ?? 3000,
    readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
    pingIntervalMs: options.pingIntervalMs ?? 5000,
    idleTimeoutMs: options.idleTimeoutMs ?? 15_000,
    highWaterBytes: options.highWaterBytes ?? 4 * TARGET_MESSAGE_BYTES,
    lowWaterBytes: options.lowWaterBytes ?? TARGET_MESSAGE_BYTES,
    bufferLimit: options.bufferLimit,
    scopes: options.scopes ? () => (options.scopes as { table: ScopeTable }).table : undefined,
    stats: {
      accepted: 0,
      refused: 0,
      snapshots: 0,
      resumes: 0,
      messagesSent: 0,
      bytesSent: 0,
      pauses: 0,
      expired: 0,
      idleClosed: 0,
    },
  };
  const digests = options.secrets.filter((s) => s.length > 0).map((s) => sha256(utf8ToBytes(s)));
  if (digests.length === 0) ctx.log.warn('replication is disabled: no replication secret configured');
  // Edge messages are small (hello, ping, revisionRequest); anything big is refused by ws (1009).
  const wss = new WebSocketServer({ noServer: true, clientTracking: false, maxPayload: 64 * 1024 });
  const connections = new Set<ReplicaStream>();
  const unwatchScopes = options.scopes?.onChange((table) => {
    for (const connection of connections) connection.sendScopes(table);
  });
  let closing = false;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {}); // a reset during the handshake is not the relay's problem
    const path = new URL(req.url ?? '/', 'http://relay').pathname;
    if (path !== REPLICATION_PATH) return reject(socket, new NotFound(`no WebSocket endpoint at ${path}`));
    if (closing) return reject(socket, new ServiceUnavailable('the relay is shutting down'));
    const remote = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const header = req.headers.authorization;
    const refusal =
      digests.length === 0
        ? 'replication is disabled: no replication secret configured'
        : header === undefined
          ? 'missing credentials'
          : authorized(header, digests)
            ? undefined
            : 'wrong credentials';
    if (refusal !== undefined) {
      ctx.stats.refused++;
      // Never the header itself: it is (or resembles) a secret.
      ctx.log.warn('replication refused', { reason: refusal, remote });
      return reject(socket, new Unauthorized(`replication refused: ${refusal}`), [
        'WWW-Authenticate: Bearer realm="edgewatch-replication"',
      ]);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      if (closing) return ws.terminate();
      ctx.stats.accepted++;
      const connection = new ReplicaStream(ws, remote, ctx);
      connections.add(connection);
      void connection.closed.then(() => connections.delete(connection));
    });
  };
  server.on('upgrade', onUpgrade);

  return {
    get connections() {
      return connections.size;
    },
    stats: ctx.stats,
    replicas: () => [...connections].map((c) => c.info()),
    async close() {
      closing = true;
      unwatchScopes?.();
      server.off('upgrade', onUpgrade);
      await Promise.all([...connections].map((c) => c.shutdown()));
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** Constant time per secret, and every secret is compared, so timing says nothing of which matched. */
function authorized(header: string, digests: readonly Uint8Array[]): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(header);
  if (match?.[1] === undefined) return false;
  const presented = sha256(utf8ToBytes(match[1]));
  let ok = false;
  for (const digest of digests) ok = timingSafeEqual(presented, digest) || ok;
  return ok;
}

/** A plain HTTP error response on a socket that asked to upgrade, then close it. */
function reject(socket: Duplex, error: ApiError, headers: string[] = []): void {
  const body = JSON.stringify(toStatus(error));
  const head = [
    `HTTP/1.1 ${error.code} ${STATUS_CODES[error.code] ?? ''}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    'Connection: close',
    ...headers,
  ];
  socket.once('finish', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}
