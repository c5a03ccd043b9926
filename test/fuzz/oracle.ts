/**
 * What a response to a hostile request may be, and a tally of what they were.
 *
 * Two layers of judgement:
 * 1. The contract for every response (API.md "Errors"): no 500, no 5xx but a 504 Timeout with
 *    cause ResourceVersionTooLarge (etcd and the relay stay up during the fuzz, so the 503 that
 *    API.md allows for "etcd unreachable" never applies); every 4xx/5xx with a body is a JSON
 *    Status whose `code` is the HTTP status; every exchange ends.
 * 2. A differential oracle: the request is parsed locally with the very parser both tiers run
 *    (core/request.ts), on the URL as a WHATWG parser normalises it. A parse error must come
 *    back with exactly its code; an accepted read must be answered with what its verb allows
 *    (get: 200/304/404, list: 200, watch: a 200 stream), and only a revision past the seeded
 *    state may time out.
 *
 * Transport-level rejections. A request line or header block past ~16 KiB, or with raw bytes
 * outside ASCII (RFC 9112 §3.2: the request-target is ASCII), or with a backslash in the path,
 * may be refused by the HTTP server before our code runs: Node answers 431 (head too large) or
 * 400 (llhttp: bad request line; @hono/node-server: backslash in the path) with an empty body;
 * workerd answers 431 `text/plain` "ERROR: header too large." or closes the connection. That is
 * accepted — no handler of ours saw those bytes, and in production a proxy or Cloudflare's front
 * end answers them — but only for such requests, only as 400/413/414/431 or a closed
 * connection, and tallied as "transport" so the summary shows how often it happened. A JSON body
 * is always ours and is always checked as a Status.
 */
import { ApiError } from '../../core/errors.ts';
import { parseReadRequest, type ReadRequest } from '../../core/request.ts';
import type { RawOutcome, RawRequest } from './http.ts';

/** Node's default `maxHeaderSize`; workerd and the edge Worker refuse URLs past 16 KiB too. */
const HEADER_LIMIT = 16 * 1024;

export type Prediction =
  /**
   * `routed`: the path is a read endpoint, so the parser alone decides. Otherwise a router may
   * answer 404 before the parser objects to a parameter: which error wins is unspecified.
   */
  | { readonly kind: 'error'; readonly code: number; readonly routed: boolean }
  | { readonly kind: 'ok'; readonly request: ReadRequest }
  | { readonly kind: 'unpredictable' };

/** The bytes of the request head, near enough to compare with the servers' limits. */
function headSize(request: RawRequest): number {
  let size = request.target.length + 64;
  for (const [name, value] of Object.entries(request.headers)) size += name.length + value.length + 4;
  return size;
}

/** Why the HTTP server itself may refuse `request`, or undefined when it must reach our code. */
export function transportHostility(request: RawRequest): string | undefined {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for raw bytes past ASCII
  if (/[^\x00-\x7f]/.test(request.target)) return 'non-ASCII request line';
  if (request.target.split('?')[0]?.includes('\\')) return 'backslash in the path';
  if (headSize(request) > HEADER_LIMIT - 1024) return 'oversized request head';
  return undefined;
}

/**
 * How the tier's HTTP stack turns the request target into `Request.url`. Both end in a WHATWG
 * parse, which resolves `.`/`..` segments, percent-encoded ones (`%2e%2E`) included. The edge
 * as run by workerd first resolves the *literal* dot segments of the raw target on its own, so
 * `/v1/kv/registry/x/%2E%2E/../../a` is `/v1/kv/registry/a` at the edge but `/v1/a` at the
 * relay (reported as a tier divergence; it never leaves the exposed prefixes: the parser checks
 * the final key).
 */
export type UrlStack = 'node' | 'workerd';

/** RFC 3986 §5.2.4 on literal `.` and `..` segments only. */
function removeLiteralDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  segments.forEach((segment, i) => {
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '..') {
      if (segment === '..' && out.length > 1) out.pop();
      if (last) out.push('');
      return;
    }
    out.push(segment);
  });
  return out.join('/');
}

function requestUrl(target: string, stack: UrlStack): URL {
  if (stack === 'node') return new URL(`http://fuzz${target}`);
  const cut = target.search(/[?#]/);
  const path = cut < 0 ? target : target.slice(0, cut);
  const rest = cut < 0 ? '' : target.slice(cut);
  return new URL(`http://fuzz${removeLiteralDotSegments(path)}${rest}`);
}

/** The outcome the local parser predicts for `request` at a tier exposing `exposedPrefixes`. */
export function predict(
  request: RawRequest,
  exposedPrefixes: readonly string[],
  stack: UrlStack,
): Prediction {
  if (transportHostility(request) !== undefined) return { kind: 'unpredictable' };
  let url: URL;
  try {
    url = requestUrl(request.target, stack);
  } catch {
    return { kind: 'unpredictable' };
  }
  if (url.pathname === '/healthz' || url.pathname === '/readyz') return { kind: 'unpredictable' };
  try {
    return { kind: 'ok', request: parseReadRequest(url.pathname, url.searchParams, { exposedPrefixes }) };
  } catch (error) {
    if (!(error instanceof ApiError)) return { kind: 'unpredictable' };
    const routed = url.pathname.startsWith('/v1/kv/') || url.pathname.startsWith('/v1/list/');
    return { kind: 'error', code: error.code, routed };
  }
}

/** Counts per tier and outcome, printed at the end so the figures can be quoted. */
export class Tally {
  readonly byTier = new Map<string, Map<string, number>>();
  requests = 0;
  failures = 0;

  add(tier: string, outcome: string): void {
    this.requests++;
    const counts = this.byTier.get(tier) ?? new Map<string, number>();
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    this.byTier.set(tier, counts);
  }

  total(tier: string): number {
    let n = 0;
    for (const count of this.byTier.get(tier)?.values() ?? []) n += count;
    return n;
  }

  summary(): string {
    const lines = [`requests: ${this.requests}`];
    for (const [tier, counts] of this.byTier) {
      const sorted = [...counts].sort(([a], [b]) => a.localeCompare(b));
      lines.push(`  ${tier} (${this.total(tier)}): ${sorted.map(([k, n]) => `${k}: ${n}`).join(', ')}`);
    }
    return lines.join('\n');
  }
}

interface Judged {
  /** The tally bucket: the status code, or a transport outcome. */
  readonly bucket: string;
  /** Why the response breaks the contract; empty when it does not. */
  readonly problems: readonly string[];
}

/** What the seeded stack looks like while requests are fuzzed. */
export interface OracleWorld {
  readonly revision: number;
  readonly exposedPrefixes: readonly string[];
}

/** Judges one exchange. */
export function judge(request: RawRequest, outcome: RawOutcome, world: OracleWorld, stack: UrlStack): Judged {
  const hostile = transportHostility(request);
  if (outcome.kind === 'hang')
    return { bucket: 'hang', problems: [`no ${outcome.phase} within the deadline`] };
  if (outcome.kind === 'socketError') {
    if (hostile !== undefined) return { bucket: 'connection closed (transport)', problems: [] };
    return { bucket: 'socket error', problems: [`connection failed: ${outcome.message}`] };
  }
  const { status, body } = outcome;
  const problems: string[] = [];
  const contentType = String(outcome.headers['content-type'] ?? '');
  if (status >= 400 && !contentType.includes('application/json')) {
    if (hostile !== undefined && [400, 413, 414, 431].includes(status)) {
      const what = body.length === 0 ? 'empty body' : `${contentType.split(';')[0]} body`;
      return { bucket: `${status} (transport, ${what})`, problems: [] };
    }
    if (body.length === 0) problems.push(`${status} without a Status body`);
  }
  if (status >= 500 && status !== 504) problems.push(`${status} is never allowed`);
  let statusBody: Record<string, unknown> | undefined;
  if (status >= 400 && body.length > 0) {
    statusBody = parseStatus(body, status, problems);
    if (!contentType.includes('application/json')) problems.push(`error with Content-Type ${contentType}`);
  }
  if (status === 504) {
    const causes = (statusBody?.details as { causes?: { reason?: string }[] } | undefined)?.causes;
    if (statusBody?.reason !== 'Timeout' || causes?.[0]?.reason !== 'ResourceVersionTooLarge') {
      problems.push('504 that is not Timeout/ResourceVersionTooLarge');
    }
  }

  const prediction = predict(request, world.exposedPrefixes, stack);
  const alsoAllowed =
    prediction.kind === 'error' && !prediction.routed && prediction.code === 400 ? 404 : undefined;
  if (prediction.kind === 'error' && status !== prediction.code && status !== alsoAllowed) {
    problems.push(`the parser says ${prediction.code}, the tier answered ${status}`);
  }
  if (prediction.kind === 'ok') checkAccepted(prediction.request, request, outcome, world, problems);
  return { bucket: String(status), problems };
}

function parseStatus(body: string, status: number, problems: string[]): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    problems.push(`error body is not JSON: ${body.slice(0, 200)}`);
    return undefined;
  }
  const s = parsed as Record<string, unknown>;
  if (s.kind !== 'Status' || s.status !== 'Failure') problems.push('error body is not a Failure Status');
  if (s.code !== status) problems.push(`Status code ${String(s.code)} differs from HTTP ${status}`);
  if (typeof s.reason !== 'string' || s.reason === '') problems.push('Status without a reason');
  if (typeof s.message !== 'string') problems.push('Status without a message');
  return s;
}

/** The rv a read must reach, if any: only such a read may 504. */
function requiredRevision(request: ReadRequest): number | undefined {
  const c = request.consistency;
  return c.kind === 'notOlderThan' || c.kind === 'exact' ? c.rv : undefined;
}

function checkAccepted(
  parsed: ReadRequest,
  request: RawRequest,
  outcome: Extract<RawOutcome, { kind: 'response' }>,
  world: OracleWorld,
  problems: string[],
): void {
  const { status, body, headers } = outcome;
  if (status === 504) {
    const rv = requiredRevision(parsed);
    if (rv === undefined || rv <= world.revision) {
      problems.push(`504 for a revision the tiers hold (${rv ?? 'none'} <= ${world.revision})`);
    }
    return;
  }
  const allowed = parsed.verb === 'get' ? [200, 304, 404] : [200];
  if (!allowed.includes(status)) {
    problems.push(`an accepted ${parsed.verb} answered ${status}`);
    return;
  }
  if (status === 304 && request.headers['if-none-match'] === undefined)
    problems.push('304 without If-None-Match');
  if (status !== 200) return;
  if (parsed.verb === 'watch') {
    checkWatch(parsed.prefix, request, outcome, problems);
    return;
  }
  if (!/^[1-9][0-9]*$/.test(String(headers['x-resource-version'])))
    problems.push('200 without X-Resource-Version');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body) as Record<string, unknown>;
  } catch {
    problems.push(`200 body is not JSON: ${body.slice(0, 200)}`);
    return;
  }
  if (parsed.verb === 'get') {
    if (json.key !== parsed.key)
      problems.push(`get of ${JSON.stringify(parsed.key)} returned ${String(json.key)}`);
    return;
  }
  const items = Array.isArray(json.items) ? (json.items as { key?: unknown }[]) : undefined;
  if (json.kind !== 'List' || items === undefined) {
    problems.push('list body is not a List');
    return;
  }
  const start = parsed.pagination.continue?.start ?? parsed.prefix;
  for (const item of items) {
    const key = String(item.key);
    if (!key.startsWith(parsed.prefix) || key < start) problems.push(`list of ${parsed.prefix} holds ${key}`);
  }
  const c = parsed.consistency;
  const served = Number((json.metadata as { resourceVersion?: string } | undefined)?.resourceVersion);
  if (c.kind === 'exact' && served !== c.rv) problems.push(`exact list at ${c.rv} served at ${served}`);
  if (c.kind === 'notOlderThan' && !(served >= c.rv))
    problems.push(`list not older than ${c.rv} served at ${served}`);
}

/** The chunks of a watch read before it was abandoned: whole events must be well-formed. */
function checkWatch(
  prefix: string,
  request: RawRequest,
  outcome: Extract<RawOutcome, { kind: 'response' }>,
  problems: string[],
): void {
  const sse = request.headers.accept?.includes('text/event-stream') === true;
  const type = String(outcome.headers['content-type'] ?? '');
  if (!type.includes(sse ? 'text/event-stream' : 'application/x-ndjson')) {
    problems.push(`watch with Accept ${request.headers.accept ?? '(none)'} streamed ${type}`);
  }
  if (!outcome.streamed) return;
  const lines = outcome.body.split('\n');
  lines.pop(); // the last piece is an incomplete line (or empty)
  for (const line of lines) {
    if (sse && !line.startsWith('data: ')) continue;
    let event: { type?: unknown; object?: { key?: unknown; kind?: unknown } };
    try {
      event = JSON.parse(sse ? line.slice('data: '.length) : line) as typeof event;
    } catch {
      problems.push(`watch line is not JSON: ${line.slice(0, 200)}`);
      continue;
    }
    if (!['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR'].includes(String(event.type))) {
      problems.push(`watch event of type ${String(event.type)}`);
    }
    if (event.type === 'ERROR' && event.object?.kind !== 'Status')
      problems.push('ERROR event without a Status');
    const key = event.object?.key;
    if (typeof key === 'string' && !key.startsWith(prefix)) problems.push(`watch of ${prefix} sent ${key}`);
  }
}
