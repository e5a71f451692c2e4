// Waiting in integration tests: for a condition (polled, with a deadline and
// what was waited for in the error) and for processes to be gone.
import { readFileSync } from 'node:fs';

/** Polls fn every 200 ms until it returns a value; throws naming `what` after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The pid runs (a zombie, exited but not yet reaped, does not count). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * The pid in a pid file, or undefined while there is none: the file missing,
 * or created but not yet written (QEMU opens its -pidfile before it writes
 * it). Never 0, which process.kill takes for the caller's own process group.
 */
export function readPid(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
  const pid = Number(text);
  return /^\d+$/.test(text) && pid > 1 ? pid : undefined;
}

/** Waits until the pid no longer runs. */
export function waitGone(what: string, pid: number, timeoutMs = 120_000): Promise<true> {
  return waitFor(what, () => (alive(pid) ? undefined : true), timeoutMs);
}
