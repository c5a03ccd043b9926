/** Where a result was measured: every result file carries it, since only ratios travel. */
import { execFileSync } from 'node:child_process';
import { cpus, freemem, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdBinary } from '../../scripts/lib/etcd-process.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Machine {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryMB: number;
  readonly freeMemoryMB: number;
  readonly kernel: string;
  readonly node: string;
  readonly etcd: string;
  readonly miniflare: string;
  readonly gitRev: string;
  readonly gitDirty: boolean;
  readonly at: string;
}

export function describeMachine(): Machine {
  const run = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, {
        cwd: repoRoot,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      return 'unknown';
    }
  };
  const etcdLine = run(etcdBinary(), ['--version']).split('\n')[0] ?? 'unknown';
  let miniflare = 'unknown';
  try {
    miniflare = run(process.execPath, ['-p', "require('miniflare/package.json').version"]);
  } catch {
    // keep unknown
  }
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryMB: Math.round(totalmem() / 2 ** 20),
    freeMemoryMB: Math.round(freemem() / 2 ** 20),
    kernel: run('uname', ['-r']),
    node: process.version,
    etcd: etcdLine.replace(/^etcd Version:\s*/, ''),
    miniflare,
    gitRev: run('git', ['rev-parse', '--short', 'HEAD']),
    gitDirty: run('git', ['status', '--porcelain']).length > 0,
    at: new Date().toISOString(),
  };
}
