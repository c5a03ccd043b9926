/**
 * `npm test`: the Worker's generated types are current, typecheck (Node and Worker sides), lint,
 * then every unit and integration test (real etcd, relay and workerd). Stops at the first failing step; ends with one summary line.
 * Extra arguments go to vitest, e.g. `npm test -- core/store.test.ts`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name: string) => path.join(root, 'node_modules/.bin', name);
const report = path.join(root, '.cache/vitest-report.json');
mkdirSync(path.dirname(report), { recursive: true });

const steps: [string, string, string[]][] = [
  ['Worker types match wrangler.toml', 'npm', ['run', '--silent', 'types:worker', '--', '--check']],
  ['typecheck (relay, core, tests)', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']],
  ['typecheck (worker)', bin('tsc'), ['-p', 'worker/tsconfig.json', '--noEmit']],
  ['typecheck (client, with browser types only)', bin('tsc'), ['-p', 'client/tsconfig.json', '--noEmit']],
  ['lint and format', bin('biome'), ['check', '.']],
  [
    'tests',
    bin('vitest'),
    ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  ],
];

const started = Date.now();
for (const [name, command, args] of steps) {
  const t0 = Date.now();
  process.stdout.write(`\n== ${name}\n`);
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  if (result.status !== 0) {
    process.stdout.write(`== ${name} failed after ${seconds} s\n`);
    summarize();
    process.exit(result.status ?? 1);
  }
  process.stdout.write(`== ${name} passed in ${seconds} s\n`);
}
process.stdout.write(`\nall steps passed in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
summarize();

/** The plain closing line CI reads: "tests: N passed, N failed". */
function summarize() {
  if (!existsSync(report)) return;
  const r = JSON.parse(readFileSync(report, 'utf8')) as { numPassedTests: number; numFailedTests: number };
  process.stdout.write(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed\n`);
}
