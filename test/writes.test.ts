/**
 * Writes (API.md "Writes") over HTTP at the relay and through the edge, against real etcd and
 * workerd: PUT and DELETE as one transaction each, If-Match / If-None-Match preconditions (412),
 * the answer's revision, read-your-writes at the edge, write scopes separate from read scopes,
 * a Status for every bad input, and a write whose answer is lost is reported 503, never retried.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Etcd3 } from 'etcd3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base64ToBytes } from '../core/object.ts';
import { sha256Hex } from '../core/sha256.ts';
import type { KvObject } from '../core/types.ts';
import { parseConfig } from '../relay/config.ts';
import { silentLogger } from '../relay/log.ts';
import { type RunningRelay, startRelay } from '../relay/server.ts';
import { MAX_VALUE_BYTES } from '../relay/writes.ts';
import { type Stack, startStack } from './helpers/stack.ts';
import { startProxy, type TcpProxy } from './helpers/tcp-proxy.ts';

const PREFIX = '/registry/';
const WRITER = `w-${randomBytes(16).toString('hex')}`;
const READER = `r-${randomBytes(16).toString('hex')}`;
const APPS_WRITER = `a-${randomBytes(16).toString('hex')}`;

let stack: Stack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-writes-'));
  const tokensFile = path.join(dir, 'tokens.json');
  const grant = (name: string, token: string, scopes: string[], writeScopes?: string[]) => ({
    name,
    sha256: sha256Hex(token),
    scopes,
    ...(writeScopes ? { writeScopes } : {}),
  });
  writeFileSync(
    tokensFile,
    JSON.stringify({
      tokens: [
        grant('writer', WRITER, [PREFIX], [PREFIX]),
        grant('reader', READER, [PREFIX]),
        grant('apps-writer', APPS_WRITER, [], [`${PREFIX}apps/`]),
      ],
    }),
  );
  stack = await startStack({
    relayArgs: ['--tokens-file', tokensFile],
    workerVars: { EDGEWATCH_INSECURE_NO_AUTH: '', EDGE_RATE_LIMIT_RPS: '0' },
  });
});
afterAll(async () => {
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const tiers = () => [
  { name: 'relay', url: stack.relay.url },
  { name: 'edge', url: stack.worker?.url ?? '' },
];

interface Answer {
  status: number;
  rv: number | undefined;
  servedBy: string | null;
  etag: string | null;
  body: Record<string, unknown>;
}

async function send(
  url: string,
  method: string,
  options: { token?: string; body?: RequestInit['body']; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const res = await fetch(url, {
    method,
    headers: {
      ...(options.token ? { Authorization: `Bearer ${options.token}` } : {}),
      ...options.headers,
    },
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  const text = await res.text();
  const rv = res.headers.get('X-Resource-Version');
  return {
    status: res.status,
    rv: rv === null ? undefined : Number(rv),
    servedBy: res.headers.get('X-Served-By'),
    etag: res.headers.get('ETag'),
    body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
  };
}

const put = (base: string, key: string, value: RequestInit['body'], headers: Record<string, string> = {}) =>
  send(`${base}/v1/kv${key}`, 'PUT', { token: WRITER, body: value, headers });
const del = (base: string, key: string, headers: Record<string, string> = {}) =>
  send(`${base}/v1/kv${key}`, 'DELETE', { token: WRITER, headers });

async function etcdKey(client: Etcd3, key: string) {
  const res = await client.kv.range({ key: Buffer.from(key) });
  return { kv: res.kvs[0], revision: Number(res.header.revision) };
}

describe('PUT and DELETE', () => {
  it('writes the body as the value and answers the object as etcd stored it, at its revision', async () => {
    for (const { name, url } of tiers()) {
      const key = `${PREFIX}configmaps/${name}-put`;
      const created = await put(url, key, '{"replicas":3}');
      expect(created.status, name).toBe(200);
      expect(created.servedBy).toBe('relay');
      const { kv } = await etcdKey(stack.client, key);
      expect(kv?.value.toString()).toBe('{"replicas":3}');
      expect(created.body).toEqual({
        key,
        value: '{"replicas":3}',
        createRevision: Number(kv?.create_revision),
        modRevision: Number(kv?.mod_revision),
        version: 1,
      });
      expect(created.rv).toBe(Number(kv?.mod_revision));
      expect(created.etag).toBe(`"${kv?.mod_revision}"`);

      const updated = await put(url, key, '{"replicas":4}');
      expect(updated.body).toMatchObject({ version: 2, createRevision: created.body.createRevision });
      expect(updated.rv).toBeGreaterThan(created.rv ?? 0);
      expect(updated.body.modRevision).toBe(updated.rv);
    }
  });

  it('keeps the bytes as given: a value that is not UTF-8 comes back as valueBase64', async () => {
    const bytes = new Uint8Array([0xff, 0x00, 0xfe, 0x41]);
    const key = `${PREFIX}bin/blob`;
    const res = await put(stack.worker?.url ?? '', key, bytes);
    expect(res.status).toBe(200);
    expect(base64ToBytes(String(res.body.valueBase64))).toEqual(bytes);
    expect(new Uint8Array((await etcdKey(stack.client, key)).kv?.value ?? [])).toEqual(bytes);
    const empty = await put(stack.relay.url, `${PREFIX}bin/empty`, '');
    expect(empty.body).toMatchObject({ value: '' });
  });

  it('deletes and answers the last state with modRevision = the deleting revision; 404 when absent', async () => {
    for (const { name, url } of tiers()) {
      const key = `${PREFIX}configmaps/${name}-delete`;
      const created = await put(url, key, 'v1');
      const deleted = await del(url, key);
      expect(deleted.status, name).toBe(200);
      const { kv, revision } = await etcdKey(stack.client, key);
      expect(kv).toBeUndefined();
      expect(deleted.rv).toBeGreaterThan(created.rv ?? 0);
      expect(deleted.rv).toBeLessThanOrEqual(revision);
      expect(deleted.body).toEqual({
        key,
        value: 'v1',
        createRevision: created.body.createRevision,
        modRevision: deleted.rv,
        version: 0,
      });
      const again = await del(url, key);
      expect(again.status).toBe(404);
      expect(again.body).toMatchObject({ kind: 'Status', code: 404, reason: 'NotFound' });
    }
  });
});

describe('preconditions', () => {
  it('If-Match with a stale modRevision is 412 and changes nothing; the current one writes', async () => {
    for (const { name, url } of tiers()) {
      const key = `${PREFIX}configmaps/${name}-cas`;
      const first = await put(url, key, 'a');
      const second = await put(url, key, 'b', { 'If-Match': `"${first.rv}"` });
      expect(second.status, name).toBe(200);
      const stale = await put(url, key, 'c', { 'If-Match': `"${first.rv}"` });
      expect(stale.status).toBe(412);
      expect(stale.body).toMatchObject({ kind: 'Status', code: 412, reason: 'PreconditionFailed' });
      expect(String(stale.body.message)).toContain(`modRevision is ${second.rv}`);
      expect((await etcdKey(stack.client, key)).kv?.value.toString()).toBe('b');
      expect((await put(url, key, 'd', { 'If-Match': '*' })).status).toBe(200);
      expect((await put(url, `${key}-absent`, 'd', { 'If-Match': '*' })).status).toBe(412);
      expect((await etcdKey(stack.client, `${key}-absent`)).kv).toBeUndefined();
    }
  });

  it('If-None-Match: * creates only: 412 when the key exists', async () => {
    for (const { name, url } of tiers()) {
      const key = `${PREFIX}configmaps/${name}-create`;
      const created = await put(url, key, 'first', { 'If-None-Match': '*' });
      expect(created.status, name).toBe(200);
      expect(created.body.createRevision).toBe(created.body.modRevision);
      const again = await put(url, key, 'second', { 'If-None-Match': '*' });
      expect(again.status).toBe(412);
      expect(again.body).toMatchObject({ kind: 'Status', code: 412, reason: 'PreconditionFailed' });
      expect((await etcdKey(stack.client, key)).kv?.value.toString()).toBe('first');
    }
  });

  it('DELETE with If-Match deletes only that version', async () => {
    for (const { name, url } of tiers()) {
      const key = `${PREFIX}configmaps/${name}-cad`;
      const first = await put(url, key, 'a');
      const second = await put(url, key, 'b');
      const stale = await del(url, key, { 'If-Match': `"${first.rv}"` });
      expect(stale.status, name).toBe(412);
      expect(stale.body).toMatchObject({ kind: 'Status', code: 412, reason: 'PreconditionFailed' });
      expect((await etcdKey(stack.client, key)).kv?.value.toString()).toBe('b');
      const ok = await del(url, key, { 'If-Match': `"${second.rv}"` });
      expect(ok.status).toBe(200);
      expect(ok.body).toMatchObject({ key, value: 'b', version: 0, modRevision: ok.rv });
      expect((await del(url, key, { 'If-Match': `"${second.rv}"` })).status).toBe(412);
    }
  });
});

describe('read-your-writes', () => {
  it('a read at the edge with resourceVersion = the write revision sees the write', async () => {
    const edge = stack.worker?.url ?? '';
    const key = `${PREFIX}configmaps/ryw`;
    // The replica is live (it answered before), so each read races the replication of the write.
    await send(`${edge}/v1/kv${key}?resourceVersion=0`, 'GET', { token: READER });
    for (let i = 0; i < 20; i++) {
      const written = await put(edge, key, `v${i}`);
      expect(written.status).toBe(200);
      const read = await send(`${edge}/v1/kv${key}?resourceVersion=${written.rv}`, 'GET', { token: READER });
      expect(read.status).toBe(200);
      expect(read.body).toEqual(written.body);
      expect(read.rv).toBeGreaterThanOrEqual(written.rv ?? Number.POSITIVE_INFINITY);
      const list = await send(`${edge}/v1/list${PREFIX}configmaps/?resourceVersion=${written.rv}`, 'GET', {
        token: READER,
      });
      const items = list.body.items as KvObject[];
      expect(items.find((o) => o.key === key)).toEqual(written.body);
    }
    const deleted = await del(edge, key);
    const gone = await send(`${edge}/v1/kv${key}?resourceVersion=${deleted.rv}`, 'GET', { token: READER });
    expect(gone.status).toBe(404);
  });
});

describe('write scopes', () => {
  it('refuses a write without a write scope with 403, and without a valid token with 401, at both tiers', async () => {
    for (const { name, url } of tiers()) {
      const key = `${PREFIX}configmaps/${name}-scoped`;
      const reader = await send(`${url}/v1/kv${key}`, 'PUT', { token: READER, body: 'x' });
      expect(reader.status, name).toBe(403);
      expect(reader.body).toMatchObject({ kind: 'Status', code: 403, reason: 'Forbidden' });
      expect(String(reader.body.message)).toContain('may not write');
      const outside = await send(`${url}/v1/kv${key}`, 'DELETE', { token: APPS_WRITER });
      expect(outside.status).toBe(403);
      for (const token of [undefined, 'not-a-token']) {
        const res = await send(`${url}/v1/kv${key}`, 'PUT', { ...(token ? { token } : {}), body: 'x' });
        expect(res.status).toBe(401);
        expect(res.body).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
      }
      expect((await etcdKey(stack.client, key)).kv).toBeUndefined();
    }
  });

  it('a write scope does not grant reading, nor a read scope writing', async () => {
    const key = `${PREFIX}apps/web`;
    const written = await send(`${stack.relay.url}/v1/kv${key}`, 'PUT', { token: APPS_WRITER, body: 'w' });
    expect(written.status).toBe(200);
    for (const { url } of tiers()) {
      expect((await send(`${url}/v1/kv${key}`, 'GET', { token: APPS_WRITER })).status).toBe(403);
      expect((await send(`${url}/v1/kv${key}`, 'GET', { token: READER })).status).toBe(200);
    }
  });
});

describe('bad input', () => {
  it('answers each malformed or refused write with a Status and the right code, at both tiers', async () => {
    const key = `${PREFIX}configmaps/bad`;
    const cases: {
      what: string;
      method: string;
      path: string;
      headers?: Record<string, string>;
      code: number;
    }[] = [
      {
        what: 'If-Match not a revision',
        method: 'PUT',
        path: key,
        headers: { 'If-Match': '"abc"' },
        code: 400,
      },
      { what: 'If-Match 0', method: 'PUT', path: key, headers: { 'If-Match': '"0"' }, code: 400 },
      { what: 'If-Match list', method: 'PUT', path: key, headers: { 'If-Match': '"1", "2"' }, code: 400 },
      { what: 'weak If-Match', method: 'PUT', path: key, headers: { 'If-Match': 'W/"1"' }, code: 400 },
      {
        what: 'If-None-Match a tag',
        method: 'PUT',
        path: key,
        headers: { 'If-None-Match': '"5"' },
        code: 400,
      },
      {
        what: 'If-None-Match on DELETE',
        method: 'DELETE',
        path: key,
        headers: { 'If-None-Match': '*' },
        code: 400,
      },
      {
        what: 'both preconditions',
        method: 'PUT',
        path: key,
        headers: { 'If-Match': '"3"', 'If-None-Match': '*' },
        code: 400,
      },
      { what: 'rv is no precondition', method: 'PUT', path: `${key}?resourceVersion=3`, code: 400 },
      { what: 'bad percent-encoding', method: 'PUT', path: `${PREFIX}a%zz`, code: 400 },
      { what: 'outside the exposed prefixes', method: 'PUT', path: '/other/key', code: 403 },
      { what: 'the root', method: 'DELETE', path: '/', code: 403 },
    ];
    for (const { url } of tiers()) {
      for (const c of cases) {
        const res = await send(`${url}/v1/kv${c.path}`, c.method, {
          token: WRITER,
          body: c.method === 'PUT' ? 'x' : undefined,
          ...(c.headers ? { headers: c.headers } : {}),
        } as Parameters<typeof send>[2]);
        expect(res.status, `${url} ${c.what}`).toBe(c.code);
        expect(res.body, c.what).toMatchObject({ kind: 'Status', status: 'Failure', code: c.code });
      }
      const list = await send(`${url}/v1/list${PREFIX}`, 'PUT', { token: WRITER, body: 'x' });
      expect(list.status).toBe(405);
      expect(list.body).toMatchObject({ kind: 'Status', code: 405, reason: 'MethodNotAllowed' });
    }
    const post = await send(`${stack.relay.url}/v1/kv${key}`, 'POST', { token: WRITER, body: 'x' });
    expect(post.status).toBe(405);
    expect((await etcdKey(stack.client, key)).kv).toBeUndefined();
  });

  it('refuses a value over the limit with 413, whether or not the length was announced', async () => {
    const key = `${PREFIX}configmaps/huge`;
    const big = new Uint8Array(MAX_VALUE_BYTES + 1).fill(0x61);
    for (const { url } of tiers()) {
      const res = await put(url, key, big);
      expect(res.status, url).toBe(413);
      expect(res.body).toMatchObject({ kind: 'Status', code: 413, reason: 'RequestEntityTooLarge' });
      // A streamed body has no Content-Length: the relay counts as it reads.
      const streamed = await fetch(`${url}/v1/kv${key}`, {
        method: 'PUT',
        headers: { Authorization: `Bearer ${WRITER}` },
        body: new Blob([big]).stream(),
        duplex: 'half',
      } as RequestInit);
      expect(streamed.status, `${url} streamed`).toBe(413);
      await streamed.body?.cancel();
    }
    expect((await put(stack.relay.url, key, new Uint8Array(MAX_VALUE_BYTES).fill(0x62))).status).toBe(200);
    expect((await etcdKey(stack.client, key)).kv?.value.length).toBe(MAX_VALUE_BYTES);
  });
});

describe('hostile writes', () => {
  it('answers every generated write with a Status and a 4xx or 200, never a 5xx, at both tiers', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        'registry',
        'configmaps',
        'fuzz',
        '',
        '..',
        '.',
        '%zz',
        '%00',
        '%2F',
        '%E2%82',
        'a%20b',
        '~',
      ),
      fc.string({ maxLength: 8 }).map(encodeURIComponent),
    );
    const header = fc.oneof(
      fc.constantFrom('*', '"1"', '"999999999"', 'W/"1"', '"1", "2"', '""', '"-1"', '"01"', '"abc"', ' * '),
      fc.string({ maxLength: 12, unit: fc.constantFrom(...' "*,/W0123456789abcdef'.split('')) }),
    );
    const request = fc.record({
      tier: fc.constantFrom(0, 1),
      method: fc.constantFrom('PUT', 'DELETE', 'POST', 'PATCH'),
      root: fc.constantFrom(
        '/v1/kv/registry/fuzz/',
        '/v1/kv/',
        '/v1/list/registry/',
        '/v1/kv/other/',
        '/v1/',
      ),
      path: fc.array(segment, { maxLength: 3 }),
      query: fc.constantFrom('', '?resourceVersion=1', '?limit=2', '?x=y', '?watch=true'),
      token: fc.constantFrom(WRITER, READER, APPS_WRITER, 'garbage', undefined),
      ifMatch: fc.option(header, { nil: undefined }),
      ifNoneMatch: fc.option(header, { nil: undefined }),
      body: fc.uint8Array({ maxLength: 64 }),
    });
    const allowed = new Set([200, 400, 401, 403, 404, 405, 412]);
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const base = tiers()[r.tier]?.url ?? '';
        const headers: Record<string, string> = {};
        if (r.token) headers.Authorization = `Bearer ${r.token}`;
        if (r.ifMatch !== undefined) headers['If-Match'] = r.ifMatch;
        if (r.ifNoneMatch !== undefined) headers['If-None-Match'] = r.ifNoneMatch;
        const res = await fetch(`${base}${r.root}${r.path.join('/')}${r.query}`, {
          method: r.method,
          headers,
          ...(r.method === 'DELETE' ? {} : { body: r.body }),
        });
        const text = await res.text();
        expect(
          allowed,
          `${r.method} ${r.root}${r.path.join('/')}${r.query} → ${res.status} ${text}`,
        ).toContain(res.status);
        if (res.status !== 200) expect(JSON.parse(text)).toMatchObject({ kind: 'Status', code: res.status });
      }),
      { numRuns: 300, seed: 15 },
    );
    // Both tiers still write, and the relay timed each write's transaction.
    for (const { url } of tiers()) expect((await put(url, `${PREFIX}fuzz/after`, 'ok')).status).toBe(200);
    const metrics = await (await fetch(`${stack.relay.url}/metrics`)).text();
    const timed = /edgewatch_etcd_request_duration_seconds_count\{[^}]*operation="write"[^}]*\} (\d+)/.exec(
      metrics,
    );
    expect(Number(timed?.[1])).toBeGreaterThan(0);
  });
});

describe('a write whose answer is lost', () => {
  let relay: RunningRelay | undefined;
  let proxy: TcpProxy | undefined;
  afterAll(async () => {
    proxy?.resume();
    await relay?.stop();
    await proxy?.close();
  });

  it('is reported 503 and applied at most once: the relay never retries it', async () => {
    proxy = await startProxy(Number(new URL(stack.etcd.endpoint).port));
    const config = parseConfig(
      ['--port', '0', '--etcd', `http://127.0.0.1:${proxy.port}`, '--prefix', PREFIX, '--insecure-no-auth'],
      {},
    );
    relay = await startRelay(config, silentLogger);
    await relay.ready();
    const key = `${PREFIX}configmaps/lost`;
    const before = await send(`${relay.url}/v1/kv${key}`, 'PUT', { body: 'v1' });
    expect(before.status).toBe(200);
    // Bytes stop flowing between the relay and etcd: the write's answer never arrives.
    proxy.pause();
    const lost = await send(`${relay.url}/v1/kv${key}`, 'PUT', { body: 'v2' });
    expect(lost.status).toBe(503);
    expect(lost.body).toMatchObject({ kind: 'Status', code: 503, reason: 'ServiceUnavailable' });
    expect(String(lost.body.message)).toContain('may or may not have been applied');
    proxy.resume();
    // Whatever reached etcd, it was applied at most once: version 1 (not applied) or 2 (once).
    const after = await send(`${relay.url}/v1/kv${key}`, 'PUT', { body: 'v3', headers: { 'If-Match': '*' } });
    expect(after.status).toBe(200);
    const version = Number(after.body.version);
    expect([2, 3]).toContain(version);
  }, 40_000);
});
