// Structured logging with pino. The shim logs into the bundle's `log` FIFO
// (containerd copies it into its own log); the agent logs to the guest console.
// A FIFO whose reader is slow or gone must never block or hang the shim (not
// even at exit, when pino flushes), so FIFO logging writes non-blocking and
// drops a line it cannot write right away. A shim also keeps its lines in a
// file of bounded size (`file`, see bounded-log-file.ts).
import pino from 'pino';
import { closeSync, writeSync } from 'node:fs';

export type Logger = pino.Logger;

export type LogDestination = { fd: number; mode: 'blocking' | 'drop-when-busy' };

/** Where a copy of every line goes as well; must not throw. */
export interface LineSink {
  write(line: string): void;
}

/** Writes each line to fd at once or drops it; after close(), drops everything (the number may be another file's by then). */
export class DropWhenBusySink implements LineSink {
  constructor(private fd: number | undefined) {}

  write(line: string): void {
    if (this.fd === undefined) return;
    try {
      writeSync(this.fd, line);
    } catch {
      /* EAGAIN (reader slow) or EPIPE (reader gone): drop the line */
    }
  }

  /** Closes the descriptor. Idempotent. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
    this.fd = undefined;
  }
}

function tee(first: pino.DestinationStream, copy: LineSink): pino.DestinationStream {
  return {
    write(line: string) {
      first.write(line);
      copy.write(line);
    },
  };
}

/**
 * stream, when given, takes every line instead of a file descriptor (the CLI
 * passes lines through a live progress line drawn on the same terminal).
 */
export function createLogger(opts: { name: string; level?: string; destination?: LogDestination; stream?: LineSink; file?: LineSink }): Logger {
  const d = opts.destination ?? { fd: 2, mode: 'blocking' };
  const dest = opts.stream ?? (d.mode === 'drop-when-busy' ? new DropWhenBusySink(d.fd) : pino.destination({ fd: d.fd, sync: true }));
  return pino({ name: opts.name, level: opts.level ?? 'info', base: { pid: process.pid } }, opts.file ? tee(dest, opts.file) : dest);
}

export const silentLogger: Logger = pino({ level: 'silent' });
