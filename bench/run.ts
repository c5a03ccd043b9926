/**
 * `npm run bench [-- --only 1,6] [--quick]`: edgewatch measured against etcd on this machine.
 *
 * Sections (issue 6): 1 LIST from cache vs etcd, 2 put → visible at edge replicas, 3 keeping up
 * with etcd's max write rate, 4 memory per cached object, 5 replica sync and warm restart,
 * 6 edge GET vs forwarded vs etcd. Each section starts its own etcd (and relay, and workerd) and
 * tears them down, so one failing section does not poison the next; a failure is recorded in the
 * results and the run goes on. Results: bench/results/latest.{json,md} + SVG plots.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchFanout } from './fanout.ts';
import { benchKeepUp } from './keepup.ts';
import { describeMachine, repoRoot } from './lib/machine.ts';
import { writeResults } from './lib/report.ts';
import type { SectionContext, SectionResult } from './lib/result.ts';
import { progress } from './lib/stats.ts';
import { benchList } from './list.ts';
import { benchMemory } from './memory.ts';
import { benchPropagation } from './propagation.ts';
import { benchSync } from './sync.ts';
import { benchTiers } from './tiers.ts';

type Section = (ctx: SectionContext) => Promise<SectionResult>;

/** Section id → runner and its share of the ~10 minute budget (ms, full run). */
const SECTIONS: ReadonlyMap<number, { run: Section; budgetMs: number }> = new Map([
  [1, { run: benchList, budgetMs: 180_000 }],
  [2, { run: benchPropagation, budgetMs: 90_000 }],
  [3, { run: benchKeepUp, budgetMs: 90_000 }],
  [4, { run: benchMemory, budgetMs: 90_000 }],
  [5, { run: benchSync, budgetMs: 90_000 }],
  [6, { run: benchTiers, budgetMs: 60_000 }],
  [7, { run: benchFanout, budgetMs: 240_000 }],
]);

function parseOptions(argv: string[]): { only: number[]; quick: boolean } {
  const { values } = parseArgs({
    args: argv,
    options: { only: { type: 'string' }, quick: { type: 'boolean', default: false } },
    strict: true,
    allowPositionals: false,
  });
  const only =
    values.only === undefined ? [...SECTIONS.keys()] : values.only.split(',').map((s) => Number(s.trim()));
  for (const id of only)
    if (!SECTIONS.has(id)) throw new Error(`no section ${id}; have ${[...SECTIONS.keys()]}`);
  return { only: only.sort((a, b) => a - b), quick: values.quick };
}

const args = parseOptions(process.argv.slice(2));
const machine = describeMachine();
progress(
  `bench: sections ${args.only.join(',')}${args.quick ? ' (quick)' : ''}; ${machine.cores} cores, node ${machine.node}, etcd ${machine.etcd}, git ${machine.gitRev}`,
);
const started = Date.now();
const sections: SectionResult[] = [];
for (const id of args.only) {
  const section = SECTIONS.get(id);
  if (!section) continue;
  progress(`[${id}] starting`);
  const budgetMs = args.quick ? section.budgetMs / 4 : section.budgetMs;
  let result: SectionResult;
  try {
    result = await section.run({ quick: args.quick, budgetMs });
  } catch (error) {
    result = {
      id,
      title: `section ${id}`,
      figures: [],
      distributions: {},
      details: {},
      plots: [],
      notes: [],
      elapsedMs: 0,
      error: error instanceof Error ? (error.stack ?? error.message) : String(error),
    };
  }
  sections.push(result);
  progress(
    `[${id}] done in ${(result.elapsedMs / 1000).toFixed(1)} s${result.error ? ` — FAILED: ${result.error.split('\n')[0]}` : ''}`,
  );
  for (const f of result.figures) {
    progress(
      `    ${f.name}: ${f.value} ${f.unit}${f.target ? ` (target ${f.target}${f.met === undefined ? '' : f.met ? ': met' : ': MISSED'})` : ''}`,
    );
  }
}
const files = writeResults(path.join(repoRoot, 'bench/results'), {
  machine,
  args,
  elapsedMs: Date.now() - started,
  sections,
});
progress(`bench: wrote ${files.map((f) => path.relative(repoRoot, f)).join(', ')}`);
process.exit(sections.some((s) => s.error) ? 1 : 0);
