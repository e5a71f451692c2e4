// A log file of bounded size: the shim's own copy of its log lines in its
// sandbox directory (shim.log), beside the FIFO containerd reads. When the
// next line would take the file past its cap, the file is renamed to
// <path>.1 (replacing the one before) and a new one is begun: the two never
// hold more than twice the cap, and no line is ever split between them.
//
// It never throws and never waits on a reader: lines are appended with one
// write each to a local file (the state directory, a tmpfs by default). A
// line that cannot be written, or that alone is longer than the cap, is
// dropped; once a new file cannot be opened (its directory was removed) or
// close() was called, every line is dropped.
import { closeSync, constants, fstatSync, openSync, renameSync, writeSync } from 'node:fs';

type State = 'idle' | 'open' | 'closed';

export class BoundedLogFile {
  private fd = -1;
  private size = 0;
  private state: State = 'idle';
  /** Lines not written: errors, lines over the cap, lines before open() or after close(). */
  dropped = 0;

  constructor(
    readonly path: string,
    readonly maxBytes: number,
  ) {}

  /** The rotated file. */
  get previousPath(): string {
    return `${this.path}.1`;
  }

  /** Opens (or appends to) the file; false (and closed for good) if it cannot. Once only. */
  open(): boolean {
    if (this.state !== 'idle') return this.state === 'open';
    return this.openFile();
  }

  /** Appends one line (with its newline); never throws. */
  write(line: string): void {
    if (this.state !== 'open') {
      this.dropped++;
      return;
    }
    const buf = Buffer.from(line);
    if (buf.length > this.maxBytes) {
      this.dropped++;
      return;
    }
    // A rename that failed leaves the full file in place: the line is dropped rather than the cap passed.
    if (this.size + buf.length > this.maxBytes && (!this.rotate() || this.size + buf.length > this.maxBytes)) {
      this.dropped++;
      return;
    }
    try {
      this.size += writeSync(this.fd, buf);
    } catch {
      this.dropped++;
    }
  }

  /** Stops writing and closes the file. Idempotent. */
  close(): void {
    if (this.state === 'open') {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
    }
    this.fd = -1;
    this.state = 'closed';
  }

  private openFile(): boolean {
    try {
      // libuv opens with O_CLOEXEC: the file does not leak into QEMU or helpers.
      this.fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
      this.size = fstatSync(this.fd).size;
      this.state = 'open';
      return true;
    } catch {
      this.fd = -1;
      this.state = 'closed';
      return false;
    }
  }

  private rotate(): boolean {
    try {
      renameSync(this.path, this.previousPath);
    } catch {
      /* the file was removed: a new one is begun all the same (if the directory is still there) */
    }
    try {
      closeSync(this.fd);
    } catch {
      /* nothing to do */
    }
    return this.openFile();
  }
}
