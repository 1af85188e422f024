#!/usr/bin/env node
import { createRelay } from './create-relay.js';
import { CliError, helpText, parseCli } from './cli-options.js';
import { createLogger } from './logger.js';

/**
 * `capsync-server`: runs a relay until SIGTERM/SIGINT, then stops accepting, commits every
 * accepted update and exits 0. A second signal exits at once.
 */
async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseCli(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    process.stderr.write(`capsync-server: ${err.message}\n\n${helpText()}\n`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(helpText() + '\n');
    return;
  }
  const logger = createLogger(parsed.options.logLevel);
  const relay = await createRelay({ ...parsed.options, logger });
  logger.info({ url: relay.url, httpUrl: relay.httpUrl, ...(relay.metricsUrl ? { metricsUrl: relay.metricsUrl } : {}) }, 'ready');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    relay.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`capsync-server: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
