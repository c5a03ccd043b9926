/**
 * `EdgewatchClient`: the read API and the writes of API.md over `fetch`, one client for either
 * tier (point it at the relay or at an edge; writes at the edge are forwarded to the relay).
 *
 * Runs unchanged in Node (≥ 20), a Cloudflare Worker and a browser: it uses only `fetch`,
 * streams and `TextDecoder`, no `node:*` module and no dependency. A custom `fetch` can be
 * injected (a Worker's service binding, a test's scripted server).
 *
 * Which state a read sees (API.md "Which snapshot a read sees"):
 *
 * | option               | resourceVersion sent         | meaning                                 |
 * |----------------------|------------------------------|-----------------------------------------|
 * | (none)               | unset                        | most recent (linearizable)              |
 * | `any: true`          | `0`                          | whatever the tier holds now (fast)      |
 * | `minRevision: n`     | `n` (NotOlderThan)           | not older than n: read-your-writes      |
 * | `exactRevision: n`   | `n` + `resourceVersionMatch=Exact` (lists only) | exactly the state at n |
 *
 * Errors: a Status answer throws `StatusError` (`isNotFound`, `isPreconditionFailed`, …), no
 * answer throws `TransportError`. Nothing is retried here: reads are cheap to retry for the
 * caller, writes must not be retried blindly (API.md "Writes"); the informer retries reads.
 */
import type { KvObject } from '../core/types.ts';
import { EdgewatchError, StatusError, statusOf, TransportError } from './errors.ts';
import { Informer, type InformerOptions } from './informer.ts';
import { Watch } from './watch.ts';

export interface ClientOptions {
  /** The tier's base URL, e.g. `https://edge.example.com` or `http://127.0.0.1:8080`. */
  readonly url: string;
  /** A bearer token (`npm run token`); none in local-development mode. */
  readonly token?: string | undefined;
  /** Default: the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Sent with every request (after the client's own). */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface ReadOptions {
  /** Not older than this revision (e.g. the revision a write returned). */
  readonly minRevision?: number;
  /** Whatever the serving tier holds now (`resourceVersion=0`). */
  readonly any?: boolean;
  readonly signal?: AbortSignal;
}

export interface ListOptions extends ReadOptions {
  /** Exactly the state at this revision (`resourceVersionMatch=Exact`). */
  readonly exactRevision?: number;
  /** Fetch the list in pages of this many objects (each page continues the first's snapshot). */
  readonly pageSize?: number;
}

export interface PageOptions extends ListOptions {
  /** The continue token of the previous page; the page then comes from that page's snapshot. */
  readonly continue?: string;
}

export interface WatchOptions {
  /** Only the changes after this revision (`resourceVersion=n`). Unset: initial state first. */
  readonly resourceVersion?: number;
  /** With `resourceVersion` unset or 0 means "any" state; see API.md for the initial events. */
  readonly any?: boolean;
  /** Initial ADDED events, then a BOOKMARK with `initialEventsEnd` (Kubernetes' streaming list). */
  readonly sendInitialEvents?: boolean;
  /** BOOKMARK events (default true): they move the resume point forward while nothing changes. */
  readonly allowWatchBookmarks?: boolean;
  readonly timeoutSeconds?: number;
  readonly signal?: AbortSignal;
}

export interface PutOptions {
  /** Only if the key's current modRevision is this (`If-Match`), else 412. */
  readonly ifMatch?: number;
  /** Only if the key does not exist (`If-None-Match: *`), else 412. */
  readonly createOnly?: boolean;
  readonly signal?: AbortSignal;
}

export interface DeleteOptions {
  /** Only if the key's current modRevision is this (`If-Match`), else 412. */
  readonly ifMatch?: number;
  readonly signal?: AbortSignal;
}

/** Where an answer came from: its snapshot's revision and the tier (`edge`, `relay`, `etcd`). */
export interface Served {
  readonly revision: number;
  readonly servedBy: string | null;
}

export interface GetResult extends Served {
  readonly object: KvObject;
}

export interface ListResult extends Served {
  /** In key order. */
  readonly items: KvObject[];
  /** Set on a page that has more after it (`listPage`). */
  readonly continue?: string;
  readonly remainingItemCount?: number;
}

/** A write's answer: the object as written (or the deleted key's last state) and its revision. */
export interface WriteResult {
  readonly object: KvObject;
  /** The write's revision: read with `minRevision` = this to see it (read-your-writes). */
  readonly revision: number;
}

/** `/v1/kv` + the key with each segment percent-encoded (a key is any string starting with `/`). */
function path(kind: 'kv' | 'list', keyOrPrefix: string): string {
  if (!keyOrPrefix.startsWith('/')) throw new EdgewatchError(`a key starts with '/': ${keyOrPrefix}`);
  return `/v1/${kind}${keyOrPrefix.split('/').map(encodeURIComponent).join('/')}`;
}

function consistency(options: ReadOptions, query: URLSearchParams, paged: boolean): void {
  const { minRevision, any } = options;
  const exact = (options as ListOptions).exactRevision;
  if ([minRevision, exact, any || undefined].filter((v) => v !== undefined).length > 1) {
    throw new EdgewatchError('give at most one of minRevision, exactRevision and any');
  }
  if (exact !== undefined) {
    query.set('resourceVersion', String(exact));
    query.set('resourceVersionMatch', 'Exact');
  } else if (minRevision !== undefined) {
    query.set('resourceVersion', String(minRevision));
    // A paged list with rv=n and no match is Exact in Kubernetes; say what is meant.
    if (paged) query.set('resourceVersionMatch', 'NotOlderThan');
  } else if (any) query.set('resourceVersion', '0');
}

function revisionOf(res: Response): number {
  const rv = res.headers.get('X-Resource-Version');
  return rv !== null && /^[0-9]+$/.test(rv) ? Number(rv) : 0;
}

export class EdgewatchClient {
  readonly url: string;
  readonly #token: string | undefined;
  readonly #fetch: typeof fetch;
  readonly #headers: Readonly<Record<string, string>>;

  constructor(options: ClientOptions) {
    this.url = options.url.replace(/\/+$/, '');
    this.#token = options.token;
    // Bound: a Worker's global fetch throws "Illegal invocation" when called as a method.
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#headers = options.headers ?? {};
  }

  /** One key. Throws `StatusError` 404 (`isNotFound`) when it does not exist at the served revision. */
  async get(key: string, options: ReadOptions = {}): Promise<GetResult> {
    const query = new URLSearchParams();
    consistency(options, query, false);
    const res = await this.#request('GET', path('kv', key), query, { signal: options.signal });
    return { object: (await this.#json(res, 'GET', key)) as KvObject, ...served(res) };
  }

  /** Every object under `prefix` at one revision, in key order (all pages when `pageSize` is set). */
  async list(prefix: string, options: ListOptions = {}): Promise<ListResult> {
    const first = await this.listPage(prefix, options);
    const items = [...first.items];
    let token = first.continue;
    while (token !== undefined) {
      const page = await this.listPage(prefix, {
        continue: token,
        ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      items.push(...page.items);
      token = page.continue;
    }
    return { items, revision: first.revision, servedBy: first.servedBy };
  }

  /** One page: `pageSize` objects from the start or from `continue`, with the next token if any. */
  async listPage(prefix: string, options: PageOptions = {}): Promise<ListResult> {
    const query = new URLSearchParams();
    if (options.pageSize !== undefined) query.set('limit', String(options.pageSize));
    if (options.continue !== undefined) query.set('continue', options.continue);
    else consistency(options, query, options.pageSize !== undefined);
    const res = await this.#request('GET', path('list', prefix), query, { signal: options.signal });
    const body = (await this.#json(res, 'GET', prefix)) as {
      items?: KvObject[];
      metadata?: { resourceVersion?: string; continue?: string; remainingItemCount?: number };
    };
    const metadata = body.metadata ?? {};
    return {
      items: body.items ?? [],
      // A page continued from a token is at the first page's revision, which the body states.
      revision: metadata.resourceVersion ? Number(metadata.resourceVersion) : revisionOf(res),
      servedBy: res.headers.get('X-Served-By'),
      ...(metadata.continue ? { continue: metadata.continue } : {}),
      ...(metadata.remainingItemCount !== undefined
        ? { remainingItemCount: metadata.remainingItemCount }
        : {}),
    };
  }

  /**
   * Opens a watch of `prefix`; resolves once the tier accepted it (its headers arrived), rejects
   * with `StatusError` when it refused. Iterate the result; `close()` or the signal ends it.
   */
  async watch(prefix: string, options: WatchOptions = {}): Promise<Watch> {
    const query = new URLSearchParams({ watch: 'true' });
    if (options.resourceVersion !== undefined) query.set('resourceVersion', String(options.resourceVersion));
    else if (options.any) query.set('resourceVersion', '0');
    if (options.sendInitialEvents !== undefined) {
      query.set('sendInitialEvents', String(options.sendInitialEvents));
      query.set('resourceVersionMatch', 'NotOlderThan');
    }
    if (options.allowWatchBookmarks !== false) query.set('allowWatchBookmarks', 'true');
    if (options.timeoutSeconds !== undefined) query.set('timeoutSeconds', String(options.timeoutSeconds));
    // The watch's own controller, linked to the caller's signal until the watch ends (a
    // long-lived signal, like an informer's, must not collect one listener per watch).
    const abort = new AbortController();
    const signal = options.signal;
    const onAbort = () => abort.abort();
    if (signal?.aborted) abort.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    abort.signal.addEventListener('abort', () => signal?.removeEventListener('abort', onAbort), {
      once: true,
    });
    let res: Response;
    try {
      res = await this.#request('GET', path('list', prefix), query, { signal: abort.signal });
    } catch (error) {
      abort.abort();
      throw error;
    }
    if (res.status !== 200) {
      const error = await this.#statusError(res, 'GET', prefix);
      abort.abort();
      throw error;
    }
    return new Watch(res, abort, `watch ${prefix}`);
  }

  /** Sets `key` to `value` (bytes as given; a string is sent as UTF-8). */
  async put(key: string, value: string | Uint8Array, options: PutOptions = {}): Promise<WriteResult> {
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
    if (options.ifMatch !== undefined && options.createOnly) {
      throw new EdgewatchError('give ifMatch or createOnly, not both');
    }
    if (options.ifMatch !== undefined) headers['If-Match'] = `"${options.ifMatch}"`;
    if (options.createOnly) headers['If-None-Match'] = '*';
    const res = await this.#request('PUT', path('kv', key), undefined, {
      signal: options.signal,
      headers,
      // A copy backed by a plain ArrayBuffer: what every runtime's `fetch` accepts as a body.
      body: typeof value === 'string' ? value : value.slice(),
    });
    return { object: (await this.#json(res, 'PUT', key)) as KvObject, revision: revisionOf(res) };
  }

  /** Deletes `key`; the answer is its last state. Throws `StatusError` 404 when it did not exist. */
  async delete(key: string, options: DeleteOptions = {}): Promise<WriteResult> {
    const headers: Record<string, string> = {};
    if (options.ifMatch !== undefined) headers['If-Match'] = `"${options.ifMatch}"`;
    const res = await this.#request('DELETE', path('kv', key), undefined, {
      signal: options.signal,
      headers,
    });
    return { object: (await this.#json(res, 'DELETE', key)) as KvObject, revision: revisionOf(res) };
  }

  /** An informer over `prefix` (not started: call `start()`). */
  informer(prefix: string, options: Omit<InformerOptions, 'client' | 'prefix'> = {}): Informer {
    return new Informer({ ...options, client: this, prefix });
  }

  async #request(
    method: string,
    pathname: string,
    query: URLSearchParams | undefined,
    init: {
      signal?: AbortSignal | undefined;
      headers?: Record<string, string>;
      body?: string | Uint8Array<ArrayBuffer>;
    },
  ): Promise<Response> {
    const q = query?.toString();
    const url = `${this.url}${pathname}${q ? `?${q}` : ''}`;
    const headers: Record<string, string> = { Accept: 'application/json', ...init.headers, ...this.#headers };
    if (this.#token !== undefined) headers.Authorization = `Bearer ${this.#token}`;
    try {
      return await this.#fetch(url, {
        method,
        headers,
        ...(init.body !== undefined ? { body: init.body } : {}),
        ...(init.signal ? { signal: init.signal } : {}),
      });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      const outcome = method === 'GET' ? '' : ' (the write may or may not have been applied)';
      throw new TransportError(`${method} ${pathname}: no answer${outcome}`, { cause: error });
    }
  }

  async #json(res: Response, method: string, what: string): Promise<unknown> {
    if (res.status !== 200) throw await this.#statusError(res, method, what);
    try {
      return await res.json();
    } catch (error) {
      throw new TransportError(`${method} ${what}: the answer could not be read`, { cause: error });
    }
  }

  async #statusError(res: Response, method: string, what: string): Promise<StatusError> {
    const text = await res.text().catch(() => '');
    const rv = res.headers.get('X-Resource-Version');
    return new StatusError(statusOf(res.status, res.statusText, text), `${method} ${what}`, {
      ...(rv !== null && /^[0-9]+$/.test(rv) ? { revision: Number(rv) } : {}),
      servedBy: res.headers.get('X-Served-By'),
    });
  }
}

function served(res: Response): Served {
  return { revision: revisionOf(res), servedBy: res.headers.get('X-Served-By') };
}
