// The template store's build lock: a file beside the store, created with
// O_EXCL and holding its owner's pid and start time, so that a dead owner's
// lock (its process gone, or its pid reused by another) is taken over.
// Waiting for a live owner polls the file (no inotify on another process's
// unlink is needed: builds take seconds) up to a deadline.
import fs from 'node:fs';
import { dirname } from 'node:path';
import { deadlineExceeded } from '../../common/errors';
import type { Logger } from '../../common/logging';
import { procAlive, procStartTime } from '../../common/proc';

const LOCK_POLL_MS = 100;
/** A lock file without a readable holder this long is a builder that died between creating and writing it. */
const LOCK_UNREADABLE_STALE_MS = 10_000;

/** A lock file as read through one descriptor, so its inode and text belong together. */
export interface LockSeen {
  ino: number;
  mtimeMs: number;
  text: string;
}

/** The lock file's inode, mtime and text; null if there is none. */
export function readLock(path: string): LockSeen | null {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    return { ino: st.ino, mtimeMs: st.mtimeMs, text: fs.readFileSync(fd, 'utf8') };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Whether the lock's holder is gone: its pid runs no more (or is a zombie) or runs another
 * process (start time differs), or the file has stayed without a holder
 * (created, never written: the builder died in between) for too long.
 */
export function lockHolderGone(seen: LockSeen, now = Date.now()): boolean {
  let holder: unknown;
  try {
    holder = JSON.parse(seen.text);
  } catch {
    holder = null;
  }
  const h = holder as { pid?: unknown; startTime?: unknown } | null;
  if (typeof h !== 'object' || h === null || typeof h.pid !== 'number') return now - seen.mtimeMs > LOCK_UNREADABLE_STALE_MS;
  // A zombie (killed, not yet reaped) still shows its start time: it is gone all the same.
  return !procAlive(h.pid) || procStartTime(h.pid) !== (h.startTime ?? null);
}

/**
 * Removes a lock file judged stale, unless it is no longer the one that was
 * judged: another waiter may have taken the stale lock over and created its
 * own meanwhile. The file is renamed aside first (atomic: one waiter gets
 * it), then compared; a fresh lock moved aside is linked back. True if the
 * stale lock was removed.
 */
export function removeStaleLock(path: string, seen: LockSeen): boolean {
  const aside = `${path}.stale-${process.pid}`;
  try {
    fs.renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  try {
    const moved = readLock(aside);
    if (moved && moved.ino === seen.ino && moved.text === seen.text) return true;
    try {
      fs.linkSync(aside, path);
    } catch (err) {
      // EEXIST: yet another waiter locked in between; nothing left to restore.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    return false;
  } finally {
    fs.rmSync(aside, { force: true });
  }
}

export class BuildLock {
  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  /** Removes the lock file if its holder is gone (a dead builder's). */
  removeIfStale(): void {
    const seen = readLock(this.path);
    if (seen && lockHolderGone(seen)) removeStaleLock(this.path, seen);
  }

  /** Creates the lock file holding `text`; its inode, or null if it exists. */
  private createLock(text: string): number | null {
    let fd: number;
    try {
      fd = fs.openSync(this.path, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return null;
      throw err;
    }
    try {
      fs.writeSync(fd, text);
      return fs.fstatSync(fd).ino;
    } catch (err) {
      fs.rmSync(this.path, { force: true });
      throw err;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Removes the lock file if it is still the one created (inode ino). */
  private unlock(ino: number): void {
    const seen = readLock(this.path);
    if (seen?.ino === ino) fs.rmSync(this.path, { force: true });
    else this.log.warn({ lock: this.path }, 'template build lock was not ours any more at release');
  }

  /** Takes the store's build lock, waiting up to waitMs; a dead owner's lock is taken over. */
  async acquire(waitMs: number, stillWanted: () => boolean): Promise<(() => void) | null> {
    const deadline = Date.now() + waitMs;
    const me = JSON.stringify({ pid: process.pid, startTime: procStartTime(process.pid) });
    // The lock lives beside the store, whose parent need not exist yet.
    fs.mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
    for (;;) {
      const ino = this.createLock(me);
      if (ino !== null) return () => this.unlock(ino);
      const seen = readLock(this.path);
      if (seen === null) continue; // released meanwhile
      if (lockHolderGone(seen)) {
        if (removeStaleLock(this.path, seen)) {
          this.log.warn({ holder: seen.text.slice(0, 200) }, 'template build lock held by a dead process: taken over');
        }
        continue;
      }
      if (!stillWanted()) return null;
      if (Date.now() >= deadline) throw deadlineExceeded(`VM template build lock ${this.path} still held after ${waitMs} ms`);
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
  }
}
