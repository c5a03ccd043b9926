/**
 * Runs a fast-check property of batches of raw requests against one tier: each batch is sent
 * POOL requests at a time (a sliding window, so one slow 504 does not stall the other seven),
 * every exchange is judged and tallied, and a failing batch is reported as its failing requests
 * only, each a standalone repro, with the seed that replays the whole run.
 *
 * No shrinking (`endOnFailure`): shrinking re-sends whole batches over the network and would take
 * minutes, and the failing request is already isolated by the report.
 */
import fc from 'fast-check';
import type { RawOutcome, RawRequest, SendOptions, Target } from './http.ts';
import { send } from './http.ts';
import type { OracleWorld, Tally, UrlStack } from './oracle.ts';
import { judge } from './oracle.ts';

export interface FuzzRun {
  /** The tier's name, for the tally and the report. */
  readonly tier: string;
  readonly target: Target;
  readonly arbitrary: fc.Arbitrary<RawRequest>;
  /** Batches to send (one fast-check run each). */
  readonly runs: number;
  readonly batch: number;
  /** Requests in flight at once. */
  readonly pool: number;
  readonly seed: number;
  readonly send: SendOptions;
  readonly world: OracleWorld;
  readonly tally: Tally;
  /** Whose URL normalisation the tier's HTTP stack applies (see oracle.ts). */
  readonly urlStack: UrlStack;
}

/** Runs `fn` over `items` with at most `limit` in flight, keeping results in order. */
export async function pool<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

function clip(text: string, max = 300): string {
  return text.length <= max ? text : `${text.slice(0, max)}… (${text.length} chars)`;
}

/** A failing exchange as a standalone repro: the exact request target and headers, what came back. */
export function describeFailure(
  tier: string,
  request: RawRequest,
  outcome: RawOutcome,
  problems: readonly string[],
): string {
  const headers = Object.entries(request.headers).map(([k, v]) => `${k}: ${clip(v, 80)}`);
  const got =
    outcome.kind === 'response'
      ? `${outcome.status} ${String(outcome.headers['content-type'] ?? '')} ${clip(outcome.body)}`
      : JSON.stringify(outcome);
  return [
    `[${tier}] GET ${clip(JSON.stringify(request.target))} (read ${request.chunks} chunks of a stream)`,
    `  headers: ${headers.join(' | ') || '(none)'}`,
    `  got: ${got}`,
    `  problems: ${problems.join('; ')}`,
  ].join('\n');
}

/** Runs the fuzz; rejects on the first batch with a response that breaks the contract. */
export async function runFuzz(run: FuzzRun): Promise<void> {
  const property = fc.asyncProperty(
    fc.array(run.arbitrary, { minLength: run.batch, maxLength: run.batch }),
    async (batch) => {
      const outcomes = await pool(batch, run.pool, (request) => send(run.target, request, run.send));
      const failures: string[] = [];
      batch.forEach((request, i) => {
        const outcome = outcomes[i] as RawOutcome;
        const { bucket, problems } = judge(request, outcome, run.world, run.urlStack);
        run.tally.add(run.tier, bucket);
        if (problems.length > 0) failures.push(describeFailure(run.tier, request, outcome, problems));
      });
      run.tally.failures += failures.length;
      if (failures.length > 0) throw new Error(failures.join('\n'));
    },
  );
  const details = await fc.check(property, { numRuns: run.runs, seed: run.seed, endOnFailure: true });
  if (details.failed) {
    const error = details.errorInstance;
    throw new Error(
      `fuzz of the ${run.tier} failed (seed ${details.seed}, batch ${details.numRuns} of ${run.runs}):\n` +
        (error instanceof Error ? error.message : String(error)),
    );
  }
}
