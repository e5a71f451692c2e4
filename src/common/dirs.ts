// Directories tern needs but did not necessarily make: on a machine where
// nothing ran before, /run/containerd/s, /run/tern and the cache do not exist.
// Each is created (parents too) with a stated mode, and a directory that truly
// cannot be made fails with an error that names it: Node reports a missing
// parent of a socket as EACCES on listen, which names nothing useful.
import { chmodSync, mkdirSync } from 'node:fs';
import { TernError } from './errors';

/**
 * Makes `path` (and its parents) a directory. A directory made here gets
 * `mode` exactly (mkdir's mode is masked by the umask); one that exists keeps
 * its mode. `what` says what the directory is for, in the error.
 */
export function ensureDir(path: string, mode: number, what: string): void {
  try {
    // A file in the way fails here too (EEXIST), naming the path.
    const made = mkdirSync(path, { recursive: true, mode });
    if (made !== undefined) chmodSync(path, mode);
  } catch (err) {
    throw new TernError('FailedPrecondition', `cannot create ${what} directory ${path}: ${(err as Error).message}`, { cause: err });
  }
}
