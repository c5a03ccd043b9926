/**
 * Writes at the relay (API.md "Writes"): `PUT /v1/kv/{key}` sets the key to the request body,
 * `DELETE /v1/kv/{key}` deletes it, each as one etcd transaction, with HTTP preconditions:
 *
 * | header                    | PUT                               | DELETE                 |
 * |---------------------------|-----------------------------------|------------------------|
 * | (none)                    | create or replace                 | delete; 404 if absent  |
 * | `If-Match: "<modRev>"`    | only if the key's modRevision is it, else 412           ||
 * | `If-Match: *`             | only if the key exists, else 412                         ||
 * | `If-None-Match: *`        | only if the key does not exist (create), else 412 | 400 |
 *
 * The answer is the object as etcd stored it (PUT) or its last state with `modRevision` = the
 * deleting revision (DELETE), with `X-Resource-Version` = the write's revision, so a read
 * anywhere with `resourceVersion=<that>` sees it (read-your-writes).
 *
 * A write is never retried here: etcd's client runs without retries (relay/etcd/client.ts), and
 * a call that fails without an answer may still have been applied, so the client gets `503`
 * saying the outcome is unknown and decides (reads the key, or writes again with `If-Match`).
 *
 * Choices where API.md is silent: the value is at most `MAX_VALUE_BYTES` (413 over it; etcd's
 * own request limit is 1.5 MiB); a PUT leaves the key without a lease, as etcd's put does; read
 * parameters (`resourceVersion`, …) on a write are 400, so no one mistakes `?resourceVersion=n`
 * for a precondition; other methods on `/v1/` are 405; a list path is read-only (405).
 */
import { type Etcd3, EtcdPermissionDeniedError, type ICompare, type IKeyValue, type IRequestOp } from 'etcd3';
import type { Authorizer } from '../core/auth.ts';
import {
  ApiError,
  BadRequest,
  MethodNotAllowed,
  NotFound,
  PreconditionFailed,
  RequestEntityTooLarge,
  ServiceUnavailable,
} from '../core/errors.ts';
import { errorResponse, etagOf } from '../core/format.ts';
import { M, type MetricsSink, noMetrics } from '../core/metrics.ts';
import { deletedObject } from '../core/object.ts';
import { decodePathRest, exposedPrefixFor, READ_PARAMS } from '../core/request.ts';
import { type Clock, type KvObject, type Revision, systemClock } from '../core/types.ts';
import { kvToObject } from './etcd/lister.ts';
import type { Logger } from './log.ts';

/** The largest value a PUT may carry. */
export const MAX_VALUE_BYTES = 1024 * 1024;

/** What must hold for the key when the transaction runs. */
export type Precondition =
  | { readonly kind: 'none' }
  /** `If-Match: "<n>"`: the key exists with modRevision n. */
  | { readonly kind: 'modRevision'; readonly revision: Revision }
  /** `If-Match: *`: the key exists. */
  | { readonly kind: 'exists' }
  /** `If-None-Match: *`: the key does not exist. */
  | { readonly kind: 'absent' };

/** A validated write, before its body is read. */
export interface WriteRequest {
  readonly verb: 'put' | 'delete';
  readonly key: string;
  readonly exposedPrefix: string;
  readonly precondition: Precondition;
}

const KV_PATH = '/v1/kv/';

/**
 * Parses a write's method, raw path (still percent-encoded), query and precondition headers.
 * Throws `NotFound` (no such endpoint), `MethodNotAllowed`, `BadRequest` or `Forbidden` (outside
 * the exposed prefixes).
 */
export function parseWriteRequest(
  method: string,
  rawPath: string,
  query: URLSearchParams,
  headers: Headers,
  exposedPrefixes: readonly string[],
): WriteRequest {
  if (!rawPath.startsWith('/v1/')) throw new NotFound(`no endpoint at ${method} ${rawPath}`);
  if (!rawPath.startsWith(KV_PATH)) {
    throw new MethodNotAllowed(`${method} is not allowed on ${rawPath}: write one key at /v1/kv/{key}`);
  }
  if (method !== 'PUT' && method !== 'DELETE') {
    throw new MethodNotAllowed(`${method} is not allowed on /v1/kv/: use GET, PUT or DELETE`);
  }
  for (const name of READ_PARAMS) {
    if (query.has(name)) {
      throw new BadRequest(`${name} does not apply to a write (a precondition is If-Match: "<modRevision>")`);
    }
  }
  const key = decodePathRest(rawPath.slice(KV_PATH.length));
  const exposedPrefix = exposedPrefixFor(key, exposedPrefixes, 'key');
  const verb = method === 'PUT' ? 'put' : 'delete';
  return { verb, key, exposedPrefix, precondition: parsePrecondition(verb, headers) };
}

function parsePrecondition(verb: 'put' | 'delete', headers: Headers): Precondition {
  const ifMatch = headers.get('If-Match');
  const ifNoneMatch = headers.get('If-None-Match');
  if (ifMatch !== null && ifNoneMatch !== null) {
    throw new BadRequest('give If-Match or If-None-Match, not both');
  }
  if (ifNoneMatch !== null) {
    if (verb === 'delete') throw new BadRequest('If-None-Match does not apply to a DELETE');
    if (ifNoneMatch.trim() !== '*') {
      throw new BadRequest('If-None-Match on a write must be * (create only)');
    }
    return { kind: 'absent' };
  }
  if (ifMatch === null) return { kind: 'none' };
  const tag = ifMatch.trim();
  if (tag === '*') return { kind: 'exists' };
  if (tag.startsWith('W/')) throw new BadRequest('If-Match needs a strong entity tag, not a weak one');
  // One tag: etcd's comparisons are a conjunction, so "any of these revisions" has no transaction.
  const match = /^"?([1-9][0-9]{0,15})"?$/.exec(tag);
  const revision = match ? Number(match[1]) : Number.NaN;
  if (!match || !Number.isSafeInteger(revision) || tag.startsWith('"') !== tag.endsWith('"')) {
    throw new BadRequest(`invalid If-Match ${JSON.stringify(ifMatch)}: use "<modRevision>" or *`);
  }
  return { kind: 'modRevision', revision };
}

/**
 * Reads a PUT's body, refusing more than `max` bytes with 413 without buffering them: a
 * `Content-Length` over the limit is refused before anything is read.
 */
export async function readValue(raw: Request, max = MAX_VALUE_BYTES): Promise<Uint8Array> {
  const tooLarge = () => new RequestEntityTooLarge(`the value is larger than ${max} bytes`);
  const length = raw.headers.get('Content-Length');
  if (length !== null && /^[0-9]+$/.test(length) && Number(length) > max) throw tooLarge();
  if (raw.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = raw.body.getReader();
  for (;;) {
    let chunk: Awaited<ReturnType<typeof reader.read>>;
    try {
      chunk = await reader.read();
    } catch {
      throw new BadRequest('the request body could not be read');
    }
    if (chunk.done) break;
    total += chunk.value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      throw tooLarge();
    }
    chunks.push(chunk.value);
  }
  const value = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    value.set(chunk, at);
    at += chunk.byteLength;
  }
  return value;
}

/** What a write did: the object (as written, or the deleted key's last state) at `revision`. */
export interface WriteResult {
  readonly object: KvObject;
  readonly revision: Revision;
}

function compareFor(key: Buffer, precondition: Precondition): ICompare[] {
  switch (precondition.kind) {
    case 'none':
      return [];
    case 'modRevision':
      return [{ key, target: 'Mod', result: 'Equal', mod_revision: precondition.revision }];
    // etcd compares an absent key as version 0.
    case 'exists':
      return [{ key, target: 'Version', result: 'Greater', version: 0 }];
    case 'absent':
      return [{ key, target: 'Version', result: 'Equal', version: 0 }];
  }
}

/** Why a precondition failed, from the key's current state (read in the same transaction). */
function preconditionFailure(key: string, precondition: Precondition, current: IKeyValue | undefined) {
  const now = current ? `its modRevision is ${current.mod_revision}` : 'it does not exist';
  const wanted =
    precondition.kind === 'modRevision'
      ? `modRevision ${precondition.revision}`
      : precondition.kind === 'absent'
        ? 'the key not to exist'
        : 'the key to exist';
  return new PreconditionFailed(`the write of ${JSON.stringify(key)} wanted ${wanted}, but ${now}`);
}

/**
 * Runs one write as one etcd transaction: the precondition's comparison, then the put (and a
 * range in the same transaction, which sees the put: the object exactly as etcd stored it) or
 * the delete with its previous value; on a failed comparison, a range to say why.
 */
export async function executeWrite(
  client: Etcd3,
  request: WriteRequest,
  value: Uint8Array,
): Promise<WriteResult> {
  const key = Buffer.from(request.key, 'utf8');
  const range: IRequestOp = { request_range: { key } };
  const success: IRequestOp[] =
    request.verb === 'put'
      ? [
          { request_put: { key, value: Buffer.from(value.buffer, value.byteOffset, value.byteLength) } },
          range,
        ]
      : [{ request_delete_range: { key, prev_kv: true } }];
  let res: Awaited<ReturnType<Etcd3['kv']['txn']>>;
  try {
    res = await client.kv.txn({ compare: compareFor(key, request.precondition), success, failure: [range] });
  } catch (error) {
    throw etcdWriteError(error);
  }
  const revision = Number(res.header.revision);
  if (!res.succeeded) {
    throw preconditionFailure(request.key, request.precondition, res.responses[0]?.response_range?.kvs[0]);
  }
  if (request.verb === 'put') {
    const written = res.responses[1]?.response_range?.kvs[0];
    if (!written) throw new ServiceUnavailable('etcd did not return the written key');
    return { object: kvToObject(written), revision };
  }
  const prev = res.responses[0]?.response_delete_range?.prev_kvs[0];
  if (!prev) throw new NotFound(`${JSON.stringify(request.key)} not found at revision ${revision}`);
  return { object: deletedObject(kvToObject(prev), revision), revision };
}

/**
 * An etcd failure during a write. "Too large" and "permission denied" were refused before
 * anything happened; anything else may have happened after etcd applied the write, so the
 * client is told the outcome is unknown.
 */
function etcdWriteError(error: unknown): ApiError {
  const message = error instanceof Error ? error.message : String(error);
  if (/request is too large|larger than max/i.test(message)) {
    return new RequestEntityTooLarge('etcd refused the write as too large');
  }
  if (error instanceof EtcdPermissionDeniedError) {
    return new ServiceUnavailable(
      "etcd refused the write: the relay's etcd user may not write this key (it needs readwrite)",
    );
  }
  return new ServiceUnavailable(
    `etcd did not confirm the write, which may or may not have been applied (read the key to ` +
      `find out; the relay does not retry writes): ${message}`,
  );
}

export interface WriteHandlerOptions {
  client: Etcd3;
  exposedPrefixes: readonly string[];
  /** The current client tokens (reloaded in place): the token needs a write scope on the key. */
  authorizer: () => Authorizer;
  log: Logger;
  /** Each write's etcd transaction is timed as `edgewatch_etcd_request_duration_seconds{operation="write"}`. */
  metrics?: MetricsSink;
  clock?: Clock;
}

/** Serves one write request (or a refused method on `/v1/`). Never throws. */
export async function serveWrite(options: WriteHandlerOptions, raw: Request): Promise<Response> {
  try {
    const url = new URL(raw.url);
    const request = parseWriteRequest(raw.method, url.pathname, url.searchParams, raw.headers, [
      ...options.exposedPrefixes,
    ]);
    options.authorizer().checkWrite(raw.headers.get('Authorization'), request.key);
    const value = request.verb === 'put' ? await readValue(raw) : new Uint8Array(0);
    const clock = options.clock ?? systemClock;
    const started = clock.now();
    const { object, revision } = await executeWrite(options.client, request, value).finally(() =>
      (options.metrics ?? noMetrics).observe(
        M.etcdRequestDuration,
        { operation: 'write' },
        (clock.now() - started) / 1000,
      ),
    );
    const headers = new Headers({
      'Content-Type': 'application/json',
      'Cache-Control': 'no-store',
      'X-Resource-Version': String(revision),
      'X-Served-By': 'relay',
    });
    if (request.verb === 'put') headers.set('ETag', etagOf(object));
    return new Response(JSON.stringify(object), { status: 200, headers });
  } catch (error) {
    if (error instanceof ServiceUnavailable) {
      options.log.warn('write not confirmed by etcd', { method: raw.method, error: error.message });
    } else if (!(error instanceof ApiError)) {
      options.log.error('unexpected error serving a write', { error: String(error) });
    }
    return errorResponse(error, 'relay');
  }
}
