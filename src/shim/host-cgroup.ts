// One host cgroup per pod for its hypervisor: QEMU is moved in the moment it
// is spawned (a pooled QEMU when a pod adopts it), so the VM's memory and CPU
// are accounted to the pod. The shim process serves many pods (shim-daemon.ts)
// and stays where containerd put it, as do its short helpers. Named after the sandbox directory, so `delete` can find and remove it
// after a crash. cgroup v2 (unified) hosts get one directory; v1 and hybrid
// hosts one per controller that matters (cpu, cpuacct, memory, pids).
import { existsSync, readFileSync, readdirSync, rmdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const CGROUP_ROOT = '/sys/fs/cgroup';
const PARENT = 'tern';
const V1_CONTROLLERS = ['cpu', 'cpuacct', 'memory', 'pids'];

export interface Hierarchy {
  /** Mount point of the hierarchy (e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup). */
  mount: string;
  /** Key in /proc/self/cgroup: a controller name, or '' for the unified hierarchy. */
  key: string;
}

/** The hierarchies a pod cgroup lives in on this host. */
export function hierarchies(root = CGROUP_ROOT): Hierarchy[] {
  if (existsSync(join(root, 'cgroup.controllers'))) return [{ mount: root, key: '' }];
  return V1_CONTROLLERS.filter((c) => existsSync(join(root, c, 'cgroup.procs'))).map((c) => ({ mount: join(root, c), key: c }));
}

/** Where a process is, per hierarchy key, from /proc/<pid>/cgroup text. */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    for (const key of m[1]!.split(',')) out.set(key, m[2]!);
  }
  return out;
}

export class HostCgroup {
  private readonly dirs: string[];

  constructor(
    readonly name: string,
    private readonly hs: Hierarchy[] = hierarchies(),
  ) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error(`bad cgroup name ${name}`);
    this.dirs = hs.map((h) => join(h.mount, PARENT, name));
  }

  /** Creates the groups (idempotent). */
  create(): void {
    for (const d of this.dirs) mkdirSync(d, { recursive: true });
  }

  /**
   * Gives the group the smallest CPU share (v2 cpu.weight 1, v1 cpu.shares 2):
   * its processes run on what the others leave. Returns what could not be set
   * (no cpu controller there).
   */
  leastCpu(): string[] {
    const problems: string[] = [];
    this.hs.forEach((h, i) => {
      const setting = h.key === '' ? ['cpu.weight', '1'] : h.key === 'cpu' ? ['cpu.shares', '2'] : undefined;
      if (!setting) return;
      try {
        writeFileSync(join(this.dirs[i]!, setting[0]!), setting[1]!);
      } catch (err) {
        problems.push(`${setting[0]}: ${(err as Error).message}`);
      }
    });
    return problems;
  }

  /** Moves a process into the pod's groups. */
  add(pid: number): void {
    for (const d of this.dirs) writeFileSync(join(d, 'cgroup.procs'), String(pid));
  }

  pids(): number[] {
    const all = new Set<number>();
    for (const d of this.dirs) {
      try {
        for (const p of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (p) all.add(Number(p));
      } catch {
        /* not there */
      }
    }
    return [...all];
  }

  /**
   * remove(), retried until the deadline: a process that was just killed
   * leaves its group only once it has been reaped.
   */
  async removeWithin(timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = this.remove();
      if (left.length === 0 || Date.now() >= deadline) return left;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Removes the groups (they must be empty), and the shared parent when it is empty too. Idempotent. */
  remove(): string[] {
    const problems: string[] = [];
    for (const d of this.dirs) {
      if (!existsSync(d)) continue;
      try {
        rmdirSync(d);
      } catch (err) {
        problems.push(`${d}: ${(err as Error).message}`);
      }
      const parent = join(d, '..');
      try {
        if (readdirSync(parent, { withFileTypes: true }).every((e) => !e.isDirectory())) rmdirSync(parent);
      } catch {
        /* another pod's group is there, or it is gone */
      }
    }
    return problems;
  }
}
