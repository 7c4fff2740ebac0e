import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'json' | 'pretty';

/** JSON logs by default; human-readable when asked for or when stderr is a terminal. */
export function createLogger(level: string, format: LogFormat | undefined, base: Record<string, unknown> = {}): Logger {
  const usePretty = format === 'pretty' || (format === undefined && process.stderr.isTTY === true);
  const opts = { level, base: { ...base }, timestamp: pino.stdTimeFunctions.isoTime };
  if (usePretty) return pino(opts, pretty({ colorize: process.stderr.isTTY === true, destination: 2, sync: true }));
  return pino(opts, pino.destination({ dest: 2, sync: false }));
}
