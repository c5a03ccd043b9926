/** Writes a run: one JSON file per run plus `latest.json`, `latest.md` and the SVG plots. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Machine } from './machine.ts';
import type { SectionResult } from './result.ts';

export interface RunResult {
  readonly machine: Machine;
  readonly args: { only: number[]; quick: boolean };
  readonly elapsedMs: number;
  readonly sections: SectionResult[];
}

export function writeResults(dir: string, run: RunResult): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const write = (name: string, text: string) => {
    writeFileSync(path.join(dir, name), text);
    written.push(path.join(dir, name));
  };
  const json = `${JSON.stringify(run, (k, v) => (k === 'svg' ? undefined : v), 2)}\n`;
  write(`run-${run.machine.at.replace(/[:.]/g, '-')}.json`, json);
  write('latest.json', json);
  for (const section of run.sections) for (const plot of section.plots) write(plot.file, plot.svg);
  write('latest.md', markdown(run));
  return written;
}

function cell(v: unknown): string {
  return String(v).replace(/\|/g, '\\|');
}

export function markdown(run: RunResult): string {
  const m = run.machine;
  const lines: string[] = [
    '# edgewatch benchmark results',
    '',
    `Measured ${m.at} on ${m.cores} × ${m.cpuModel}, ${m.memoryMB} MB RAM, Linux ${m.kernel}; ` +
      `Node ${m.node}, etcd ${m.etcd}, miniflare ${m.miniflare}, git ${m.gitRev}${m.gitDirty ? ' (dirty tree)' : ''}. ` +
      `Loopback only; etcd, relay, workerd and the benchmark client share the cores. ` +
      `${run.args.quick ? '`--quick` run. ' : ''}Total ${(run.elapsedMs / 1000).toFixed(0)} s.`,
    '',
    "Targets are the issue's; they are reported, not asserted. Ratios compare against etcd measured in the same run.",
    '',
    '| # | figure | value | target | met | detail |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const s of run.sections) {
    if (s.error)
      lines.push(`| ${s.id} | ${cell(s.title)}: **failed** | | | | ${cell(s.error.split('\n')[0])} |`);
    for (const f of s.figures) {
      const met = f.met === undefined ? '' : f.met ? 'yes' : '**no**';
      lines.push(
        `| ${s.id} | ${cell(f.name)} | ${cell(f.value)} ${cell(f.unit)} | ${cell(f.target ?? '')} | ${met} | ${cell(f.note ?? '')} |`,
      );
    }
  }
  for (const s of run.sections) {
    lines.push('', `## ${s.id}. ${s.title}`, '', `(${(s.elapsedMs / 1000).toFixed(1)} s)`, '');
    const dists = Object.entries(s.distributions);
    if (dists.length > 0) {
      lines.push(
        '| distribution | n | p50 ms | p90 ms | p99 ms | max ms |',
        '| --- | --- | --- | --- | --- | --- |',
      );
      for (const [name, d] of dists)
        lines.push(`| ${cell(name)} | ${d.n} | ${d.p50} | ${d.p90} | ${d.p99} | ${d.max} |`);
      lines.push('');
    }
    const details = Object.entries(s.details);
    if (details.length > 0) {
      for (const [k, v] of details)
        lines.push(`- ${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
      lines.push('');
    }
    for (const n of s.notes) lines.push(`> ${n}`, '');
    for (const p of s.plots) lines.push(`![${p.title}](${p.file})`, '');
    if (s.error) lines.push('```', s.error, '```', '');
  }
  return `${lines.join('\n')}\n`;
}
