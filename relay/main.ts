/** `npm run relay -- --etcd http://127.0.0.1:2379 --prefix /registry/`: the relay as a process. */
import { parseConfig } from './config.ts';
import { jsonLogger } from './log.ts';
import { startRelay } from './server.ts';

const log = jsonLogger('relay');
let config: ReturnType<typeof parseConfig>;
try {
  config = parseConfig(process.argv.slice(2), process.env);
} catch (error) {
  process.stderr.write(`relay: ${(error as Error).message}\n`);
  process.exit(2);
}
let relay: Awaited<ReturnType<typeof startRelay>>;
try {
  relay = await startRelay(config, log);
} catch (error) {
  process.stderr.write(`relay: ${(error as Error).message}\n`);
  process.exit(2);
}
const shutdown = (signal: string) => {
  log.info('stopping', { signal });
  relay.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGINT', () => shutdown('SIGINT'));
process.once('SIGTERM', () => shutdown('SIGTERM'));
// `kill -HUP` re-reads the tokens file at once (it is also re-read whenever it changes).
process.on('SIGHUP', () => relay.reloadTokens());
