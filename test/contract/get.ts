/** Contract: `GET /v1/kv/{key}` (API.md "Which snapshot a read sees", get table; "Responses"). */
import { describe, expect, it } from 'vitest';
import { currentRevision, keyAt, type ModelObject, put } from './etcd-model.ts';
import { expectOk, expectReadHeaders, expectStatus, getUrl, rawUrl } from './http.ts';
import type { TargetRef } from './target.ts';

export function getContract(target: TargetRef): void {
  describe('get', () => {
    const ns = (name: string) => `${target().prefix}get-${name}/`;

    it('with resourceVersion unset sees a write etcd acknowledged before the request', async () => {
      const t = target();
      const key = `${ns('recent')}a`;
      for (const value of ['one', 'two', 'three']) {
        const revision = await put(t.etcd, key, value);
        const { body, revision: served } = await expectOk<ModelObject>(t, await fetch(getUrl(t, key)));
        expect(body).toEqual(await keyAt(t.etcd, key, revision));
        expect(served).toBeGreaterThanOrEqual(revision);
      }
    });

    it('with resourceVersion=0 answers etcd state at the revision it reports', async () => {
      const t = target();
      const key = `${ns('any')}a`;
      await put(t.etcd, key, 'x');
      const res = await fetch(getUrl(t, key, { resourceVersion: 0 }));
      const served = expectReadHeaders(t, res);
      const expected = await keyAt(t.etcd, key, served);
      if (expected === undefined) await expectStatus(res, 404, 'NotFound');
      else {
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual(expected);
      }
    });

    it('with resourceVersion=n for a revision just written sees that write', async () => {
      const t = target();
      const key = `${ns('n')}a`;
      const revision = await put(t.etcd, key, 'fresh');
      const { body, revision: served } = await expectOk<ModelObject>(
        t,
        await fetch(getUrl(t, key, { resourceVersion: revision })),
      );
      expect(served).toBeGreaterThanOrEqual(revision);
      expect(body).toEqual(await keyAt(t.etcd, key, revision));
    });

    it('with resourceVersion=n in the future answers 504 ResourceVersionTooLarge within the wait', async () => {
      const t = target();
      const future = (await currentRevision(t.etcd)) + 1000;
      const started = Date.now();
      const res = await fetch(getUrl(t, `${ns('future')}a`, { resourceVersion: future }));
      const status = await expectStatus(res, 504, 'Timeout');
      expect(Date.now() - started).toBeLessThan(t.waitTimeoutMs + 2_000);
      expect(status.details?.causes?.[0]?.reason).toBe('ResourceVersionTooLarge');
    });

    it('answers 404 NotFound with a Status and the served revision for an absent key', async () => {
      const t = target();
      const res = await fetch(getUrl(t, `${ns('absent')}nothing-here`));
      const served = expectReadHeaders(t, res);
      await expectStatus(res, 404, 'NotFound');
      expect(served).toBeGreaterThan(0);
    });

    it('sends ETag = modRevision and answers If-None-Match with 304 until the object changes', async () => {
      const t = target();
      const key = `${ns('etag')}a`;
      const first = await put(t.etcd, key, 'v1');
      const res = await fetch(getUrl(t, key));
      const { body } = await expectOk<ModelObject>(t, res);
      expect(body.modRevision).toBe(first);
      const etag = res.headers.get('etag');
      expect(etag?.replace(/^W\//, '').replaceAll('"', '')).toBe(String(first));

      const cached = await fetch(getUrl(t, key), { headers: { 'If-None-Match': etag ?? '' } });
      expect(cached.status).toBe(304);
      expectReadHeaders(t, cached);
      expect(await cached.text()).toBe('');

      const second = await put(t.etcd, key, 'v2');
      const changed = await fetch(getUrl(t, key), { headers: { 'If-None-Match': etag ?? '' } });
      const { body: after } = await expectOk<ModelObject>(t, changed);
      expect(after).toMatchObject({ value: 'v2', modRevision: second });
    });

    it('percent-decodes the key path: /v1/kv/…/a%2Fb is the key …/a/b', async () => {
      const t = target();
      const base = ns('encoded');
      const keys = [`${base}a/b`, `${base}ü x?#&`, `${base}100%`, `${base}emoji-😀`];
      for (const key of keys) await put(t.etcd, key, `value of ${key}`);

      const slash = await fetch(rawUrl(t, `/v1/kv${base}a%2Fb`));
      expect((await expectOk<ModelObject>(t, slash)).body.key).toBe(`${base}a/b`);
      for (const key of keys) {
        const { body } = await expectOk<ModelObject>(t, await fetch(getUrl(t, key)));
        expect(body).toEqual(await keyAt(t.etcd, key));
      }
    });

    it('returns a value that is not UTF-8 as valueBase64 and no value', async () => {
      const t = target();
      const key = `${ns('binary')}blob`;
      const bytes = Uint8Array.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x41]);
      await put(t.etcd, key, bytes);
      const { body } = await expectOk<ModelObject>(t, await fetch(getUrl(t, key)));
      expect(body.value).toBeUndefined();
      expect(body.valueBase64).toBe(Buffer.from(bytes).toString('base64'));
      expect(body).toEqual(await keyAt(t.etcd, key));
    });
  });
}
