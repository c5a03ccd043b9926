/**
 * One raw etcd watch stream, turned into whole-revision batches and progress notifications.
 *
 * etcd3's high-level watcher is not used: it resumes from a response header's revision instead
 * of the last event's, hides `compact_revision` and cannot request progress, and loses events
 * (measured: 9,000 of 20,000 on a connection cut during catch-up). Here the gRPC bidirectional
 * stream is driven directly:
 *
 * - the watch is created with `prev_kv` (a DELETE must carry the key's last state),
 *   `progress_notify` and `fragment` (a revision larger than etcd's request limit arrives in
 *   pieces marked `fragment: true`, reassembled here before anything is delivered);
 * - a response's events are grouped by `mod_revision`; etcd sends all events of one revision in
 *   one (reassembled) response, so a revision that is not above the previous one means the
 *   stream broke that rule and ends the watch as `WatchInconsistent` rather than split a txn;
 * - a response with no events (that is neither the creation nor a cancellation) is a progress
 *   notification: its header revision is the point up to which everything was delivered;
 * - `compact_revision` ends the watch as `Compacted`; any other cancellation, error or end of
 *   the stream as `WatchBroken`. Reconnecting is the reflector's job, not this module's.
 *
 * Each cache owns one `WatchStream`, and each watch it opens gets a gRPC channel of its own:
 * RequestProgress answers are not held back behind other watchers (etcd answers them only when
 * every watcher on the stream is synced), a failure elsewhere cannot reset the connection, and a
 * watch abandoned on a black-holed connection takes that connection with it. (Sharing one etcd3
 * client across attempts is not safe: etcd3 resets a client's channels when *any* of its streams
 * errors, and a cancelled stream's error can arrive after the next attempt opened on a new channel.)
 */
import type { Etcd3, IEvent, IWatchRequest, IWatchResponse } from 'etcd3';
import { deletedObject, makeObject } from '../../core/object.ts';
import type { ChangeEvent, KvObject, Revision } from '../../core/types.ts';
import {
  Compacted,
  type Watch,
  WatchBroken,
  type WatchEnded,
  type WatchHandlers,
  WatchInconsistent,
} from '../reflector.ts';
import { createEtcdClient, type EtcdClientOptions } from './client.ts';
import { kvToObject, prefixEnd } from './lister.ts';

/** Counters for tests and metrics; they only grow. */
export interface WatchStreamStats {
  /** Watch responses received, fragments included. */
  responses: number;
  /** Responses that were a non-final piece of a fragmented revision. */
  fragments: number;
  batches: number;
  progressNotifications: number;
}

export class WatchStream {
  readonly stats: WatchStreamStats = { responses: 0, fragments: 0, batches: 0, progressNotifications: 0 };
  private readonly options: EtcdClientOptions;
  /** The clients of watches not yet over, so that `close()` can end them. */
  private readonly clients = new Set<Etcd3>();
  private closed = false;

  constructor(options: EtcdClientOptions) {
    this.options = options;
  }

  /**
   * Watches every key under `prefix` from `startRevision` (inclusive). Resolves once etcd has
   * created the watch; rejects with a `WatchEnded` if it could not be.
   */
  async watch(prefix: string, startRevision: Revision, handlers: WatchHandlers): Promise<Watch> {
    if (this.closed) throw new WatchBroken('the watch stream was closed');
    const client = createEtcdClient(this.options);
    this.clients.add(client);
    const release = () => {
      this.clients.delete(client);
      client.close();
    };
    let stream: Awaited<ReturnType<Etcd3['watchClient']['watch']>>;
    try {
      stream = await client.watchClient.watch();
    } catch (err) {
      release();
      throw new WatchBroken(`could not open a watch stream: ${String(err)}`);
    }
    const stats = this.stats;
    const key = Buffer.from(prefix, 'utf8');
    return new Promise<Watch>((resolve, reject) => {
      let state: 'creating' | 'open' | 'done' = 'creating';
      let pieces: IEvent[] = [];
      let lastRevision = startRevision - 1;

      const send = (request: IWatchRequest) => {
        if (state === 'done') return;
        try {
          stream.write(request);
        } catch (err) {
          end(new WatchBroken(`could not write to the watch stream: ${String(err)}`));
        }
      };
      const end = (reason: WatchEnded) => {
        if (state === 'done') return;
        const wasCreating = state === 'creating';
        state = 'done';
        stream.cancel();
        release();
        if (wasCreating) reject(reason);
        else if (!this.closed) handlers.ended(reason);
      };
      const watch: Watch = {
        requestProgress: () => {
          if (state === 'open') send({ progress_request: {} });
        },
        close: () => {
          if (state === 'done') return;
          const wasCreating = state === 'creating';
          state = 'done';
          stream.cancel();
          release();
          if (wasCreating) reject(new WatchBroken('closed before etcd created the watch'));
        },
      };

      const onResponse = (res: IWatchResponse) => {
        stats.responses++;
        if (res.compact_revision && res.compact_revision !== '0') {
          end(new Compacted(Number(res.compact_revision)));
          return;
        }
        if (res.canceled) {
          end(new WatchBroken(`etcd cancelled the watch: ${res.cancel_reason || 'no reason given'}`));
          return;
        }
        if (res.created) {
          if (state === 'creating') {
            state = 'open';
            resolve(watch);
          }
          if (res.events.length === 0) return;
        }
        if (state !== 'open') return;
        if (res.fragment) {
          stats.fragments++;
          for (const event of res.events) pieces.push(event);
          return;
        }
        const events = pieces.length > 0 ? pieces.concat(res.events) : res.events;
        pieces = [];
        if (events.length === 0) {
          stats.progressNotifications++;
          handlers.progress(Number(res.header.revision));
          return;
        }
        let start = 0;
        while (start < events.length && state === 'open') {
          const revision = Number(events[start]?.kv.mod_revision);
          let stop = start + 1;
          while (stop < events.length && Number(events[stop]?.kv.mod_revision) === revision) stop++;
          if (!(revision > lastRevision)) {
            end(new WatchInconsistent(`revision ${revision} arrived after revision ${lastRevision}`));
            return;
          }
          lastRevision = revision;
          stats.batches++;
          handlers.batch({
            revision,
            events: events.slice(start, stop).map((e) => toChangeEvent(e, revision)),
          });
          start = stop;
        }
      };

      stream.on('data', (res: IWatchResponse) => {
        if (state === 'done') return;
        try {
          onResponse(res);
        } catch (err) {
          end(new WatchInconsistent(`could not process a watch response: ${String(err)}`));
        }
      });
      stream.on('error', (err: Error) => end(new WatchBroken(`watch stream failed: ${err.message}`)));
      stream.on('end', () => end(new WatchBroken('etcd ended the watch stream')));
      send({
        create_request: {
          key,
          range_end: prefixEnd(key),
          start_revision: startRevision,
          prev_kv: true,
          progress_notify: true,
          fragment: true,
        },
      });
    });
  }

  /** Ends every open watch (without calling their handlers) and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const client of this.clients) client.close();
    this.clients.clear();
  }
}

/**
 * The API event for one etcd event. A DELETE carries the key's last state at the deleting
 * revision; when etcd could not supply `prev_kv` (already compacted) only the key is known.
 */
export function toChangeEvent(event: IEvent, revision: Revision): ChangeEvent {
  const prev = event.prev_kv ? kvToObject(event.prev_kv) : undefined;
  if (event.type === 'Delete') {
    const object: KvObject = prev
      ? deletedObject(prev, revision)
      : makeObject({
          key: event.kv.key.toString('utf8'),
          value: new Uint8Array(0),
          createRevision: 0,
          modRevision: revision,
          version: 0,
        });
    return prev ? { type: 'DELETE', object, prev } : { type: 'DELETE', object };
  }
  const object = kvToObject(event.kv);
  return prev ? { type: 'PUT', object, prev } : { type: 'PUT', object };
}
