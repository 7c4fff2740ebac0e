import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { ConfigError, loadConfig } from '../config/load.js';
import { createLogger, type LogFormat } from '../runtime/logger.js';
import { startNode } from '../runtime/node.js';

/** `ringkv serve --config FILE`: runs one node until SIGTERM/SIGINT, then drains. */
export async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      'log-format': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  const configFile = values.config ?? process.env.RINGKV_CONFIG ?? null;
  let loaded;
  try {
    loaded = loadConfig(configFile);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`ringkv: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const fmt = values['log-format'];
  if (fmt !== undefined && fmt !== 'json' && fmt !== 'pretty') {
    process.stderr.write(`ringkv: --log-format must be json or pretty\n`);
    return 2;
  }
  // Pretty when asked for (flag or config), or when a terminal is attached; else JSON.
  const format: LogFormat | undefined = fmt ?? (loaded.config.log.format === 'pretty' ? 'pretty' : undefined);
  const logger = createLogger(values['log-level'] ?? loaded.config.log.level, format, { node: loaded.config.node.id });

  // V8 reads this flag at each GC, so setting it now takes effect. Its adaptive default
  // let a node receiving a 64 MiB rebalance hold 2-4 times its live heap (docs/benchmarks.md).
  const growing = loaded.config.limits.heapGrowingPercent;
  if (growing > 0) setFlagsFromString(`--heap-growing-percent=${growing}`);

  let node;
  try {
    node = await startNode(loaded, logger);
  } catch (e) {
    // Operating errors at start (a port in use, a locked or unreadable data directory).
    logger.fatal({ err: e }, 'cannot start');
    logger.flush();
    process.stderr.write(`ringkv: cannot start: ${(e as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'signal received');
      process.removeAllListeners('SIGTERM');
      process.removeAllListeners('SIGINT');
      // A second signal while draining stops at once.
      process.once('SIGTERM', () => process.exit(130));
      process.once('SIGINT', () => process.exit(130));
      node.close().then(resolve, (e: unknown) => {
        logger.error({ err: e }, 'error while stopping');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  logger.flush();
  return 0;
}
