// Reads the shims' start events (src/shim/metrics-events.ts) as they are
// appended: the first read takes the rotated file (.1) and the current one
// whole, every later read only what was appended since. The file is followed
// by its inode: when the shims rotated it, the rest of the old one is read
// from .1 before the new one from its start. Only complete lines are taken;
// a line still being written is read next time, one that can no longer
// complete (the end of a rotated file) and anything that is no event (a
// torn write, garbage) is counted as invalid and skipped.
import { closeSync, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { parseEvent, rotatedPath, type StartEvent } from '../../shim/metrics-events';

const CHUNK_BYTES = 1 << 20;
/** Past this, a line is no event (they are written under 4 KiB). */
const MAX_LINE_BYTES = 64 * 1024;

export interface TailRead {
  events: StartEvent[];
  /** Lines that were no valid event. */
  invalidLines: number;
}

interface Position {
  dev: number;
  ino: number;
  offset: number;
}

interface Opened {
  fd: number;
  st: Stats;
}

function openIfThere(path: string): Opened | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return { fd, st: fstatSync(fd) };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

const sameFile = (o: Opened, p: Position): boolean => o.st.ino === p.ino && o.st.dev === p.dev;

export class EventsTail {
  private pos: Position | undefined;
  private started = false;

  constructor(readonly path: string) {}

  /** What was appended since the last read (everything kept, the first time). Throws when a file exists but cannot be read. */
  read(): TailRead {
    const out: TailRead = { events: [], invalidLines: 0 };
    const cur = openIfThere(this.path);
    try {
      if (!this.started) {
        this.started = true;
        this.readRotated(0, undefined, out);
      } else if (this.pos && (!cur || !sameFile(cur, this.pos))) {
        // Rotated (or removed) since the last read: finish the old file if it is the .1 now.
        this.readRotated(this.pos.offset, this.pos, out);
        this.pos = undefined;
      }
      if (!cur) {
        this.pos = undefined;
        return out;
      }
      let from = this.pos && sameFile(cur, this.pos) ? this.pos.offset : 0;
      if (from > cur.st.size) from = 0; // truncated under us: read it again
      const offset = consumeLines(cur.fd, from, cur.st.size, false, out);
      this.pos = { dev: cur.st.dev, ino: cur.st.ino, offset };
      return out;
    } finally {
      if (cur) closeSync(cur.fd);
    }
  }

  /** Reads the rotated file to its end from `from`, if it is `expected` (any file when undefined). */
  private readRotated(from: number, expected: Position | undefined, out: TailRead): void {
    const rot = openIfThere(rotatedPath(this.path));
    if (!rot) return;
    try {
      if (expected && !sameFile(rot, expected)) return;
      consumeLines(rot.fd, Math.min(from, rot.st.size), rot.st.size, true, out);
    } finally {
      closeSync(rot.fd);
    }
  }
}

/**
 * Parses the lines in [from, end) of fd and returns the offset after the
 * last complete one. With `final`, a last line without its newline is
 * counted invalid (no writer will finish it) and the offset is `end`. A
 * "line" longer than any event is skipped as invalid without being held.
 */
export function consumeLines(fd: number, from: number, end: number, final: boolean, out: TailRead): number {
  let carry: Buffer = Buffer.alloc(0);
  let skipping = false;
  let pos = from;
  const buf = Buffer.alloc(Math.min(CHUNK_BYTES, Math.max(1, end - from)));
  while (pos < end) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
    if (n === 0) break;
    pos += n;
    const data = carry.length > 0 ? Buffer.concat([carry, buf.subarray(0, n)]) : buf.subarray(0, n);
    let start = 0;
    for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
      if (skipping) skipping = false;
      else takeLine(data.subarray(start, nl), out);
      start = nl + 1;
    }
    // What follows the last newline waits for the next chunk (copied: buf is reused).
    carry = skipping ? Buffer.alloc(0) : Buffer.from(data.subarray(start));
    if (carry.length > MAX_LINE_BYTES) {
      out.invalidLines++;
      carry = Buffer.alloc(0);
      skipping = true;
    }
  }
  if (final || skipping) {
    if (carry.length > 0) takeLine(carry, out);
    return pos;
  }
  return pos - carry.length;
}

function takeLine(line: Buffer, out: TailRead): void {
  if (line.length === 0) return;
  const e = parseEvent(line.toString('utf8'));
  if (e) out.events.push(e);
  else out.invalidLines++;
}
