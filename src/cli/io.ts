// The CLI's output channels and exit codes. Commands write through CliIo so
// they can be run in-process by tests; main.ts binds it to stdout/stderr.
import type { ProgressStream } from '../common/progress';

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /**
   * Where long commands draw their progress (main.ts: stderr, whose isTTY
   * picks a live line or plain step lines); absent, they show none.
   */
  progress?: ProgressStream;
}

/** 0 ok, 1 a failure was reported, 2 the command line was wrong. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A wrong command line: reported with the usage text on stderr, exit 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Collects output in memory (tests, and commands that compose others). */
export function bufferIo(): CliIo & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out(text: string) {
      io.stdout += text;
    },
    err(text: string) {
      io.stderr += text;
    },
  };
  return io;
}
