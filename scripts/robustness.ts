/**
 * `npm run robustness -- --seed S --duration D [--edge] [--cluster]`: one seeded robustness run
 * (issue 5, robustness/run.ts). D is in seconds (or with a unit: `90s`, `3m`). `--edge` reads and
 * watches through the edge Worker too and adds the edge faults; `--cluster` runs a 3-member etcd
 * and adds the leader kill. Every fault kind the setup allows is scheduled. Prints progress while it
 * runs and ends with ONE summary line; on a violation it names the file with the seed and a
 * minimal history (under .data/robustness/) and exits 1.
 */
import { parseArgs } from 'node:util';
import { runRobustness, summaryLine } from '../robustness/run.ts';

function parseOptions(argv: string[]): { seed: number; durationMs: number; edge: boolean; cluster: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: 'string' },
      duration: { type: 'string', default: '60' },
      edge: { type: 'boolean', default: false },
      cluster: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error('--seed must be a non-negative integer');
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(values.duration);
  if (!m) throw new Error(`bad --duration ${values.duration} (seconds, or with a unit: 90s, 3m)`);
  const n = Number(m[1]);
  const durationMs = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
  if (!(durationMs >= 5_000 && durationMs <= 3_600_000))
    throw new Error('--duration must be between 5 s and 1 h');
  return { seed, durationMs, edge: values.edge, cluster: values.cluster };
}

let args: ReturnType<typeof parseOptions>;
try {
  args = parseOptions(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`robustness: ${(error as Error).message}\n`);
  process.exit(2);
}
process.stdout.write(
  `robustness: seed ${args.seed}, ${args.durationMs / 1000} s${args.edge ? ', with the edge' : ''}${args.cluster ? ', 3-member etcd' : ''}\n`,
);
const summary = await runRobustness({ ...args, log: (line) => process.stdout.write(`${line}\n`) });
for (const v of summary.violations.slice(0, 20)) process.stdout.write(`VIOLATION ${v.kind}: ${v.message}\n`);
if (summary.violations.length > 20) process.stdout.write(`… and ${summary.violations.length - 20} more\n`);
if (summary.artifact) process.stdout.write(`seed and minimal history: ${summary.artifact}\n`);
process.stdout.write(`${summaryLine(summary)}\n`);
process.exit(summary.violations.length > 0 ? 1 : 0);
