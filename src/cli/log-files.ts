// Reading one sandbox's log files for `tern logs`: shim.log (after the
// rotated shim.log.1) and the VM's console.log. A FileTail reads a file in
// batches of whole lines: all of it at first, then what was appended since;
// it follows a rotation (the rest of the old file, found under its new name,
// then the new file), a file begun anew (truncated, or another path: the
// console of a VM taken from the warm pool lives in the pool's directory)
// and a file that is not there yet.
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { splitLines } from './log-lines';

/** Bytes [from, end of file) of a file; empty when it cannot be read. */
function readFrom(path: string, from: number): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= from) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - from);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, from + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } catch {
    return Buffer.alloc(0);
  } finally {
    closeSync(fd);
  }
}

function inode(path: string): { ino: number; size: number } | undefined {
  try {
    const st = statSync(path);
    return st.isFile() ? { ino: st.ino, size: st.size } : undefined;
  } catch {
    return undefined;
  }
}

export class FileTail {
  private path?: string;
  private ino?: number;
  private offset = 0;
  /** Bytes after the last line end read so far (a line still being written). */
  private partial: Buffer = Buffer.alloc(0);

  /**
   * `pathOf` names the file at each read (it may change); `rotatedPathOf`
   * names where a rotation moves it (shim.log -> shim.log.1).
   */
  constructor(
    private readonly pathOf: () => string | null,
    private readonly rotatedPathOf?: (path: string) => string,
  ) {}

  /** The whole lines added since the last read (all of them at the first). */
  read(): string[] {
    const path = this.pathOf();
    const now = path === null ? undefined : inode(path);
    const done: string[] = [];
    let head: Buffer = this.partial;
    if (this.ino !== undefined && (path !== this.path || now?.ino !== this.ino)) {
      // Another file now: the old one's rest, still at its path (the path
      // changed) or under its rotated name (if it is still there).
      const old = [this.path!, this.rotatedPathOf?.(this.path!)].find((c) => c !== undefined && inode(c)?.ino === this.ino);
      if (old !== undefined) head = Buffer.concat([head, readFrom(old, this.offset)]);
      // Whatever the old file held after its last line end is a line of its own.
      done.push(...splitLines(head.toString('utf8')));
      head = Buffer.alloc(0);
      this.ino = undefined;
    }
    let added: Buffer = Buffer.alloc(0);
    if (path !== null && now !== undefined) {
      if (this.ino === undefined) {
        this.path = path;
        this.ino = now.ino;
        this.offset = 0;
      } else if (now.size < this.offset) {
        // Begun anew in place (a VM's console is truncated at its launch).
        this.offset = 0;
        head = Buffer.alloc(0);
      }
      added = readFrom(path, this.offset);
      this.offset += added.length;
    }
    const all = Buffer.concat([head, added]);
    const end = all.lastIndexOf(0x0a);
    this.partial = end < 0 ? all : all.subarray(end + 1);
    if (end >= 0) done.push(...splitLines(all.subarray(0, end + 1).toString('utf8')));
    return done;
  }

  /** A last line without its line end, once nothing more is coming (not in follow mode). */
  rest(): string[] {
    const text = this.partial.toString('utf8');
    this.partial = Buffer.alloc(0);
    return splitLines(text);
  }
}

/** The whole lines of a file, the last one even without its line end; [] when it is missing. */
export function readLines(path: string): string[] {
  return splitLines(readFrom(path, 0).toString('utf8'));
}

export function fileExists(path: string | null): boolean {
  return path !== null && inode(path) !== undefined;
}
