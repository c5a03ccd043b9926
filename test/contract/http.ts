/**
 * Requests and response checks shared by the contract tests: building `/v1/kv` and `/v1/list`
 * URLs from keys, and asserting the parts of API.md every response must honour (Status bodies
 * with a matching HTTP code, `X-Resource-Version`, `X-Served-By`).
 */
import { expect } from 'vitest';
import { allowedServers } from './served-by.ts';
import type { ContractTarget } from './target.ts';

/** Query parameters; `undefined` values are left out. */
export type Query = Record<string, string | number | boolean | undefined>;

/** Percent-encodes a key into a path, keeping its `/` separators (API.md: the rest of the path). */
export function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function queryString(query: Query): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

export function getUrl(target: ContractTarget, key: string, query: Query = {}): string {
  return `${target.baseUrl}/v1/kv${encodeKeyPath(key)}${queryString(query)}`;
}

export function listUrl(target: ContractTarget, prefix: string, query: Query = {}): string {
  return `${target.baseUrl}/v1/list${encodeKeyPath(prefix)}${queryString(query)}`;
}

/** A raw path (already encoded, for malformed requests) plus query. */
export function rawUrl(target: ContractTarget, path: string, query: Query = {}): string {
  return `${target.baseUrl}${path}${queryString(query)}`;
}

/** The Status body of every error (API.md "Errors"). */
export interface StatusBody {
  kind: 'Status';
  status: 'Failure';
  code: number;
  reason: string;
  message: string;
  details?: { causes?: { reason: string; message?: string }[] };
}

/** Describes a request for failure messages: method-less, the URL is what matters. */
function describe(res: Response): string {
  return `GET ${res.url} -> ${res.status}`;
}

/** Asserts `res` is a Status error with HTTP code `code` and `reason`, and returns the body. */
export async function expectStatus(res: Response, code: number, reason: string): Promise<StatusBody> {
  const text = await res.text();
  expect(res.status, `${describe(res)}: ${text}`).toBe(code);
  expect(res.headers.get('content-type') ?? '', describe(res)).toContain('application/json');
  const body = JSON.parse(text) as StatusBody;
  expect(body, describe(res)).toMatchObject({ kind: 'Status', status: 'Failure', code, reason });
  expect(typeof body.message, describe(res)).toBe('string');
  return body;
}

/**
 * Checks the headers of a read served from a snapshot — its revision, and that the server is one
 * core/rules.ts allows for this request at this tier — and returns the revision.
 */
export function expectReadHeaders(target: ContractTarget, res: Response): number {
  const rv = res.headers.get('x-resource-version');
  expect(rv, `${describe(res)}: X-Resource-Version`).toMatch(/^[1-9][0-9]*$/);
  const allowed = allowedServers(target.tier, new URL(res.url), target.exposedPrefixes);
  expect(allowed, `${describe(res)}: X-Served-By by core/rules.ts`).toContain(res.headers.get('x-served-by'));
  return Number(rv);
}

/** The list body (API.md "Responses"). */
export interface ListBody<T> {
  kind: 'List';
  metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number };
  items: T[];
}

/** Asserts a 200 JSON response and returns its body with the served revision. */
export async function expectOk<T>(
  target: ContractTarget,
  res: Response,
): Promise<{ body: T; revision: number }> {
  const text = await res.text();
  expect(res.status, `${describe(res)}: ${text}`).toBe(200);
  const revision = expectReadHeaders(target, res);
  return { body: JSON.parse(text) as T, revision };
}

/** Asserts a 200 list whose `metadata.resourceVersion` agrees with `X-Resource-Version`. */
export async function expectList<T>(
  target: ContractTarget,
  res: Response,
): Promise<{ body: ListBody<T>; revision: number }> {
  const { body, revision } = await expectOk<ListBody<T>>(target, res);
  expect(body.kind).toBe('List');
  expect(body.metadata.resourceVersion, 'metadata.resourceVersion = X-Resource-Version').toBe(
    String(revision),
  );
  return { body, revision };
}
