/**
 * `wrangler deploy` would accept the Worker: wrangler itself bundles it against wrangler.toml
 * (Durable Object binding, SQLite class migration, compatibility date and flags) without
 * uploading anything.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

describe('wrangler deploy', () => {
  it('bundles the Worker with its Durable Object binding in a dry run', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'edgewatch-deploy-'));
    try {
      const result = spawnSync(
        path.join(root, 'node_modules/.bin/wrangler'),
        ['deploy', '--dry-run', '--outdir', out],
        {
          cwd: root,
          encoding: 'utf8',
          env: {
            ...process.env,
            WRANGLER_SEND_METRICS: 'false',
            CLOUDFLARE_CF_FETCH_ENABLED: 'false',
            CI: 'true',
          },
          timeout: 60_000,
        },
      );
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toContain('env.REPLICA (Replica)');
      expect(result.stdout).toContain('--dry-run: exiting now.');
      expect(readdirSync(out)).toContain('index.js');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
