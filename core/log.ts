/**
 * One log shape for both tiers: a JSON object per line — `time`, `level`, `component`, `msg`, then
 * the fields — so a relist, a reconnect or a replica's link loss is one greppable line carrying
 * the revisions involved, whether it came from the relay's stderr or from `wrangler tail` /
 * Workers Logs. Where a line goes is injected (`write`): the relay writes to stderr
 * (relay/log.ts), the Worker to `console.log`/`warn`/`error` (worker/log.ts), so the runtime's
 * own level filtering works. Secrets never go through here: fields carry names, revisions and
 * counts, never a token, password or value.
 */
import { type Clock, systemClock } from './types.ts';

export type LogFields = Record<string, string | number | boolean | undefined | null>;
export type LogLevel = 'info' | 'warn' | 'error';

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export interface JsonLoggerOptions {
  /** Who logs: `relay`, `edge`, `replica`. */
  readonly component: string;
  /** Where each line goes (without a trailing newline). */
  readonly write: (line: string, level: LogLevel) => void;
  /** Fields on every line (the replica's name, say). */
  readonly fields?: LogFields;
  readonly clock?: Clock;
}

export function jsonLines(options: JsonLoggerOptions): Logger {
  const clock = options.clock ?? systemClock;
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    const line = { time: new Date(clock.now()).toISOString(), level, component: options.component, msg };
    options.write(JSON.stringify({ ...line, ...options.fields, ...fields }), level);
  };
  return {
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
  };
}

/** A logger that drops everything (tests that assert on behaviour, not on logs). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
