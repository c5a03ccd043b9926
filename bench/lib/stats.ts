/**
 * Latency samples and their summaries. Every loop here is bounded twice, by a count and by a wall
 * clock budget, so a slow machine shortens a run instead of hanging it; the summary says how many
 * samples it actually holds.
 */
import { performance } from 'node:perf_hooks';

/** Percentiles of one latency distribution, in milliseconds. */
export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
}

/** Nearest-rank percentile of sorted samples (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    n: sorted.length,
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p99: round(percentile(sorted, 99)),
    min: round(sorted[0] ?? Number.NaN),
    max: round(sorted[sorted.length - 1] ?? Number.NaN),
    mean: round(sorted.length ? sum / sorted.length : Number.NaN),
  };
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export interface LoopOptions {
  /** Untimed iterations first (JIT, caches, connections). */
  warmup: number;
  /** Timed iterations at most. */
  count: number;
  /** Stop early once this much wall time has passed (warm-up included). */
  maxMs: number;
  /** Printed with the progress lines. */
  label: string;
}

/** Runs `fn` sequentially and returns each timed iteration's duration in ms. */
export async function timeLoop(options: LoopOptions, fn: () => Promise<void>): Promise<number[]> {
  const start = performance.now();
  const deadline = start + options.maxMs;
  for (let i = 0; i < options.warmup && performance.now() < deadline; i++) await fn();
  const samples: number[] = [];
  let lastReport = performance.now();
  while (samples.length < options.count && performance.now() < deadline) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
    if (performance.now() - lastReport > 5_000) {
      progress(`  ${options.label}: ${samples.length}/${options.count}`);
      lastReport = performance.now();
    }
  }
  const s = summarize(samples);
  progress(`  ${options.label}: n=${s.n} p50=${s.p50} ms p99=${s.p99} ms`);
  return samples;
}

/** Progress goes to stderr so stdout stays clean. */
export function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Waits for `condition` (polled every `everyMs`), throwing after `timeoutMs`. */
export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 10,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
