/**
 * The relay's side of a replica link's liveness: a `ping` every `pingIntervalMs`, and the link is
 * declared dead when nothing at all (a message or a pong) came from the replica for
 * `idleTimeoutMs`. Anything the replica sends counts, so a replica that is busy but reading and
 * answering is never cut; one that sends nothing for that long is gone or wedged.
 *
 *     heard() ──► alive ──(every pingIntervalMs)──► ping ──► alive
 *                   │
 *                   └── nothing heard for idleTimeoutMs ──► onSilent (once) ──► stopped
 */
import type { Cancel, Clock } from '../core/types.ts';

export interface HeartbeatOptions {
  readonly clock: Clock;
  readonly pingIntervalMs: number;
  readonly idleTimeoutMs: number;
  ping(): void;
  /** Called once, with how long the replica was silent; the heartbeat has stopped. */
  onSilent(silentMs: number): void;
}

export class Heartbeat {
  readonly #o: HeartbeatOptions;
  #lastHeard: number;
  #timer: Cancel | undefined;

  constructor(options: HeartbeatOptions) {
    this.#o = options;
    this.#lastHeard = options.clock.now();
    this.#timer = options.clock.setTimeout(() => this.#beat(), options.pingIntervalMs);
  }

  /** The replica sent something. */
  /** When anything was last heard from the replica (clock ms), for the dashboard. */
  get lastHeardAt(): number {
    return this.#lastHeard;
  }

  heard(): void {
    this.#lastHeard = this.#o.clock.now();
  }

  stop(): void {
    this.#timer?.();
    this.#timer = undefined;
  }

  #beat(): void {
    this.#timer = undefined;
    const { clock, idleTimeoutMs, pingIntervalMs } = this.#o;
    const silent = clock.now() - this.#lastHeard;
    if (silent >= idleTimeoutMs) {
      this.#o.onSilent(silent);
      return;
    }
    this.#o.ping();
    const next = Math.min(pingIntervalMs, idleTimeoutMs - silent);
    this.#timer = clock.setTimeout(() => this.#beat(), Math.max(1, next));
  }
}
