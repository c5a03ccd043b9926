/**
 * The shape every benchmark section returns, so run.ts can write one JSON file, one markdown
 * table and the SVG plots without knowing what each section measured.
 */
import type { Summary } from './stats.ts';

/** One headline number, reported next to the target (reported, never asserted). */
export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The target as the issue states it, e.g. "≥ 10×". */
  readonly target?: string;
  /** Whether the value meets the target; absent when there is no target. */
  readonly met?: boolean;
  readonly note?: string;
}

export interface Plot {
  /** File name under bench/results/. */
  readonly file: string;
  readonly title: string;
  readonly svg: string;
}

export interface SectionResult {
  readonly id: number;
  readonly title: string;
  readonly figures: Figure[];
  /** Latency distributions and other raw summaries, by name. */
  readonly distributions: Record<string, Summary>;
  /** Anything else worth keeping (parameters, counts). */
  readonly details: Record<string, unknown>;
  readonly plots: Plot[];
  readonly notes: string[];
  readonly elapsedMs: number;
  readonly error?: string;
}

/** What a section gets: its size settings and a place to print progress. */
export interface SectionContext {
  readonly quick: boolean;
  /** Wall-clock budget for the section; loops shorten to fit. */
  readonly budgetMs: number;
}

/** A mutable builder the sections fill in. */
export class SectionBuilder {
  readonly figures: Figure[] = [];
  readonly distributions: Record<string, Summary> = {};
  readonly details: Record<string, unknown> = {};
  readonly plots: Plot[] = [];
  readonly notes: string[] = [];
  readonly #started = Date.now();

  constructor(
    readonly id: number,
    readonly title: string,
  ) {}

  figure(f: Figure): void {
    this.figures.push(f);
  }

  build(error?: unknown): SectionResult {
    return {
      id: this.id,
      title: this.title,
      figures: this.figures,
      distributions: this.distributions,
      details: this.details,
      plots: this.plots,
      notes: this.notes,
      elapsedMs: Date.now() - this.#started,
      ...(error !== undefined
        ? { error: error instanceof Error ? (error.stack ?? error.message) : String(error) }
        : {}),
    };
  }
}
