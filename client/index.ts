/**
 * `edgewatch/client`: a typed, fetch-based client for edgewatch's API (../shared/API.md) that
 * runs in Node, Cloudflare Workers and browsers, and an informer that keeps a live local copy of
 * a prefix.
 *
 * ```ts
 * import { EdgewatchClient } from 'edgewatch/client';
 * const client = new EdgewatchClient({ url: 'https://edge.example.com', token });
 * const config = client.informer('/registry/configmaps/').start();
 * await config.waitForSync();
 * config.on('update', (object) => console.log(object.key, object.value));
 * const { revision } = await client.put('/registry/configmaps/app', '{"replicas":4}');
 * const { object } = await client.get('/registry/configmaps/app', { minRevision: revision });
 * ```
 */

export type { KvObject } from '../core/types.ts';
export type {
  ClientOptions,
  DeleteOptions,
  GetResult,
  ListOptions,
  ListResult,
  PageOptions,
  PutOptions,
  ReadOptions,
  Served,
  WatchOptions,
  WriteResult,
} from './client.ts';
export { EdgewatchClient } from './client.ts';
export {
  EdgewatchError,
  isExpired,
  isHistoryChanged,
  isNotFound,
  isPreconditionFailed,
  isTooLargeResourceVersion,
  type Status,
  StatusError,
  TransportError,
} from './errors.ts';
export type { InformerHandlers, InformerOptions, InformerStats, RetryDelays } from './informer.ts';
export { Informer } from './informer.ts';
export { ndjsonChunks } from './ndjson.ts';
export { valueBytes, valueText } from './value.ts';
export type { BookmarkEvent, ChangeEvent, WatchEvent } from './watch.ts';
export { Watch } from './watch.ts';
