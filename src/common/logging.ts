// Structured logging with pino. The shim logs into the bundle's `log` FIFO
// (containerd copies it into its own log); the agent logs to the guest console.
import pino from 'pino';
import type { Writable } from 'node:stream';

export type Logger = pino.Logger;

export function createLogger(opts: { name: string; level?: string; destination?: Writable | number }): Logger {
  const dest =
    typeof opts.destination === 'number'
      ? pino.destination({ fd: opts.destination, sync: false })
      : opts.destination ?? pino.destination({ fd: 2, sync: false });
  return pino({ name: opts.name, level: opts.level ?? 'info', base: { pid: process.pid } }, dest);
}

export const silentLogger: Logger = pino({ level: 'silent' });
