/**
 * The relay's readiness checks (core/readiness.ts holds the named-check list): every prefix's
 * cache has loaded its first list (server.ts), and etcd has not been unreachable for longer than
 * `--ready-etcd-timeout-ms` (EtcdProbe, below). Others plug theirs in with
 * `relay.readiness.add({ name, check })`.
 */
import type { Clock } from '../core/types.ts';

/**
 * Whether etcd answers, by a cheap quorum read every `intervalMs` (a one-key, keys-only range).
 * A probe not answered within 2 × `intervalMs` failed. Unreachable means no successful probe for `unreachableAfterMs` — one lost request is not an
 * outage. (Its latency is in edgewatch_etcd_request_duration_seconds, with every other request.)
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
  }) {
    this.#clock = options.clock;
    this.#probe = options.probe;
    this.#intervalMs = options.intervalMs;
    this.#unreachableAfterMs = options.unreachableAfterMs;
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
    } catch (error) {
      this.#failingSince ??= started;
      // Only the error's class: etcd3 messages may carry endpoints, never secrets, but stay short.
      this.#lastError = error instanceof Error ? error.name : 'error';
    }
    if (this.#stopped) return;
    this.#cancel = this.#clock.setTimeout(() => void this.#tick(), this.#intervalMs);
  }
}
