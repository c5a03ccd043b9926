/** Contract: error responses (API.md "Errors"): Status bodies, matching codes, never a 500. */
import { describe, expect, it } from 'vitest';
import { put } from './etcd-model.ts';
import { expectStatus, getUrl, listUrl, rawUrl } from './http.ts';
import { type TargetRef, UNEXPOSED_PREFIX } from './target.ts';

export function errorsContract(target: TargetRef): void {
  describe('errors', () => {
    const ns = (name: string) => `${target().prefix}errors-${name}/`;

    it('answers 403 Forbidden for keys and list prefixes outside the exposed prefix', async () => {
      const t = target();
      const outside = `${UNEXPOSED_PREFIX}a`;
      await put(t.etcd, outside, 'secret');
      const exposedWithoutSlash = t.prefix.replace(/\/$/, '');
      const urls = [
        getUrl(t, outside),
        listUrl(t, UNEXPOSED_PREFIX),
        listUrl(t, UNEXPOSED_PREFIX, { watch: true }),
        // Wider than the exposed prefix: would include keys outside it.
        rawUrl(t, '/v1/list/'),
        listUrl(t, '/'),
        listUrl(t, exposedWithoutSlash),
        listUrl(t, t.prefix.slice(0, 2)),
        rawUrl(t, '/v1/list/', { watch: true }),
      ];
      for (const url of urls) await expectStatus(await fetch(url), 403, 'Forbidden');
    });

    it('answers 400 BadRequest for a resourceVersion that is not a non-negative integer', async () => {
      const t = target();
      for (const rv of ['-1', 'abc', '1.5', '1e3', ' 1', '0x10', '99999999999999999999999']) {
        await expectStatus(
          await fetch(getUrl(t, `${ns('rv')}a`, { resourceVersion: rv })),
          400,
          'BadRequest',
        );
        await expectStatus(await fetch(listUrl(t, ns('rv'), { resourceVersion: rv })), 400, 'BadRequest');
        await expectStatus(
          await fetch(listUrl(t, ns('rv'), { resourceVersion: rv, watch: true })),
          400,
          'BadRequest',
        );
      }
    });

    it('answers 400 BadRequest for an unknown resourceVersionMatch', async () => {
      const t = target();
      for (const match of ['Newest', 'exact', 'notolderthan', 'Any']) {
        await expectStatus(
          await fetch(listUrl(t, ns('match'), { resourceVersion: 1, resourceVersionMatch: match })),
          400,
          'BadRequest',
        );
      }
    });

    it('answers 400 BadRequest for a limit that is not a non-negative integer', async () => {
      const t = target();
      for (const limit of ['-1', 'ten', '1.5', '1e2']) {
        await expectStatus(await fetch(listUrl(t, ns('limit'), { limit })), 400, 'BadRequest');
      }
    });

    it('answers 400 BadRequest for bad percent-encoding in the path', async () => {
      const t = target();
      const base = t.prefix.replace(/\/$/, '');
      for (const path of [
        `/v1/kv${base}/%`,
        `/v1/kv${base}/%zz`,
        `/v1/kv${base}/a%2`,
        `/v1/kv${base}/%C3%28`,
        `/v1/kv${base}/%FF`,
        `/v1/list${base}/%E0%A4`,
      ]) {
        await expectStatus(await fetch(rawUrl(t, path)), 400, 'BadRequest');
      }
    });

    it('never answers a malformed request with a 5xx, and always with a Status body', async () => {
      const t = target();
      const base = t.prefix.replace(/\/$/, '');
      const paths = [
        `/v1/kv${base}/a?resourceVersion=&resourceVersion=1`,
        `/v1/kv${base}/a?resourceVersion=1&resourceVersion=2`,
        `/v1/kv${base}/a?watch=true`,
        `/v1/list${base}/?limit=10&continue=`,
        `/v1/list${base}/?continue=%00%01`,
        `/v1/list${base}/?watch=maybe`,
        `/v1/list${base}/?watch=true&sendInitialEvents=true`,
        `/v1/list${base}/?watch=true&sendInitialEvents=yes&resourceVersionMatch=NotOlderThan`,
        `/v1/list${base}/?watch=true&timeoutSeconds=-5`,
        `/v1/list${base}/?sendInitialEvents=true`,
        `/v1/list${base}/?limit=${'9'.repeat(400)}`,
        `/v1/list${base}/?resourceVersion=${'1'.repeat(5000)}`,
        `/v1/kv${base}/${'%25'.repeat(2000)}`,
        `/v1/kv${base}/%00`,
        '/v1/kv',
        '/v1/kv/',
        '/v1/list',
      ];
      for (const path of paths) {
        const res = await fetch(rawUrl(t, path));
        const text = await res.text();
        expect(res.status, `GET ${path} -> ${res.status} ${text}`).toBeLessThan(500);
        if (res.status >= 400) {
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            expect.fail(`GET ${path} -> ${res.status}: body is not a JSON Status: ${text}`);
          }
          expect(body, `GET ${path}`).toMatchObject({ kind: 'Status', status: 'Failure', code: res.status });
        }
      }
    });
  });
}
