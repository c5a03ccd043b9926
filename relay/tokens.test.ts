import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ReadRequest } from '../core/request.ts';
import { sha256Hex } from '../core/sha256.ts';
import { silentLogger } from './log.ts';
import { TokenStore } from './tokens.ts';

const get = (key: string): ReadRequest => ({
  verb: 'get',
  key,
  exposedPrefix: '/registry/',
  consistency: { kind: 'any' },
});
const table = (token: string) =>
  JSON.stringify({ tokens: [{ name: 'reader', sha256: sha256Hex(token), scopes: ['/registry/a/'] }] });

describe('TokenStore', () => {
  it('takes the table inline from EDGEWATCH_TOKENS when there is no file', () => {
    const store = new TokenStore({ json: table('s3cret'), insecure: false, log: silentLogger });
    expect(store.authorizer.check('Bearer s3cret', get('/registry/a/x'))).toBe('reader');
    expect(() => store.authorizer.check('Bearer s3cret', get('/registry/b/x'))).toThrow(/may not read/);
    store.stop();
  });

  it('refuses a malformed table at start with a message that names the source, not the content', () => {
    const secretish = '{"tokens": [{"name": "x", "sha256": "hunter2"}]}';
    expect(() => new TokenStore({ json: secretish, insecure: false, log: silentLogger })).toThrow(
      /^EDGEWATCH_TOKENS: scope table: tokens\[0\]\.sha256/,
    );
    try {
      new TokenStore({ json: secretish, insecure: false, log: silentLogger });
    } catch (error) {
      expect(String(error)).not.toContain('hunter2');
    }
  });

  it('keeps the previous tokens when the file is replaced by one that does not parse, and takes a good one', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-tokens-unit-'));
    const file = path.join(dir, 'tokens.json');
    writeFileSync(file, table('first'));
    const store = new TokenStore({ file, insecure: false, log: silentLogger });
    try {
      writeFileSync(file, '{ not json');
      store.reload();
      expect(store.authorizer.check('Bearer first', get('/registry/a/x'))).toBe('reader');
      writeFileSync(file, table('second'));
      store.reload();
      expect(store.authorizer.check('Bearer second', get('/registry/a/x'))).toBe('reader');
      expect(() => store.authorizer.check('Bearer first', get('/registry/a/x'))).toThrow(/not valid/);
    } finally {
      store.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('write scopes', () => {
  const grants = JSON.stringify({
    tokens: [
      { name: 'rw', sha256: sha256Hex('rw'), scopes: ['/registry/'], writeScopes: ['/registry/apps/'] },
      { name: 'ro', sha256: sha256Hex('ro'), scopes: ['/registry/'] },
    ],
  });

  it('lets a token write only under its write scopes, whatever it may read', () => {
    const store = new TokenStore({ json: grants, insecure: false, log: silentLogger });
    const { authorizer } = store;
    expect(authorizer.checkWrite('Bearer rw', '/registry/apps/web')).toBe('rw');
    expect(() => authorizer.checkWrite('Bearer rw', '/registry/secrets/db')).toThrow(/may not write/);
    expect(() => authorizer.checkWrite('Bearer ro', '/registry/apps/web')).toThrow(/may not write/);
    expect(() => authorizer.checkWrite('Bearer nope', '/registry/apps/web')).toThrow(/not valid/);
    expect(() => authorizer.checkWrite(null, '/registry/apps/web')).toThrow(/required/);
    store.stop();
  });

  it('refuses write scopes that are not key prefixes', () => {
    const bad = JSON.stringify({
      tokens: [{ name: 'x', sha256: sha256Hex('x'), scopes: [], writeScopes: ['apps'] }],
    });
    expect(() => new TokenStore({ json: bad, insecure: false, log: silentLogger })).toThrow(/writeScopes/);
  });

  it('allows every write in local-development mode', () => {
    const store = new TokenStore({ insecure: true, log: silentLogger });
    expect(store.authorizer.checkWrite(null, '/anything')).toBe('insecure');
    store.stop();
  });
});
