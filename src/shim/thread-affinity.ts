// Host CPU affinity of single threads. Node has no sched_setaffinity; util-linux's
// taskset (Essential on Debian, so on every host tern runs on) sets one thread's
// affinity by its id (`taskset -p` acts on that thread alone, not its process).
// Pinning changes only at a pinned container's create, update and removal and
// after a vCPU hot-plug, a few spawns each: not worth a native helper of our own.
import { readFileSync } from 'node:fs';
import { internal } from '../common/errors';
import { runCommand } from '../common/run-command';
import { formatCpuList, parseCpuList } from './cpu-list';

const TASKSET_TIMEOUT_MS = 5_000;

/** The host's online CPUs (/sys/devices/system/cpu/online). */
export function onlineHostCpus(file = '/sys/devices/system/cpu/online'): number[] {
  return parseCpuList(readFileSync(file, 'utf8'));
}

/** The CPUs thread or process `id` may run on now (Cpus_allowed_list in /proc/<id>/status). */
export function threadAffinity(id: number, procRoot = '/proc'): number[] {
  const status = readFileSync(`${procRoot}/${id}/status`, 'utf8');
  const line = /^Cpus_allowed_list:\s*(.*)$/m.exec(status);
  if (!line) throw internal(`${procRoot}/${id}/status has no Cpus_allowed_list`);
  return parseCpuList(line[1]!);
}

/** Sets host thread `tid`'s affinity to `cpus`. */
export async function setThreadAffinity(tid: number, cpus: readonly number[]): Promise<void> {
  await runCommand('taskset', ['-p', '-c', formatCpuList(cpus), String(tid)], { timeoutMs: TASKSET_TIMEOUT_MS });
}
