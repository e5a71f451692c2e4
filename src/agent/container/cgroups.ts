// Cgroup v2 handling for containers: <root>/tern/<id> with cpu/memory/pids
// limits, process listing, and removal (kill what remains, wait until empty,
// rmdir). The root is injectable so tests can use a scratch hierarchy.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { deadlineExceeded, internal, invalidArgument } from '../../common/errors.js';

export interface CgroupLimits {
  /** bytes */
  memoryMax?: number;
  /** microseconds per period; negative = unlimited */
  cpuQuota?: number;
  /** microseconds */
  cpuPeriod?: number;
  /** cgroup v1 style shares (2..262144) */
  cpuShares?: number;
  pidsMax?: number;
  /** The guest CPUs the container may run on (cpuset.cpus list, e.g. "0-1"); "" = the parent's. */
  cpusetCpus?: string;
}

export interface CgroupLog {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

const WANTED = ['cpu', 'memory', 'pids'] as const;
/**
 * Enabled only once a container is pinned: a cpuset makes every cgroup
 * created below it costlier, and an unpinned container needs none.
 */
const ON_DEMAND = ['cpuset'] as const;
const DEFAULT_PERIOD = 100_000;

/** cgroup v1 cpu.shares -> v2 cpu.weight (the conversion runc and crun use). */
export function cpuWeightFromShares(shares: number): number {
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** The values to write, file by file, for the given limits. */
export function limitFiles(limits: CgroupLimits): Record<string, string> {
  const files: Record<string, string> = {};
  if (limits.memoryMax !== undefined) files['memory.max'] = String(limits.memoryMax);
  if (limits.cpuQuota !== undefined || limits.cpuPeriod !== undefined) {
    const period = limits.cpuPeriod ?? DEFAULT_PERIOD;
    const quota = limits.cpuQuota !== undefined && limits.cpuQuota > 0 ? String(limits.cpuQuota) : 'max';
    files['cpu.max'] = `${quota} ${period}`;
  }
  if (limits.cpuShares !== undefined) files['cpu.weight'] = String(cpuWeightFromShares(limits.cpuShares));
  if (limits.pidsMax !== undefined) files['pids.max'] = String(limits.pidsMax);
  // A newline, not "": an empty write never reaches the kernel, and "\n" is how an empty list is written.
  if (limits.cpusetCpus !== undefined) files['cpuset.cpus'] = limits.cpusetCpus === '' ? '\n' : limits.cpusetCpus;
  return files;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Cgroup {
  private constructor(
    readonly path: string,
    private readonly enabled: Set<string>,
    private readonly log?: CgroupLog,
  ) {}

  /**
   * Enables each controller for <root>/tern's children (on the root, then on
   * tern); returns those enabled. One the kernel lacks or refuses is left out
   * (a refusal is logged).
   */
  private static async enable(root: string, controllers: readonly string[], log?: CgroupLog): Promise<string[]> {
    const words = async (file: string) => new Set((await readText(file))?.trim().split(/\s+/) ?? []);
    // Already on for tern's children (a clone inherits its template's): no write, which takes cgroup_mutex and walks the tree.
    const on = await words(path.join(root, 'tern', 'cgroup.subtree_control'));
    const available = controllers.every((c) => on.has(c)) ? on : await words(path.join(root, 'cgroup.controllers'));
    const enabled: string[] = [];
    for (const c of controllers) {
      if (on.has(c)) {
        enabled.push(c);
        continue;
      }
      if (!available.has(c)) continue;
      try {
        await fs.writeFile(path.join(root, 'cgroup.subtree_control'), `+${c}`);
        await fs.writeFile(path.join(root, 'tern', 'cgroup.subtree_control'), `+${c}`);
        enabled.push(c);
      } catch (err) {
        log?.warn({ controller: c, err: String(err) }, 'cannot enable cgroup controller');
      }
    }
    return enabled;
  }

  /** Controllers enabled for this cgroup (cpu, memory, pids where the kernel has them; cpuset once pinned). */
  get controllers(): ReadonlySet<string> {
    return this.enabled;
  }

  /**
   * Write limit files (name -> value) whose controller is enabled; the others
   * are skipped and named in the returned warnings. A value the kernel
   * rejects fails with InvalidArgument naming the file and the value.
   */
  async writeLimits(files: Record<string, string>): Promise<string[]> {
    const warnings: string[] = [];
    for (const [file, value] of Object.entries(files)) {
      const controller = file.split('.')[0]!;
      if (!this.enabled.has(controller) && (ON_DEMAND as readonly string[]).includes(controller)) {
        for (const c of await Cgroup.enable(path.dirname(path.dirname(this.path)), [controller], this.log)) this.enabled.add(c);
      }
      if (!this.enabled.has(controller)) {
        warnings.push(`cgroup controller ${controller} not available; ${file}=${value} not applied`);
        continue;
      }
      try {
        await fs.writeFile(path.join(this.path, file), value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EINVAL' || code === 'ERANGE') throw invalidArgument(`cgroup ${this.path}: ${file}=${value} rejected by the kernel (${code})`);
        throw internal(`cgroup ${this.path}: writing ${file}=${value} failed: ${String(err)}`, err);
      }
    }
    return warnings;
  }

  /** Create <root>/tern/<id>, enable the controllers on the way, write the limits. */
  static async create(root: string, id: string, limits: CgroupLimits, log?: CgroupLog): Promise<Cgroup> {
    const parent = path.join(root, 'tern');
    await fs.mkdir(parent, { recursive: true });
    const enabled = new Set(await Cgroup.enable(root, [...WANTED, ...(limits.cpusetCpus !== undefined ? ON_DEMAND : [])], log));
    const dir = path.join(parent, id);
    await fs.mkdir(dir);
    const cg = new Cgroup(dir, enabled, log);
    try {
      for (const [file, value] of Object.entries(limitFiles(limits))) {
        const controller = file.split('.')[0]!;
        if (!enabled.has(controller)) {
          log?.warn({ file, value, cgroup: dir }, `cgroup controller ${controller} not available; limit not applied`);
          continue;
        }
        await fs.writeFile(path.join(dir, file), value);
      }
    } catch (err) {
      await cg.remove().catch(() => undefined);
      throw internal(`cgroup ${dir}: writing limits failed: ${String(err)}`, err);
    }
    return cg;
  }

  /** Pids in this cgroup and its descendants. */
  async pids(): Promise<number[]> {
    const out: number[] = [];
    const walk = async (dir: string) => {
      const text = await readText(path.join(dir, 'cgroup.procs'));
      for (const l of (text ?? '').split('\n')) {
        const n = Number(l);
        if (Number.isInteger(n) && n > 0) out.push(n);
      }
      for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await walk(path.join(dir, e.name));
      }
    };
    await walk(this.path);
    return out;
  }

  /** SIGKILL everything in the cgroup (cgroup.kill when the kernel has it). */
  async killAll(): Promise<void> {
    try {
      await fs.access(path.join(this.path, 'cgroup.kill'));
      await fs.writeFile(path.join(this.path, 'cgroup.kill'), '1');
      return;
    } catch {
      // older kernels: signal one by one
    }
    for (const pid of await this.pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** Kill what remains, wait until empty (deadline), remove the directory tree. Idempotent. */
  async remove(timeoutMs = 5000): Promise<void> {
    const isCgroupFs = (await readText(path.join(this.path, 'cgroup.controllers'))) !== undefined;
    if (!isCgroupFs) {
      // not a cgroup filesystem (a scratch directory in tests, or already removed)
      await fs.rm(this.path, { recursive: true, force: true });
      return;
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = await this.pids();
      if (left.length === 0) break;
      if (Date.now() > deadline) throw deadlineExceeded(`cgroup ${this.path}: processes ${left.join(',')} still alive after ${timeoutMs} ms`);
      await this.killAll();
      await sleep(20);
    }
    const rmTree = async (dir: string): Promise<void> => {
      for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (e.isDirectory()) await rmTree(path.join(dir, e.name));
      }
      for (;;) {
        try {
          await fs.rmdir(dir);
          return;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return;
          // EBUSY right after the last process exits: the kernel is still releasing it
          if (code !== 'EBUSY' || Date.now() > deadline) throw internal(`cgroup ${dir}: rmdir failed: ${String(err)}`, err);
          await sleep(20);
        }
      }
    };
    await rmTree(this.path);
    this.log?.debug({ cgroup: this.path }, 'cgroup removed');
  }
}

/**
 * The directory of this process's own cgroup on the cgroup2 mount containing
 * `root`, or '' when `root` is not on a cgroup2 mount (then the launcher stays
 * where it is after joining).
 */
export async function ownCgroupDir(root: string): Promise<string> {
  const mountinfo = (await readText('/proc/self/mountinfo')) ?? '';
  const self = (await readText('/proc/self/cgroup')) ?? '';
  const line = self.split('\n').find((l) => l.startsWith('0::'));
  if (!line) return '';
  const rel = line.slice(3);
  const resolved = path.resolve(root);
  for (const l of mountinfo.split('\n')) {
    const [pre, post] = l.split(' - ');
    if (!pre || !post?.startsWith('cgroup2 ')) continue;
    const f = pre.split(' ');
    const mountRoot = f[3]!;
    const mountPoint = f[4]!.replace(/\\040/g, ' ');
    if (resolved !== mountPoint && !resolved.startsWith(`${mountPoint}/`)) continue;
    if (mountRoot !== '/' && !rel.startsWith(mountRoot)) return '';
    return path.join(mountPoint, mountRoot === '/' ? rel : rel.slice(mountRoot.length));
  }
  return '';
}
