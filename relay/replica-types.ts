/** The types a replica link shares with its parts and with relay/replicate.ts. */
import type { ScopeTable } from '../core/auth.ts';
import type { ReplicaReport } from '../core/protocol.ts';
import type { Clock, Revision } from '../core/types.ts';
import type { Logger } from './log.ts';
import type { PrefixCache } from './prefix-cache.ts';

/** What replication needs of a prefix's cache; `PrefixCache` is one. */
export type ReplicationSource = Pick<
  PrefixCache,
  'prefix' | 'cache' | 'ready' | 'whenReady' | 'latestRevision'
>;

/** Counters since attach, for logs, metrics and tests. */
export interface ReplicationStats {
  accepted: number;
  refused: number;
  snapshots: number;
  resumes: number;
  messagesSent: number;
  bytesSent: number;
  /** Times a replica's subscription was paused because its socket was backed up. */
  pauses: number;
  /** Replicas cut with 410 (fell out of the window, or the cache relisted). */
  expired: number;
  /** Replicas cut for silence. */
  idleClosed: number;
}

/** One replica as the relay sees it, for the dashboard and tests. */
export interface ReplicaInfo {
  readonly replica: string | undefined;
  readonly prefix: string | undefined;
  readonly remote: string;
  readonly mode: 'resume' | 'snapshot' | undefined;
  /** The revision the replica has been brought to (sent; maybe not yet received). */
  readonly revision: Revision;
  /** Bytes sent that the socket has not taken yet. */
  readonly unflushedBytes: number;
  /** The live tail is paused because the replica does not read fast enough. */
  readonly paused: boolean;
  /** The replica's last heartbeat report (its applied revision, watchers, self-check). */
  readonly report: ReplicaReport | undefined;
  /** When the relay last heard anything from the replica (clock ms). */
  readonly lastHeardAt: number;
}

/** What every stream shares: the caches, the endpoint's settings and its counters. */
export interface ReplicaStreamContext {
  readonly caches: ReadonlyMap<string, ReplicationSource>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly waitTimeoutMs: number;
  readonly readyTimeoutMs: number;
  readonly pingIntervalMs: number;
  readonly idleTimeoutMs: number;
  readonly highWaterBytes: number;
  readonly lowWaterBytes: number;
  readonly bufferLimit: number | undefined;
  readonly stats: ReplicationStats;
  /** The client tokens and scopes the edge enforces; sent after hello and on every change. */
  readonly scopes: (() => ScopeTable) | undefined;
}
