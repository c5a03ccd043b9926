/**
 * Who may read what, at both tiers: without valid credentials, or outside the token's scopes,
 * every get, list, watch and replication attempt is refused (401/403); tokens reload without a
 * restart; a deployed Worker never trusts a relay in local-development mode; per-token rate
 * limits and URL size limits at the edge; and no secret ever reaches a log line or a Status.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket } from 'ws';
import { sha256Hex } from '../core/sha256.ts';
import type { Logger } from '../relay/log.ts';
import { type Stack, startStack, TEST_SECRET } from './helpers/stack.ts';
import { startWorker } from './helpers/worker.ts';

const PREFIX = '/registry/';
const CM_TOKEN = `cm-${randomBytes(16).toString('hex')}`;
const ALL_TOKEN = `all-${randomBytes(16).toString('hex')}`;
const LATER_TOKEN = `later-${randomBytes(16).toString('hex')}`;

const grant = (name: string, token: string, scopes: string[]) => ({ name, sha256: sha256Hex(token), scopes });

function writeTokens(file: string, grants: ReturnType<typeof grant>[]) {
  writeFileSync(`${file}.tmp`, JSON.stringify({ tokens: grants }));
  renameSync(`${file}.tmp`, file);
}

const auth = (token?: string): Record<string, string> => (token ? { Authorization: `Bearer ${token}` } : {});

/** Reads the first bytes of a watch (or the whole body), then lets go of it. */
async function probe(url: string, token?: string) {
  const controller = new AbortController();
  const res = await fetch(url, { headers: auth(token), signal: controller.signal });
  const type = res.headers.get('Content-Type') ?? '';
  const body = type.includes('ndjson') ? undefined : ((await res.json()) as Record<string, unknown>);
  controller.abort();
  return { status: res.status, servedBy: res.headers.get('X-Served-By'), body };
}

describe('credentials and scopes', () => {
  let stack: Stack;
  let dir: string;
  let tokensFile: string;
  const logLines: string[] = [];
  const log: Logger = {
    info: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
    warn: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
    error: (msg, f) => logLines.push(JSON.stringify({ msg, ...f })),
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-tokens-'));
    tokensFile = path.join(dir, 'tokens.json');
    writeTokens(tokensFile, [
      grant('configmaps-reader', CM_TOKEN, [`${PREFIX}configmaps/`]),
      grant('all-reader', ALL_TOKEN, [PREFIX]),
    ]);
    stack = await startStack({
      relayArgs: ['--tokens-file', tokensFile],
      workerVars: { EDGEWATCH_INSECURE_NO_AUTH: '', EDGE_RATE_LIMIT_RPS: '0' },
      log,
    });
    await stack.client.put(`${PREFIX}configmaps/app`).value('{"a":1}');
    await stack.client.put(`${PREFIX}secrets/db`).value('hunter2');
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const tiers = () => [
    { name: 'relay', url: stack.relay.url },
    { name: 'edge', url: stack.worker?.url ?? '' },
  ];

  it('refuses every read without a token or with a wrong one, at both tiers, with a 401 Status', async () => {
    for (const { url } of tiers()) {
      for (const token of [undefined, 'wrong-token', `${CM_TOKEN}x`]) {
        for (const p of [
          `/v1/kv${PREFIX}configmaps/app`,
          `/v1/list${PREFIX}configmaps/`,
          `/v1/list${PREFIX}configmaps/?watch=true`,
        ]) {
          const res = await probe(`${url}${p}`, token);
          expect(res.status, `${url}${p}`).toBe(401);
          expect(res.body).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
        }
      }
    }
  });

  it('serves a token what its scopes cover and refuses the rest with 403, never filtering', async () => {
    for (const { name, url } of tiers()) {
      const ok = await probe(`${url}/v1/kv${PREFIX}configmaps/app`, CM_TOKEN);
      expect(ok.status, name).toBe(200);
      expect((await probe(`${url}/v1/list${PREFIX}configmaps/`, CM_TOKEN)).status).toBe(200);
      expect((await probe(`${url}/v1/list${PREFIX}configmaps/?watch=true`, CM_TOKEN)).status).toBe(200);
      for (const p of [
        `/v1/kv${PREFIX}secrets/db`,
        `/v1/list${PREFIX}`,
        `/v1/list${PREFIX}?watch=true`,
        `/v1/list${PREFIX}secrets/?watch=true&resourceVersion=0`,
      ]) {
        const res = await probe(`${url}${p}`, CM_TOKEN);
        expect(res.status, `${name} ${p}`).toBe(403);
        expect(res.body).toMatchObject({ kind: 'Status', code: 403, reason: 'Forbidden' });
      }
      expect((await probe(`${url}/v1/list${PREFIX}`, ALL_TOKEN)).status).toBe(200);
    }
  });

  it('answers from the edge replica itself once it has the scope table', async () => {
    const res = await vi.waitFor(async () => {
      const r = await probe(`${stack.worker?.url}/v1/kv${PREFIX}configmaps/app?resourceVersion=0`, CM_TOKEN);
      expect(r.servedBy).toBe('edge');
      return r;
    }, 10_000);
    expect(res.status).toBe(200);
  });

  it('takes a new token into use without a restart, at the relay and at the edge', async () => {
    for (const { url } of tiers())
      expect((await probe(`${url}/v1/list${PREFIX}`, LATER_TOKEN)).status).toBe(401);
    writeTokens(tokensFile, [
      grant('configmaps-reader', CM_TOKEN, [`${PREFIX}configmaps/`]),
      grant('all-reader', ALL_TOKEN, [PREFIX]),
      grant('later', LATER_TOKEN, [PREFIX]),
    ]);
    for (const { url } of tiers()) {
      await expect
        .poll(async () => (await probe(`${url}/v1/list${PREFIX}`, LATER_TOKEN)).status, {
          message: `accepted the new token at ${url}`,
        })
        .toBe(200);
    }
  });

  it('refuses replication without the secret', async () => {
    for (const headers of [{}, { Authorization: 'Bearer nope' }, auth(CM_TOKEN)]) {
      const refused = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const ws = new WebSocket(`${stack.relay.url.replace(/^http/, 'ws')}/v1/replicate`, { headers });
        ws.on('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c.toString();
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        ws.on('open', () => reject(new Error('replication accepted without the secret')));
        ws.on('error', () => {});
      });
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.body)).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
    }
  });

  it('never writes a token or the replication secret into a log line or a Status', async () => {
    const statuses: string[] = [];
    for (const { url } of tiers()) {
      const res = await fetch(`${url}/v1/kv${PREFIX}secrets/db`, { headers: auth(CM_TOKEN) });
      statuses.push(await res.text());
      const bad = await fetch(`${url}/v1/kv${PREFIX}secrets/db`, { headers: auth(`${ALL_TOKEN}-typo`) });
      statuses.push(await bad.text());
    }
    expect(logLines.length).toBeGreaterThan(0);
    for (const secret of [CM_TOKEN, ALL_TOKEN, LATER_TOKEN, TEST_SECRET]) {
      for (const line of [...logLines, ...statuses]) expect(line).not.toContain(secret);
    }
  });
});

describe('a deployed Worker', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ worker: false }); // the relay runs in local-development mode
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('refuses to serve when the relay configured no tokens, even if the relay itself is open', async () => {
    const worker = await startWorker({
      relayUrl: stack.relay.url,
      replicationSecret: TEST_SECRET,
      vars: { EDGEWATCH_INSECURE_NO_AUTH: '' },
    });
    try {
      await stack.client.put(`${PREFIX}open`).value('v');
      const relay = await probe(`${stack.relay.url}/v1/kv${PREFIX}open`);
      expect(relay.status).toBe(200);
      for (const p of [`/v1/kv${PREFIX}open?resourceVersion=0`, `/v1/kv${PREFIX}open`, `/v1/list${PREFIX}`]) {
        const res = await probe(`${worker.url}${p}`);
        expect(res.status, p).toBe(401);
        expect(res.body).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
      }
    } finally {
      await worker.stop();
    }
  });

  it('limits each token to its rate, and unauthenticated clients by address, with 429 and Retry-After', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-tokens-'));
    const file = path.join(dir, 'tokens.json');
    writeTokens(file, [grant('a', CM_TOKEN, [PREFIX]), grant('b', ALL_TOKEN, [PREFIX])]);
    const secured = await startStack({
      relayArgs: ['--tokens-file', file],
      workerVars: { EDGEWATCH_INSECURE_NO_AUTH: '', EDGE_RATE_LIMIT_RPS: '1', EDGE_RATE_LIMIT_BURST: '3' },
    });
    try {
      const url = `${secured.worker?.url}/v1/kv${PREFIX}x?resourceVersion=0`;
      const codes: number[] = [];
      for (let i = 0; i < 6; i++) codes.push((await probe(url, CM_TOKEN)).status);
      expect(codes.slice(0, 3).every((c) => c !== 429)).toBe(true);
      expect(codes).toContain(429);
      const limited = await fetch(url, { headers: auth(CM_TOKEN) });
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('Retry-After'))).toBeGreaterThanOrEqual(1);
      expect(await limited.json()).toMatchObject({ kind: 'Status', code: 429, reason: 'TooManyRequests' });
      // Another token has its own bucket.
      expect((await probe(url, ALL_TOKEN)).status).not.toBe(429);
      // A client rotating garbage tokens is counted by its address, not given a bucket per token.
      const garbage: number[] = [];
      for (let i = 0; i < 8; i++) {
        const res = await fetch(url, {
          headers: {
            ...auth(`garbage-${i}-${randomBytes(8).toString('hex')}`),
            'CF-Connecting-IP': '203.0.113.7',
          },
        });
        garbage.push(res.status);
        await res.body?.cancel();
      }
      expect(garbage.slice(0, 3)).toEqual([401, 401, 401]);
      expect(garbage).toContain(429);
      const long = await fetch(`${secured.worker?.url}/v1/kv${PREFIX}${'k'.repeat(20_000)}`, {
        headers: auth(CM_TOKEN),
      });
      expect(long.status).toBe(414);
      expect(await long.json()).toMatchObject({ kind: 'Status', code: 414 });
    } finally {
      await secured.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
