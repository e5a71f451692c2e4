// The one logger shape tern's layers accept: structurally what pino's logger
// offers (`log.info({ ...fields }, 'message')`), so a shim passes its pino
// logger and a test or tool passes noopLogSink; no layer below the shim needs
// pino itself.

export interface LogSink {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const noop = (): void => {};

export const noopLogSink: LogSink = { info: noop, warn: noop, error: noop, debug: noop };
