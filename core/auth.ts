/**
 * Who may read and write what: client bearer tokens with their read scopes, checked the same way
 * at the relay and at the edge, and their write scopes, checked by the relay (the only tier that
 * writes; the edge forwards writes untouched).
 *
 * A token is stored only as the SHA-256 of its text (`sha256Hex`), with a list of key prefixes
 * it may get, list and watch. The relay owns the table (a file, reloaded on change) and
 * replicates it to every edge replica over the replication stream, so the edge checks each
 * request itself without a round trip. A list or watch whose prefix is wider than every scope
 * of the token is refused (403), never silently filtered. Write scopes are a separate list: a
 * token that may read a prefix may not write it unless a write scope says so, and vice versa.
 *
 * `insecure` is the local-development mode: no token is checked. A tier only honours it when
 * it was enabled on that tier itself (the relay's `--insecure-no-auth`, the Worker's
 * `EDGEWATCH_INSECURE_NO_AUTH`), so a deployed Worker never trusts a relay that says so.
 */

import { Forbidden, Unauthorized } from './errors.ts';
import { isUnder } from './keys.ts';
import type { ReadRequest } from './request.ts';
import { sha256Hex } from './sha256.ts';

/** One client token: its hash, the key prefixes it may read and those it may write. */
export interface TokenGrant {
  /** A label for logs and audits; never the token. */
  readonly name: string;
  /** Lower-case hex SHA-256 of the token text. */
  readonly sha256: string;
  /** Key prefixes (each starting with `/`) the token may get, list and watch. */
  readonly scopes: readonly string[];
  /** Key prefixes the token may put and delete under (relay/writes.ts); absent: none. */
  readonly writeScopes?: readonly string[];
}

/** The whole table, as the relay loads it and replicates it. */
export interface ScopeTable {
  /** No client credentials are checked (local development only). */
  readonly insecure: boolean;
  readonly tokens: readonly TokenGrant[];
}

export const EMPTY_SCOPE_TABLE: ScopeTable = Object.freeze({ insecure: false, tokens: [] });

/** The longest token text looked at; longer ones are refused before hashing. */
const MAX_TOKEN_LENGTH = 4096;

/**
 * A compiled table: O(1) lookup by hash. `check` throws `Unauthorized` (no or unknown token) or
 * `Forbidden` (outside the token's scopes) and returns the grant's name.
 */
export class Authorizer {
  readonly #byHash: ReadonlyMap<string, TokenGrant>;
  readonly #insecure: boolean;

  /** `allowInsecure`: this tier itself was started in local-development mode. */
  constructor(table: ScopeTable, allowInsecure: boolean) {
    this.#insecure = table.insecure && allowInsecure;
    this.#byHash = new Map(table.tokens.map((t) => [t.sha256, t]));
  }

  get insecure(): boolean {
    return this.#insecure;
  }

  /** Checks the `Authorization` header against the key or prefix the request reads. */
  check(authorization: string | null, request: ReadRequest): string {
    if (this.#insecure) return 'insecure';
    const grant = this.#grant(authorization);
    const target = request.verb === 'get' ? request.key : request.prefix;
    if (!grant.scopes.some((scope) => isUnder(target, scope))) {
      const what = request.verb === 'get' ? 'key' : `${request.verb} prefix`;
      throw new Forbidden(`the token may not read the ${what} ${JSON.stringify(target)}`);
    }
    return grant.name;
  }

  /** Checks the `Authorization` header against a key the request writes (put or delete). */
  checkWrite(authorization: string | null, key: string): string {
    if (this.#insecure) return 'insecure';
    const grant = this.#grant(authorization);
    if (!(grant.writeScopes ?? []).some((scope) => isUnder(key, scope))) {
      throw new Forbidden(`the token may not write the key ${JSON.stringify(key)}`);
    }
    return grant.name;
  }

  /** The grant of a valid bearer token; throws `Unauthorized` otherwise. */
  #grant(authorization: string | null): TokenGrant {
    if (this.#byHash.size === 0) {
      throw new Unauthorized('no client tokens are configured: this tier serves no one');
    }
    const token = bearerToken(authorization);
    if (token === undefined) throw new Unauthorized('a bearer token is required');
    const grant = this.#byHash.get(sha256Hex(token));
    if (grant === undefined) throw new Unauthorized('the bearer token is not valid');
    return grant;
  }
}

/** The token in `Authorization: Bearer <token>`, or undefined. */
export function bearerToken(header: string | null): string | undefined {
  if (header === null || header.length > MAX_TOKEN_LENGTH + 7) return undefined;
  const match = /^Bearer +(\S+)$/i.exec(header.trim());
  return match?.[1];
}

/**
 * Validates a table received from outside (a file, the replication stream). Throws an `Error`
 * naming the problem; never includes token material in the message.
 */
export function parseScopeTable(value: unknown): ScopeTable {
  if (typeof value !== 'object' || value === null) throw new Error('scope table: not an object');
  const { insecure, tokens } = value as { insecure?: unknown; tokens?: unknown };
  if (insecure !== undefined && typeof insecure !== 'boolean') throw new Error('scope table: insecure');
  if (!Array.isArray(tokens)) throw new Error('scope table: tokens must be a list');
  const grants = tokens.map((t, i): TokenGrant => {
    const { name, sha256, scopes, writeScopes } = (t ?? {}) as {
      name?: unknown;
      sha256?: unknown;
      scopes?: unknown;
      writeScopes?: unknown;
    };
    if (typeof name !== 'string' || name.length === 0 || name.length > 256) {
      throw new Error(`scope table: tokens[${i}].name`);
    }
    if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
      throw new Error(`scope table: tokens[${i}].sha256 must be 64 lower-case hex digits`);
    }
    if (!isPrefixList(scopes)) {
      throw new Error(`scope table: tokens[${i}].scopes must be key prefixes starting with '/'`);
    }
    if (writeScopes !== undefined && !isPrefixList(writeScopes)) {
      throw new Error(`scope table: tokens[${i}].writeScopes must be key prefixes starting with '/'`);
    }
    const grant: TokenGrant = { name, sha256, scopes: Object.freeze([...(scopes as string[])]) };
    return Object.freeze(
      writeScopes === undefined ? grant : { ...grant, writeScopes: Object.freeze([...writeScopes]) },
    );
  });
  return Object.freeze({ insecure: insecure === true, tokens: Object.freeze(grants) });
}

function isPrefixList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((s) => typeof s === 'string' && s.startsWith('/'));
}
