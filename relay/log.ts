/**
 * Structured logs: one JSON object per line on stderr, so a relist or reconnect is one greppable
 * line carrying the revisions involved. Secrets never go through here.
 */
export type LogFields = Record<string, string | number | boolean | undefined | null>;

export interface Logger {
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

export function jsonLogger(
  component: string,
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  const emit = (level: string, msg: string, fields?: LogFields) =>
    write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`);
  return {
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warn', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
  };
}

/** A logger that drops everything (tests that assert on behaviour, not on logs). */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
