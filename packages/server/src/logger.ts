import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout (pipe through `pino-pretty` to read them by eye). */
export function createLogger(level: string = 'info'): Logger {
  return pino({ name: 'capsync-relay', level });
}
