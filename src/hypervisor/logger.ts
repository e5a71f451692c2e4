// The minimal logger the hypervisor layer needs: structurally compatible with
// pino (`logger.info({ ...fields }, 'message')`), no-op by default.

export interface HypervisorLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const noop = (): void => {};

export const noopLogger: HypervisorLogger = { info: noop, warn: noop, error: noop, debug: noop };
