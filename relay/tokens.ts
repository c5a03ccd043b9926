/**
 * The relay's client tokens: a JSON file of `{ name, sha256, scopes, writeScopes? }`
 * (core/auth.ts), hashed at rest, reloaded whenever the file changes — no restart — and pushed to
 * every edge replica. The edge checks read scopes itself; write scopes are checked here, when the
 * edge forwards a write (relay/writes.ts).
 *
 * A file that fails to parse keeps the previous table (and logs why, never the content), so a
 * half-written edit cannot lock every client out or let everyone in.
 */
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { Authorizer, parseScopeTable, type ScopeTable } from '../core/auth.ts';
import { M, type MetricsSink, noMetrics } from '../core/metrics.ts';
import type { Logger } from './log.ts';

export interface TokenStoreOptions {
  /** The tokens file; unset means no tokens (every read refused unless `insecure`). */
  file?: string | undefined;
  /** The table as JSON text (from the environment); used when there is no file. Not reloaded. */
  json?: string | undefined;
  /** Local development: no credentials checked. */
  insecure: boolean;
  log: Logger;
  /** How often the file's mtime is checked. Default 1 s. */
  pollMs?: number;
  /** Counts reloads (edgewatch_token_reloads_total{result}). */
  metrics?: MetricsSink;
}

export class TokenStore {
  readonly #options: TokenStoreOptions;
  #table: ScopeTable;
  #authorizer: Authorizer;
  readonly #listeners = new Set<(table: ScopeTable) => void>();

  constructor(options: TokenStoreOptions) {
    this.#options = options;
    this.#table = { insecure: options.insecure, tokens: [] };
    if (options.file) this.#load(true);
    else if (options.json) this.#table = this.#parse(options.json, 'EDGEWATCH_TOKENS');
    this.#authorizer = new Authorizer(this.#table, options.insecure);
    if (options.file) {
      watchFile(options.file, { interval: options.pollMs ?? 1000, persistent: false }, () =>
        this.#load(false),
      );
    }
    if (options.insecure) {
      options.log.warn(
        'INSECURE: client credentials are not checked (local development mode): anyone may read and write',
      );
    } else if (this.#table.tokens.length === 0) {
      options.log.warn('no client tokens configured: every read and write will be refused with 401');
    }
  }

  get table(): ScopeTable {
    return this.#table;
  }

  get authorizer(): Authorizer {
    return this.#authorizer;
  }

  /** Calls `listener` with the new table after every successful reload. */
  onChange(listener: (table: ScopeTable) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Reads the file again now (the relay also does on SIGHUP, and by itself when the file changes). */
  reload(): void {
    this.#load(false);
  }

  stop(): void {
    if (this.#options.file) unwatchFile(this.#options.file);
    this.#listeners.clear();
  }

  /** Parses a table; the error names the source and the problem, never the content. */
  #parse(text: string, source: string): ScopeTable {
    try {
      const parsed = parseScopeTable(JSON.parse(text));
      return { insecure: this.#options.insecure, tokens: parsed.tokens };
    } catch (error) {
      const why =
        error instanceof SyntaxError ? 'not valid JSON' : error instanceof Error ? error.message : 'invalid';
      throw new Error(`${source}: ${why}`);
    }
  }

  #load(initial: boolean): void {
    const file = this.#options.file;
    if (!file) return;
    let table: ScopeTable;
    try {
      table = this.#parse(readFileSync(file, 'utf8'), `tokens file ${file}`);
    } catch (error) {
      if (initial) throw error;
      const why = error instanceof Error ? error.message : 'invalid';
      this.#options.log.error('tokens file not reloaded; keeping the previous tokens', { file, why });
      (this.#options.metrics ?? noMetrics).count(M.tokenReloads, { result: 'error' });
      return;
    }
    this.#table = table;
    this.#authorizer = new Authorizer(table, this.#options.insecure);
    if (!initial) (this.#options.metrics ?? noMetrics).count(M.tokenReloads, { result: 'ok' });
    this.#options.log.info(initial ? 'tokens loaded' : 'tokens reloaded', {
      file,
      tokens: table.tokens.length,
    });
    for (const listener of this.#listeners) listener(table);
  }
}
