// What a running VM leaves on disk so a later process can clean up after a
// crash: <runDir>/vm.json (pid, process start time, files to remove) and
// <runDir>/qemu.pid. Also the /proc checks that make sure a pid still belongs
// to that QEMU before anything kills it.
import fs from 'node:fs';
import path from 'node:path';
import { procStartTime } from '../../common/proc.js';
import { optValue, qemuPaths } from './cmdline.js';

// Re-exported: the driver and the CLI read them from here.
export { procAlive, procStartTime, procState } from '../../common/proc.js';

export interface VmStateFile {
  version: 1;
  id: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot): tells a reused pid apart. */
  procStartTime: string | null;
  binary: string;
  runDir: string;
  startedAt: string;
  /** Files the VM created and cleanup removes. */
  files: string[];
}

/**
 * True only if `pid` is a QEMU whose command line refers to files inside `runDir`
 * (and, when known, started at `startTime`): never touch an unrelated reused pid.
 */
export function isQemuOfRunDir(pid: number, runDir: string, startTime: string | null): boolean {
  let argv: string[];
  try {
    argv = fs
      .readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== '');
  } catch {
    return false;
  }
  if (argv.length === 0 || !path.basename(argv[0]!).includes('qemu')) return false;
  const dir = `${path.resolve(runDir)}/`;
  const refersToRunDir = argv.some((a) => a.includes(dir) || a.includes(optValue(dir)));
  if (!refersToRunDir) return false;
  if (startTime !== null && procStartTime(pid) !== startTime) return false;
  return true;
}

export function writeVmState(state: VmStateFile): void {
  const file = qemuPaths(state.runDir).stateFile;
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** Reads vm.json; null when absent or unreadable. */
export function readVmState(runDir: string): VmStateFile | null {
  try {
    const raw: unknown = JSON.parse(fs.readFileSync(qemuPaths(runDir).stateFile, 'utf8'));
    if (typeof raw !== 'object' || raw === null) return null;
    const s = raw as Partial<VmStateFile>;
    if (typeof s.pid !== 'number' || !Number.isInteger(s.pid) || s.pid <= 1) return null;
    return {
      version: 1,
      id: typeof s.id === 'string' ? s.id : '',
      pid: s.pid,
      procStartTime: typeof s.procStartTime === 'string' ? s.procStartTime : null,
      binary: typeof s.binary === 'string' ? s.binary : '',
      runDir,
      startedAt: typeof s.startedAt === 'string' ? s.startedAt : '',
      files: Array.isArray(s.files) ? s.files.filter((f): f is string => typeof f === 'string') : [],
    };
  } catch {
    return null;
  }
}

/** Reads qemu.pid; null when absent or not a pid. */
export function readPidFile(runDir: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(qemuPaths(runDir).pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

/** Removes files (only those inside runDir), ignoring ones already gone. */
export function removeFiles(runDir: string, files: readonly string[]): void {
  const dir = `${path.resolve(runDir)}/`;
  for (const f of files) {
    const abs = path.resolve(f);
    if (!abs.startsWith(dir)) continue;
    fs.rmSync(abs, { force: true });
  }
}

/** The files a VM creates in its runDir (the console log is kept for diagnosis; the runDir owner removes it). */
export function ownedFiles(runDir: string): string[] {
  const p = qemuPaths(runDir);
  return [p.qmpSocket, p.qmpFdSocket, p.agentSocket, p.pidFile, p.stateFile, `${p.stateFile}.tmp`];
}
