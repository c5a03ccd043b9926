/**
 * Readiness: whether a tier should get traffic now, as a list of named checks that any part of
 * the tier can add to (the Kubernetes API server's `/readyz` with its `[+]name ok` lines). The
 * relay answers it at `/readyz`, each edge replica at `/_replica/readyz/{prefix}`. Liveness
 * (`/healthz`) is separate and stays cheap: a tier that is not ready is still alive.
 *
 * A check returns `undefined` when fine, or why it is not. It must be synchronous and cheap: it
 * runs on every readiness request and every metrics scrape.
 */
export interface ReadinessCheck {
  /** Short and stable (`etcd`, `caches`, `self-check`); shown as `[-]name: reason`. */
  readonly name: string;
  /** `undefined` when ready, else a reason naming what is wrong (no secrets, no keys). */
  check(): string | undefined;
}

export interface ReadinessReport {
  readonly ready: boolean;
  readonly checks: readonly { name: string; ok: boolean; reason?: string }[];
}

export class Readiness {
  readonly #checks: ReadinessCheck[] = [];

  add(check: ReadinessCheck): void {
    this.#checks.push(check);
  }

  report(): ReadinessReport {
    const checks = this.#checks.map((c) => {
      let reason: string | undefined;
      try {
        reason = c.check();
      } catch (error) {
        reason = `check failed: ${error instanceof Error ? error.message : String(error)}`;
      }
      return reason === undefined ? { name: c.name, ok: true } : { name: c.name, ok: false, reason };
    });
    return { ready: checks.every((c) => c.ok), checks };
  }

  /** `/readyz`: 200 `ok`, or 503 `not ready: …` then one `[+]`/`[-]` line per check. */
  response(verbose: boolean): Response {
    const report = this.report();
    const lines = report.checks
      .filter((c) => verbose || !c.ok)
      .map((c) => (c.ok ? `[+]${c.name} ok` : `[-]${c.name}: ${c.reason}`));
    const failing = report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.reason}`);
    const head = report.ready ? 'ok' : `not ready: ${failing.join('; ')}`;
    const body = [head, ...lines].join('\n');
    return new Response(`${body}\n`, {
      status: report.ready ? 200 : 503,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' },
    });
  }
}
