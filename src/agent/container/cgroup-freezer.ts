// Cgroup v2 freezer: write 1/0 to cgroup.freeze, then wait (with a deadline)
// until cgroup.events reports "frozen 1"/"frozen 0". A freeze that does not
// complete in time is undone so the container is never left half-frozen.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { deadlineExceeded, failedPrecondition, internal } from '../../common/errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The "frozen" value of cgroup.events, or undefined when the file has none. */
export function frozenFromEvents(text: string): boolean | undefined {
  const m = /^frozen\s+([01])\s*$/m.exec(text);
  return m ? m[1] === '1' : undefined;
}

/** Whether the kernel reports the cgroup at `dir` frozen (undefined: no freezer there). */
export async function isFrozen(dir: string): Promise<boolean | undefined> {
  try {
    return frozenFromEvents(await fs.readFile(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** Whether the cgroup at `dir` has the v2 freezer (cgroup.freeze; kernel 5.2+). */
export async function hasFreezer(dir: string): Promise<boolean> {
  try {
    await fs.access(path.join(dir, 'cgroup.freeze'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Freeze (frozen=true) or thaw the cgroup at `dir` and wait until the kernel
 * confirms. Throws FailedPrecondition without a freezer, DeadlineExceeded when
 * the state is not reached within timeoutMs (a failed freeze is thawed again).
 */
export async function setFrozen(dir: string, frozen: boolean, timeoutMs = 5000): Promise<void> {
  const freezeFile = path.join(dir, 'cgroup.freeze');
  if (!(await hasFreezer(dir))) throw failedPrecondition(`cgroup ${dir}: no cgroup v2 freezer (cgroup.freeze missing)`);
  try {
    await fs.writeFile(freezeFile, frozen ? '1' : '0');
  } catch (err) {
    throw internal(`cgroup ${dir}: writing cgroup.freeze=${frozen ? 1 : 0} failed: ${String(err)}`, err);
  }
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  for (;;) {
    if ((await isFrozen(dir)) === frozen) return;
    if (Date.now() >= deadline) break;
    await sleep(Math.min(delay, Math.max(1, deadline - Date.now())));
    delay = Math.min(delay * 2, 50);
  }
  if (frozen) await fs.writeFile(freezeFile, '0').catch(() => undefined);
  throw deadlineExceeded(`cgroup ${dir}: not ${frozen ? 'frozen' : 'thawed'} within ${timeoutMs} ms`);
}
