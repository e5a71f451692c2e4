// What /proc says about a process: its state and its start time (which tells
// a reused pid apart), read without spawning anything.
import fs from 'node:fs';

/** Start time of a process (field 22 of /proc/<pid>/stat), or null if it is gone. */
export function procStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // fields[0] is field 3 (state)
  } catch {
    return null;
  }
}

let ownStartTime: string | null | undefined;

/** This process's start time (procStartTime), read once. */
export function selfStartTime(): string | undefined {
  if (ownStartTime === undefined) ownStartTime = procStartTime(process.pid);
  return ownStartTime ?? undefined;
}

/** Process state letter (R, S, Z, ...) or null if the pid does not exist. */
export function procState(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

export function procAlive(pid: number): boolean {
  const state = procState(pid);
  return state !== null && state !== 'Z' && state !== 'X';
}

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ: 100 on every Linux architecture tern runs on). */
const USER_HZ = 100;

/** CPU time (user + system) a process has used so far, in ms, or null if it is gone. */
export function procCpuMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[11] and fields[12] are fields 14 (utime) and 15 (stime).
    return ((Number(f[11]) + Number(f[12])) * 1000) / USER_HZ;
  } catch {
    return null;
  }
}
