/**
 * The relay's logs: core/log.ts's JSON lines, on stderr. Secrets never go through here.
 */
import { jsonLines, type Logger } from '../core/log.ts';

export type { LogFields, Logger } from '../core/log.ts';
export { silentLogger } from '../core/log.ts';

export function jsonLogger(
  component: string,
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  return jsonLines({ component, write: (line) => write(`${line}\n`) });
}
