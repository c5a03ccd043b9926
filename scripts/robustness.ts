/**
 * `npm run robustness -- --seed S --duration D [--edge] [--cluster]`: one seeded robustness run
 * (issue 5, robustness/run.ts). D is in seconds (or with a unit: `90s`, `3m`). `--edge` reads and
 * watches through the edge Worker too and adds the edge faults; `--cluster` runs a 3-member etcd
 * and adds the leader kill. Every fault kind the setup allows is scheduled. Prints progress while it
 * runs and ends with ONE summary line; on a violation it names the file with the seed and a
 * minimal history (under .data/robustness/) and exits 1.
 */
import { runRobustness, summaryLine } from '../robustness/run.ts';

function parseArgs(argv: string[]): { seed: number; durationMs: number; edge: boolean; cluster: boolean } {
  let seed = Math.floor(Math.random() * 2 ** 31);
  let durationMs = 60_000;
  let edge = false;
  let cluster = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === '--edge') edge = true;
    else if (arg === '--cluster') cluster = true;
    else if (arg === '--seed' && value !== undefined) {
      seed = Number(value);
      i++;
    } else if (arg === '--duration' && value !== undefined) {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value);
      if (!m) throw new Error(`bad --duration ${value}`);
      const n = Number(m[1]);
      durationMs = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
      i++;
    } else throw new Error(`unknown argument ${arg} (use --seed S --duration D [--edge] [--cluster])`);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error('--seed must be a non-negative integer');
  if (!(durationMs >= 5_000 && durationMs <= 3_600_000))
    throw new Error('--duration must be between 5 s and 1 h');
  return { seed, durationMs, edge, cluster };
}

let args: ReturnType<typeof parseArgs>;
try {
  args = parseArgs(process.argv.slice(2));
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
