/**
 * The Worker's logs: core/log.ts's JSON lines (the relay's shape), through `console.log`, `warn`
 * and `error` so `wrangler tail` and Workers Logs see each line's level and can index its fields.
 */
import { jsonLines, type LogFields, type Logger } from '../core/log.ts';

export function workerLogger(component: string, fields?: LogFields): Logger {
  return jsonLines({
    component,
    ...(fields ? { fields } : {}),
    write: (line, level) => {
      if (level === 'error') console.error(line);
      else if (level === 'warn') console.warn(line);
      else console.log(line);
    },
  });
}

/** The Worker's own lines (routing, settings); replicas make theirs with their name. */
export const edgeLog = workerLogger('edge');
