/**
 * Read-request parsing: turns a raw path and query into one validated, typed `ReadRequest`, so
 * every later layer (the serving rules, the relay, the edge) sees a normalised `consistency`
 * instead of re-deriving Kubernetes' resourceVersion table from strings (API.md "Which snapshot
 * a read sees"). Every malformed input becomes a typed `BadRequest`/`Forbidden`/`NotFound`.
 *
 * Decisions where API.md is silent (following the Kubernetes API server unless noted):
 * - Keys are the percent-decoded rest of the *raw* path (pass `new URL(url).pathname`, not a
 *   router's already-decoded path). Any Unicode, NUL included, is accepted, since etcd allows any
 *   byte; invalid percent-encoding or non-UTF-8 escapes are 400 (such keys cannot be addressed).
 * - Parameters with an empty value count as unset (Kubernetes: `len(rv) == 0`). A known parameter
 *   given twice is 400 (ours: tiers must never disagree over which copy wins). Unknown parameters
 *   are ignored, as are parameters that do not apply to the verb (`limit` on a watch,
 *   `allowWatchBookmarks` on a list), as Kubernetes ignores them.
 * - resourceVersion must be canonical decimal (`0` or no leading zero) and a safe integer: `007`
 *   or `00` would make "is it `0`?" ambiguous, and etcd revisions never approach 2^53.
 * - resourceVersionMatch on a get is ignored: Kubernetes' GetOptions has no such field.
 * - With `continue`: resourceVersionMatch is 400, and so is rv other than unset/`0` (Kubernetes
 *   `ValidateListOptions` and the etcd3 store); the token's revision is read Exact.
 * - `sendInitialEvents` on a plain list is 400; on a watch it needs
 *   resourceVersionMatch=NotOlderThan, and resourceVersionMatch on a watch needs
 *   sendInitialEvents (Kubernetes `validateWatchOptions`). `continue` on a watch is 400 (ours).
 * - `watch` on `/v1/kv/{key}` is 400: a watch is always of a prefix.
 * - Booleans accept Go's `strconv.ParseBool` spellings (`true`, `1`, `t`, `True`, …).
 * - `limit` 0 or unset means no limit; larger than `maxLimit` is clamped (Kubernetes lets a server
 *   return fewer items than asked, with a continue token). Negative or non-decimal is 400.
 * - `timeoutSeconds` 0 or unset means the server default; larger values are clamped to a day.
 * - If exposed prefixes overlap, a key belongs to the longest (most specific) one that holds it.
 */

import { type ContinueToken, decodeContinue } from './continue.ts';
import { BadRequest, Forbidden, NotFound } from './errors.ts';
import { isUnder } from './keys.ts';
import type { Revision } from './types.ts';

/**
 * Which state a read must observe, normalised from resourceVersion + resourceVersionMatch (+
 * limit/continue). `mostRecent` is linearizable; `any` is whatever the serving tier holds;
 * `notOlderThan` waits for the tier to reach `rv`; `exact` is the state at exactly `rv`.
 */
export type ReadConsistency =
  | { readonly kind: 'mostRecent' }
  | { readonly kind: 'any' }
  | { readonly kind: 'notOlderThan'; readonly rv: Revision }
  | { readonly kind: 'exact'; readonly rv: Revision };

/** A get never asks for an exact revision (API.md's get table has no Exact column). */
export type GetConsistency = Exclude<ReadConsistency, { kind: 'exact' }>;

interface RequestBase {
  /** The exposed prefix this key or list prefix lies in: which cache answers it. */
  readonly exposedPrefix: string;
  /** The client's `timeoutSeconds`, clamped; absent means the server's default. */
  readonly timeoutSeconds?: number;
}

/** `GET /v1/kv/{key}`. */
export interface GetRequest extends RequestBase {
  readonly verb: 'get';
  readonly key: string;
  readonly consistency: GetConsistency;
}

/** `GET /v1/list/{prefix}`. With `continue`, `consistency` is `exact` at the token's rv. */
export interface ListRequest extends RequestBase {
  readonly verb: 'list';
  readonly prefix: string;
  readonly consistency: ReadConsistency;
  readonly pagination: { readonly limit?: number; readonly continue?: ContinueToken };
}

/**
 * `GET /v1/list/{prefix}?watch=true`.
 *
 * - `initialEvents: true`: synthetic ADDED for the state chosen by `consistency` (never
 *   `exact`), then the changes after that state's revision.
 * - `initialEvents: false`: only the changes after the revision chosen by `consistency`:
 *   `exact` n means "after n"; `mostRecent` means after etcd's current revision; `any` means
 *   after whatever the tier holds now.
 * `initialEventsEndBookmark` (sendInitialEvents=true) asks for the BOOKMARK with
 * `initialEventsEnd: true` once the initial events are out — sent whether or not
 * `allowWatchBookmarks` is set, as API.md says (Kubernetes ties it to allowWatchBookmarks).
 */
export interface WatchRequest extends RequestBase {
  readonly verb: 'watch';
  readonly prefix: string;
  readonly consistency: ReadConsistency;
  readonly initialEvents: boolean;
  readonly initialEventsEndBookmark: boolean;
  readonly allowWatchBookmarks: boolean;
}

/** A validated read request: the input of `planRead` (core/rules.ts) and of every tier. */
export type ReadRequest = GetRequest | ListRequest | WatchRequest;

export interface ParseOptions {
  /** The relay's exposed prefixes (at least one). */
  readonly exposedPrefixes: readonly string[];
  /** The secret continue tokens are tagged with; relay and edge must share it. */
  readonly continueSecret?: string;
  /** The largest page served; a larger `limit` is clamped. Default `MAX_LIMIT`. */
  readonly maxLimit?: number;
}

/** The default page-size cap. */
export const MAX_LIMIT = 10_000;
/** The longest `timeoutSeconds` honoured. */
export const MAX_TIMEOUT_SECONDS = 86_400;

const KV_PATH = '/v1/kv/';
const LIST_PATH = '/v1/list/';
/** The query parameters of a read (API.md); a write accepts none of them. */
export const READ_PARAMS = [
  'resourceVersion',
  'resourceVersionMatch',
  'limit',
  'continue',
  'watch',
  'allowWatchBookmarks',
  'sendInitialEvents',
  'timeoutSeconds',
] as const;
type Params = Partial<Record<(typeof READ_PARAMS)[number], string>>;

/**
 * Parses `rawPath` (still percent-encoded, without the query) and `query` into a `ReadRequest`.
 * Throws `NotFound` for a path that is no read endpoint, `BadRequest` for malformed input and
 * `Forbidden` for a key or prefix outside the exposed prefixes.
 */
export function parseReadRequest(
  rawPath: string,
  query: URLSearchParams,
  options: ParseOptions,
): ReadRequest {
  if (rawPath.startsWith(KV_PATH)) {
    return readRequestFor({ key: decodePathRest(rawPath.slice(KV_PATH.length)) }, query, options);
  }
  if (!rawPath.startsWith(LIST_PATH)) throw new NotFound(`no read endpoint at ${JSON.stringify(rawPath)}`);
  return readRequestFor({ prefix: decodePathRest(rawPath.slice(LIST_PATH.length)) }, query, options);
}

/**
 * The `ReadRequest` for a key (a get) or a prefix (a list or, with `watch`, a watch) and the
 * query's Kubernetes parameters, with every rule above. For front ends that map their own paths
 * to keys and prefixes (core/k8s/): the same parameters then mean the same thing everywhere.
 */
export function readRequestFor(
  target: { readonly key: string } | { readonly prefix: string },
  query: URLSearchParams,
  options: ParseOptions,
): ReadRequest {
  const params = knownParams(query);
  const timeoutSeconds = parseTimeout(params.timeoutSeconds);
  const base = timeoutSeconds === undefined ? {} : { timeoutSeconds };
  const rv = params.resourceVersion === undefined ? undefined : parseResourceVersion(params.resourceVersion);

  if ('key' in target) {
    const key = target.key;
    if (parseBool('watch', params.watch) === true) {
      throw new BadRequest('watch is only supported on /v1/list/{prefix}');
    }
    const exposedPrefix = exposedPrefixFor(key, options.exposedPrefixes, 'key');
    const consistency: GetConsistency =
      rv === undefined ? { kind: 'mostRecent' } : rv === 0 ? { kind: 'any' } : { kind: 'notOlderThan', rv };
    return { verb: 'get', key, exposedPrefix, consistency, ...base };
  }

  const prefix = target.prefix;
  const match = parseMatch(params.resourceVersionMatch);
  const watch = parseBool('watch', params.watch) === true;
  const sendInitialEvents = parseBool('sendInitialEvents', params.sendInitialEvents);
  const allowWatchBookmarks = parseBool('allowWatchBookmarks', params.allowWatchBookmarks) === true;
  const exposedPrefix = exposedPrefixFor(prefix, options.exposedPrefixes, 'prefix');

  if (watch) {
    if (params.continue !== undefined) throw new BadRequest('continue is not supported on a watch');
    const start = watchStart(rv, match, sendInitialEvents);
    return { verb: 'watch', prefix, exposedPrefix, allowWatchBookmarks, ...start, ...base };
  }

  if (sendInitialEvents !== undefined) throw new BadRequest('sendInitialEvents is forbidden for list');
  const limit = parseLimit(params.limit, options.maxLimit ?? MAX_LIMIT);
  if (params.continue !== undefined) {
    if (match !== undefined)
      throw new BadRequest('resourceVersionMatch is forbidden when continue is provided');
    if (rv !== undefined && rv !== 0) {
      throw new BadRequest('specifying resourceVersion is not allowed when using continue');
    }
    const token = decodeContinue(params.continue, prefix, options.continueSecret);
    const pagination = limit === undefined ? { continue: token } : { limit, continue: token };
    return {
      verb: 'list',
      prefix,
      exposedPrefix,
      consistency: { kind: 'exact', rv: token.rv },
      pagination,
      ...base,
    };
  }
  const consistency = listConsistency(rv, match, limit !== undefined);
  const pagination = limit === undefined ? {} : { limit };
  return { verb: 'list', prefix, exposedPrefix, consistency, pagination, ...base };
}

/** API.md's list table, plus the Kubernetes rule that `limit` turns a bare rv=n into Exact. */
function listConsistency(
  rv: Revision | undefined,
  match: 'NotOlderThan' | 'Exact' | undefined,
  hasLimit: boolean,
): ReadConsistency {
  if (match === undefined) {
    if (rv === undefined) return { kind: 'mostRecent' };
    if (rv === 0) return { kind: 'any' };
    return hasLimit ? { kind: 'exact', rv } : { kind: 'notOlderThan', rv };
  }
  if (rv === undefined)
    throw new BadRequest('resourceVersionMatch is forbidden unless resourceVersion is provided');
  if (match === 'NotOlderThan') return rv === 0 ? { kind: 'any' } : { kind: 'notOlderThan', rv };
  if (rv === 0) throw new BadRequest('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"');
  return { kind: 'exact', rv };
}

/** API.md "Watch", with Kubernetes' sendInitialEvents rules (KEP-3157). */
function watchStart(
  rv: Revision | undefined,
  match: 'NotOlderThan' | 'Exact' | undefined,
  sendInitialEvents: boolean | undefined,
): Pick<WatchRequest, 'consistency' | 'initialEvents' | 'initialEventsEndBookmark'> {
  if (sendInitialEvents !== undefined && match !== 'NotOlderThan') {
    throw new BadRequest('sendInitialEvents requires resourceVersionMatch=NotOlderThan');
  }
  if (match !== undefined && sendInitialEvents === undefined) {
    throw new BadRequest('resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided');
  }
  if (sendInitialEvents === true) {
    const consistency: ReadConsistency =
      rv === undefined ? { kind: 'mostRecent' } : rv === 0 ? { kind: 'any' } : { kind: 'notOlderThan', rv };
    return { consistency, initialEvents: true, initialEventsEndBookmark: true };
  }
  if (rv !== undefined && rv !== 0) {
    return { consistency: { kind: 'exact', rv }, initialEvents: false, initialEventsEndBookmark: false };
  }
  const consistency: ReadConsistency = rv === undefined ? { kind: 'mostRecent' } : { kind: 'any' };
  // Legacy watch (sendInitialEvents unset) lists first for rv unset/0; sendInitialEvents=false never does.
  return { consistency, initialEvents: sendInitialEvents === undefined, initialEventsEndBookmark: false };
}

/**
 * The exposed prefix that holds `keyOrPrefix`: for a key, one that it starts with; for a list
 * prefix likewise, so a prefix shorter than (or containing) every exposed prefix is refused.
 * Throws `Forbidden`.
 */
export function exposedPrefixFor(
  keyOrPrefix: string,
  exposedPrefixes: readonly string[],
  kind: 'key' | 'prefix',
): string {
  let best: string | undefined;
  for (const exposed of exposedPrefixes) {
    if (isUnder(keyOrPrefix, exposed) && (best === undefined || exposed.length > best.length)) best = exposed;
  }
  if (best === undefined) {
    throw new Forbidden(`${kind} ${JSON.stringify(keyOrPrefix)} is outside the exposed prefixes`);
  }
  return best;
}

/** Parses a resourceVersion: canonical non-negative decimal, a safe integer. Throws `BadRequest`. */
export function parseResourceVersion(text: string): Revision {
  const value = parseDecimal(text);
  if (value === undefined) throw new BadRequest(`invalid resourceVersion ${JSON.stringify(text)}`);
  return value;
}

function parseDecimal(text: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,15})$/.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

function parseLimit(text: string | undefined, maxLimit: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text)) throw new BadRequest(`invalid limit ${JSON.stringify(text)}`);
  const digits = text.replace(/^0+/, '');
  if (digits === '') return undefined;
  return digits.length > 15 ? maxLimit : Math.min(Number(digits), maxLimit);
}

function parseTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]+$/.test(text)) throw new BadRequest(`invalid timeoutSeconds ${JSON.stringify(text)}`);
  const digits = text.replace(/^0+/, '');
  if (digits === '') return undefined;
  return digits.length > 15 ? MAX_TIMEOUT_SECONDS : Math.min(Number(digits), MAX_TIMEOUT_SECONDS);
}

function parseMatch(text: string | undefined): 'NotOlderThan' | 'Exact' | undefined {
  if (text === undefined || text === 'NotOlderThan' || text === 'Exact') return text;
  throw new BadRequest(`unsupported resourceVersionMatch ${JSON.stringify(text)}: use NotOlderThan or Exact`);
}

const TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

function parseBool(name: string, text: string | undefined): boolean | undefined {
  if (text === undefined) return undefined;
  if (TRUE.has(text)) return true;
  if (FALSE.has(text)) return false;
  throw new BadRequest(`invalid ${name} ${JSON.stringify(text)}: use true or false`);
}

function knownParams(query: URLSearchParams): Params {
  const params: Params = {};
  for (const name of READ_PARAMS) {
    const values = query.getAll(name);
    if (values.length > 1) throw new BadRequest(`parameter ${name} given more than once`);
    const value = values[0];
    if (value !== undefined && value !== '') params[name] = value;
  }
  return params;
}

/** The rest of a `/v1/kv/` or `/v1/list/` path as a key: percent-decoded, with its leading `/`. */
export function decodePathRest(raw: string): string {
  try {
    return `/${decodeURIComponent(raw)}`;
  } catch {
    throw new BadRequest('invalid percent-encoding in the path');
  }
}
