/**
 * Readiness: whether this relay should get traffic now (`GET /readyz`), as a list of named checks
 * that any part of the relay can add to (the Kubernetes API server's `/readyz/<check>` shape).
 * Liveness (`/healthz`) is separate and stays cheap: a relay that is not ready is still alive.
 *
 * The relay's own checks (server.ts): every prefix's cache has loaded its first list, and etcd
 * has not been unreachable for longer than `--ready-etcd-timeout-ms`. Others plug theirs in with
 * `readiness.add({ name, check })` — a check returns `undefined` when fine, or why it is not.
 * A check must be synchronous and cheap: it runs on every `/readyz` and every metrics scrape.
 */
import type { Clock } from '../core/types.ts';

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

/**
 * Whether etcd answers, by a cheap quorum read every `intervalMs` (a one-key, keys-only range).
 * A probe not answered within 2 × `intervalMs` failed. Unreachable means no successful probe for `unreachableAfterMs` — one lost request is not an
 * outage. The probe's latency is reported through `observe`.
 *
 *     unknown ──ok──► reachable ──fail…──► failing (since t) ──now − t > unreachableAfterMs──► unreachable
 *                        ▲                                 │                                      │
 *                        └──────────────── ok ─────────────┴──────────────────────────────────────┘
 */
export class EtcdProbe {
  readonly #clock: Clock;
  readonly #probe: () => Promise<unknown>;
  readonly #intervalMs: number;
  readonly #unreachableAfterMs: number;
  readonly #observe: (seconds: number, ok: boolean) => void;
  /** When the current run of failures started (or the probe, before its first success). */
  #failingSince: number | undefined;
  #lastError = '';
  #cancel: (() => void) | undefined;
  #stopped = false;

  constructor(options: {
    clock: Clock;
    probe: () => Promise<unknown>;
    intervalMs: number;
    unreachableAfterMs: number;
    observe?: (seconds: number, ok: boolean) => void;
  }) {
    this.#clock = options.clock;
    this.#probe = options.probe;
    this.#intervalMs = options.intervalMs;
    this.#unreachableAfterMs = options.unreachableAfterMs;
    this.#observe = options.observe ?? (() => {});
    this.#failingSince = options.clock.now();
  }

  start(): void {
    void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancel?.();
  }

  /** True while the last probe succeeded. */
  get reachable(): boolean {
    return this.#failingSince === undefined;
  }

  /** The readiness check: fails once etcd has been unreachable longer than allowed. */
  check(): string | undefined {
    if (this.#failingSince === undefined) return undefined;
    const ms = this.#clock.now() - this.#failingSince;
    if (ms <= this.#unreachableAfterMs) return undefined;
    return `etcd unreachable for ${Math.round(ms / 1000)} s${this.#lastError ? ` (${this.#lastError})` : ''}`;
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    const started = this.#clock.now();
    try {
      await new Promise<void>((resolve, reject) => {
        const cancel = this.#clock.setTimeout(
          () => reject(new Error('etcd did not answer in time')),
          this.#intervalMs * 2,
        );
        this.#probe().then(
          () => {
            cancel();
            resolve();
          },
          (error: unknown) => {
            cancel();
            reject(error);
          },
        );
      });
      this.#failingSince = undefined;
      this.#lastError = '';
      this.#observe((this.#clock.now() - started) / 1000, true);
    } catch (error) {
      this.#failingSince ??= started;
      // Only the error's class: etcd3 messages may carry endpoints, never secrets, but stay short.
      this.#lastError = error instanceof Error ? error.name : 'error';
      this.#observe((this.#clock.now() - started) / 1000, false);
    }
    if (this.#stopped) return;
    this.#cancel = this.#clock.setTimeout(() => void this.#tick(), this.#intervalMs);
  }
}
