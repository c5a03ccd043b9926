/**
 * The etcd implementation of the reflector's `ListerWatcher` seam (client-go `listwatch.go`):
 * lists through the shared client, watches through the cache's own `WatchStream`.
 */
import type { Etcd3 } from 'etcd3';
import type { ListerWatcher } from '../reflector.ts';
import { listAt } from './lister.ts';
import type { WatchStream } from './watch-stream.ts';

export interface EtcdListerWatcherOptions {
  /** For the list; may be shared with other caches and the HTTP layer. */
  readonly client: Etcd3;
  /** For the watch; owned by this one cache (see watch-stream.ts). */
  readonly watchStream: WatchStream;
  readonly prefix: string;
  /** Keys per list page. Default 1,000. */
  readonly pageSize?: number;
}

export function etcdListerWatcher(options: EtcdListerWatcherOptions): ListerWatcher {
  const { client, watchStream, prefix } = options;
  const pageSize = options.pageSize ?? 1_000;
  return {
    list: () => listAt(client, prefix, { pageSize }),
    watch: (startRevision, handlers) => watchStream.watch(prefix, startRevision, handlers),
  };
}
