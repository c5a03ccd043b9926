/**
 * Runs the kubectl on PATH against a tier, unchanged: no kubeconfig (`KUBECONFIG=/dev/null`),
 * `--server` pointing at the tier, a discovery cache of the test's own. The kubectl here is a
 * dispatcher that reads `/version` and runs the matching versioned binary.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Throws, naming the problem, when there is no usable kubectl: the tests must not pass without it. */
export async function requireKubectl(): Promise<string> {
  const result = await run(['version', '--client', '-o', 'json']);
  if (result.code !== 0) {
    throw new Error(
      `kubectl is required for these tests and is missing or broken (exit ${result.code}): ${result.stderr.trim()}`,
    );
  }
  return (JSON.parse(result.stdout) as { clientVersion: { gitVersion: string } }).clientVersion.gitVersion;
}

export function kubectlFor(server: string) {
  const cacheDir = mkdtempSync(join(tmpdir(), 'edgewatch-kubectl-'));
  const base = ['--server', server, '--cache-dir', cacheDir, '--request-timeout', '20s'];
  return {
    run: (args: string[]) => run([...base, ...args]),
    /** Starts `kubectl … -w` and hands its output lines over as they come. */
    watch: (args: string[]) => watchProcess([...base, ...args]),
  };
}

function run(args: string[]): Promise<KubectlResult> {
  return new Promise((resolve) => {
    execFile(
      'kubectl',
      args,
      { env: { ...process.env, KUBECONFIG: '/dev/null' }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 127;
        resolve({
          code,
          stdout,
          stderr: stderr || (error && typeof error.code !== 'number' ? String(error) : ''),
        });
      },
    );
  });
}

/** A running `kubectl -w`: `next(predicate)` resolves with the first new line matching it. */
function watchProcess(args: string[]) {
  const child = spawn('kubectl', args, { env: { ...process.env, KUBECONFIG: '/dev/null' } });
  const lines: string[] = [];
  let stderr = '';
  let read = 0;
  let wake: (() => void) | undefined;
  let exited = false;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  createInterface(child.stdout).on('line', (line) => {
    lines.push(line);
    wake?.();
  });
  child.on('exit', () => {
    exited = true;
    wake?.();
  });
  return {
    lines,
    async next(match: (line: string) => boolean, what: string, timeoutMs = 20_000): Promise<string> {
      const deadline = setTimeout(() => wake?.(), timeoutMs);
      try {
        const started = Date.now();
        for (;;) {
          while (read < lines.length) {
            const line = lines[read++] as string;
            if (match(line)) return line;
          }
          if (exited || Date.now() - started >= timeoutMs) {
            throw new Error(`kubectl -w never printed ${what}; output: ${JSON.stringify(lines)} ${stderr}`);
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      } finally {
        clearTimeout(deadline);
      }
    },
    stop(): Promise<void> {
      if (exited) return Promise.resolve();
      return new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    },
  };
}
