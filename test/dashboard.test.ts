/**
 * The relay's /dashboard in a real headless Chromium (test/helpers/browser.ts), while a real edge
 * replica in workerd streams from the relay over a real etcd: the page shows live numbers, they
 * are the ones /_relay/status gives, it keeps updating itself, and a screenshot is saved under
 * .cache/dashboard.png.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { EdgeRow } from '../relay/metrics.ts';
import { launchChromium } from './helpers/browser.ts';
import { type Stack, startStack } from './helpers/stack.ts';

interface Status {
  watchers: number;
  edges: EdgeRow[];
  prefixes: {
    prefix: string;
    revision: number;
    objects: number;
    subscribers: number;
    historyStart: number;
  }[];
}

describe('the relay dashboard in a real browser', () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let replica = '';
  const status = async () => (await (await fetch(`${stack.relay.url}/_relay/status`)).json()) as Status;
  const edge = (p: string) => `${stack.worker?.url}${p}`;
  /** The text of one cell: `row` is the row's selector, `field` its data-field. */
  const cell = (row: string, field: string) => page.locator(`${row} [data-field="${field}"]`).textContent();

  beforeAll(async () => {
    // Heartbeats every 500 ms so the replica's own report (watchers) reaches the relay quickly.
    stack = await startStack({ workerVars: { EDGE_HEARTBEAT_MS: '500' } });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('shows each prefix and edge replica with the numbers /_relay/status gives, and updates itself', async () => {
    // A replica runs: a read at the edge starts it; a watch there gives it a watcher to report.
    const first = await stack.client.put('/registry/dash/a').value('1').exec();
    const read = await vi.waitFor(async () => {
      const res = await fetch(edge(`/v1/kv/registry/dash/a?resourceVersion=${first.header.revision}`));
      expect(res.headers.get('X-Served-By'), 'served by the replica').toBe('edge');
      return res;
    }, 15_000);
    replica = read.headers.get('X-Edge-Replica') ?? '';
    const watch = new AbortController();
    const stream = await fetch(edge('/v1/list/registry/dash/?watch=true&resourceVersion=0'), {
      signal: watch.signal,
    });
    expect(stream.status).toBe(200);

    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${stack.relay.url}/dashboard?interval=300`);
    const edgeRow = `#edges tr[data-replica="${replica}"]`;
    const prefixRow = '#prefixes tr[data-prefix="/registry/"]';

    // A write the page must show: the prefix and the replica at its revision, the replica caught up
    // and reporting its one watcher.
    const put = await stack.client.put('/registry/dash/b').value('2').exec();
    const revision = String(put.header.revision);
    await expect.poll(() => cell(prefixRow, 'revision'), { timeout: 15_000 }).toBe(revision);
    await expect.poll(() => cell(edgeRow, 'revision'), { timeout: 15_000 }).toBe(revision);
    await expect.poll(() => cell(edgeRow, 'lag-revisions'), { timeout: 15_000 }).toBe('0');
    await expect.poll(() => cell(edgeRow, 'watchers'), { timeout: 15_000 }).toBe('1');
    await expect.poll(() => cell(edgeRow, 'self-check'), { timeout: 15_000 }).toBe('ok');

    // Nothing changes now: every number on the page is the one /_relay/status gives.
    const s = await status();
    const p = s.prefixes.find((x) => x.prefix === '/registry/');
    const e = s.edges.find((x) => x.replica === replica);
    expect(p).toBeDefined();
    expect(e).toBeDefined();
    expect(await cell(prefixRow, 'revision')).toBe(String(p?.revision));
    expect(await cell(prefixRow, 'objects')).toBe(String(p?.objects));
    expect(await cell(prefixRow, 'subscribers')).toBe(String(p?.subscribers));
    expect(await cell(prefixRow, 'history-start')).toBe(String(p?.historyStart));
    expect(await cell(edgeRow, 'location')).toBe(e?.location);
    expect(await cell(edgeRow, 'prefix')).toBe(e?.prefix);
    expect(await cell(edgeRow, 'revision')).toBe(String(e?.revision));
    expect(await cell(edgeRow, 'lag-revisions')).toBe(String(e?.lagRevisions));
    expect(await cell(edgeRow, 'watchers')).toBe(String(e?.watchers));
    expect(await cell(edgeRow, 'self-check')).toBe(e?.selfCheck);
    expect(await page.locator('[data-field="replica-count"]').textContent()).toBe(String(s.edges.length));
    expect(await page.locator('[data-field="readiness"]').textContent()).toBe('ready');
    expect(await cell(edgeRow, 'last-message')).toMatch(/ago$/);

    // It keeps updating by itself.
    const updates = Number(await page.locator('body').getAttribute('data-updates'));
    await expect
      .poll(async () => Number(await page.locator('body').getAttribute('data-updates')))
      .toBeGreaterThan(updates + 1);
    watch.abort();
  });

  it('shows events/s and list latency from the metrics, and draws them', async () => {
    // Writes and lists while the page polls: each poll window that saw some shows a rate.
    await vi.waitFor(
      async () => {
        for (let i = 0; i < 10; i++) await stack.client.put(`/registry/dash/rate-${i}`).value(String(i));
        for (let i = 0; i < 5; i++) await fetch(`${stack.relay.url}/v1/list/registry/dash/`);
        const rate = Number(await page.locator('[data-field="events-per-second"]').textContent());
        expect(rate, 'events/s shown').toBeGreaterThan(0);
        expect(await page.locator('[data-field="list-latency"]').textContent()).toMatch(
          /^\d+(\.\d+)? ms \/ \d+(\.\d+)? ms$/,
        );
      },
      { timeout: 20_000, interval: 50 },
    );
    await expect
      .poll(() => page.locator('[data-field="chart-events-max"]').textContent())
      .toMatch(/^\(max [1-9]\d*\)$/);
    mkdirSync(path.join('.cache'), { recursive: true });
    await page.screenshot({ path: path.join('.cache', 'dashboard.png'), fullPage: true });
  });
});
