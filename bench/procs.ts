// Host processes as the benchmarks see them: the process table, a process
// and its descendants, which processes tern runs for a sandbox (its shim and
// QEMU, from the sandbox's record under tern's run dir), and their PSS.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ternRunDir } from '../test/integration/harness/leaks.js';

export interface Proc {
  pid: number;
  ppid: number;
  argv: string[];
  comm: string;
}

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export function processTable(): Map<number, Proc> {
  const out = new Map<number, Proc>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = readText(`/proc/${pid}/stat`);
    const cmdline = readText(`/proc/${pid}/cmdline`);
    if (stat === undefined || cmdline === undefined) continue;
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(pid, {
      pid,
      ppid: Number(rest[1] ?? 0),
      comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      argv: cmdline.split('\0').filter((a) => a.length > 0),
    });
  }
  return out;
}

/** `root` and every process below it. */
export function withDescendants(root: number, procs: Map<number, Proc>): number[] {
  const children = new Map<number, number[]>();
  for (const p of procs.values()) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    if (out.includes(pid) || !procs.has(pid)) continue;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Argument following `flag` in argv (shims take `-id <id>`). */
export function argAfter(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** tern: the pod's shim and QEMU processes, from <run dir>/sb/<hash>/sandbox.json (id = sandbox id, shimPid, vmDir) and <vmDir>/qemu.pid. */
export function ternPodProcs(sandboxId: string, procs: Map<number, Proc>): { shim: Proc; qemu: Proc } {
  const sbRoot = join(ternRunDir(), 'sb');
  for (const dir of existsSync(sbRoot) ? readdirSync(sbRoot) : []) {
    const raw = readText(join(sbRoot, dir, 'sandbox.json'));
    if (raw === undefined) continue;
    let rec: { id?: string; namespace?: string; shimPid?: number; vmDir?: string };
    try {
      rec = JSON.parse(raw) as typeof rec;
    } catch {
      continue;
    }
    if (rec.id !== sandboxId) continue;
    const shim = procs.get(rec.shimPid ?? -1);
    // One shim process serves many pods: its command line names the first of them.
    if (!shim || !/^containerd-shim-tern/.test(basename(shim.argv[0] ?? shim.comm)))
      throw new Error(`tern shim pid ${rec.shimPid} of sandbox ${sandboxId} not running`);
    const qemuPid = Number((readText(join(rec.vmDir ?? join(sbRoot, dir, 'vm'), 'qemu.pid')) ?? '').trim());
    const qemu = procs.get(qemuPid);
    if (!qemu || !/^qemu-system/.test(basename(qemu.argv[0] ?? qemu.comm))) {
      throw new Error(`QEMU of sandbox ${sandboxId} not running (qemu.pid: ${qemuPid || 'absent'})`);
    }
    return { shim, qemu };
  }
  throw new Error(`no sandbox.json with id ${sandboxId} under ${sbRoot}`);
}

/** tern: the pod's shim and QEMU, plus anything either of them started. */
export function ternPodPids(sandboxId: string, procs: Map<number, Proc>): number[] {
  const { shim, qemu } = ternPodProcs(sandboxId, procs);
  return [...new Set([...withDescendants(shim.pid, procs), ...withDescendants(qemu.pid, procs)])];
}

/** Proportional set size of a process, from /proc/<pid>/smaps_rollup, in KiB. */
export function pssKiB(pid: number): number {
  const text = readText(`/proc/${pid}/smaps_rollup`);
  const m = text && /^Pss:\s+(\d+) kB/m.exec(text);
  if (!m) throw new Error(`no Pss for pid ${pid} (process gone?)`);
  return Number(m[1]);
}

/** Resident set size of a process, from /proc/<pid>/status, in KiB. */
export function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readText(`/proc/${pid}/status`) ?? '');
  if (!m) throw new Error(`no VmRSS for pid ${pid} (process gone?)`);
  return Number(m[1]);
}

/** The host's CPU time so far from /proc/stat, in ms: busy (all but idle and iowait) and the whole, summed over CPUs. */
export function hostCpuMs(stat = readText('/proc/stat') ?? ''): { busyMs: number; totalMs: number } {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) throw new Error('/proc/stat has no cpu line');
  // user nice system idle iowait irq softirq steal (guest time is already in user); in USER_HZ (100 per second).
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const busy = total - (f[3] ?? 0) - (f[4] ?? 0);
  return { busyMs: busy * 10, totalMs: total * 10 };
}
