// Gives back the page cache a finished container leaves in the guest, so that
// free page reporting (virtio-balloon, loaded at boot) can return that memory
// to the host: the kernel reports only free blocks, and page cache is not free
// until it is reclaimed.
//
// When: a moment (exitDelayMs) after a container's init exit has been
// answered to the host (WaitProcess), and once more when the pod has been
// quiet (no create, start or exec) for idleMs. A start-path call postpones a
// reclaim that is due, so none runs while a container is being started.
//
// How: cgroup v2 `memory.reclaim`, asking for the cgroup's page cache
// (memory.stat `file` minus `shmem`). The exited container's own cgroup when
// it is still there (its page cache only); once it is removed its pages belong
// to the parent `tern`, and that is reclaimed instead, as is the idle case.
// The guest has no swap, so reclaim never takes anonymous memory (nor tmpfs
// pages) of a running container: only clean (or written back) page cache,
// which is read again from its disk if wanted. With swap present the parent is
// never reclaimed. `drop_caches` is not used: it empties every cache in the
// guest, the agent's and Node's own files included.
//
// A cgroup with less page cache than RECLAIM_MIN_BYTES is left alone: free page
// reporting hands the host only whole free blocks of 2 MiB (pageblock order),
// which a few MiB of scattered page cache seldom make, while the reclaim runs
// kernel paths a template clone has not run yet, each emulated afresh under
// TCG. Measured on an idle pod (`sleep 3600`, 2 MiB of page cache): the idle
// reclaim cost ~110 ms of QEMU CPU and added ~5 MiB to QEMU's PSS.
import { promises as fs } from 'node:fs';
import path from 'node:path';

export interface ReclaimLog {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface MemoryReclaimerOptions {
  /** The cgroup v2 mount (default /sys/fs/cgroup). */
  cgroupRoot?: string;
  /** The containers' parent group under it (default tern). */
  parent?: string;
  /** Wait after an exit before reclaiming (default 2000 ms). */
  exitDelayMs?: number;
  /** Quiet time after which the parent is reclaimed once (default 60000 ms; 0 = never). */
  idleMs?: number;
  /** Where swap devices are listed (default /proc/swaps). */
  swapsFile?: string;
  log?: ReclaimLog;
}

/** Reclaimable page cache of a cgroup, from its memory.stat: `file` minus `shmem` (tmpfs cannot go without swap). */
export function reclaimableBytes(memoryStat: string): number {
  let file = 0;
  let shmem = 0;
  for (const line of memoryStat.split('\n')) {
    const [key, value] = line.split(' ');
    if (key === 'file') file = Number(value) || 0;
    else if (key === 'shmem') shmem = Number(value) || 0;
  }
  return Math.max(0, file - shmem);
}

/** True when /proc/swaps lists a swap device (its first line is a header). */
export function hasSwap(swaps: string): boolean {
  return swaps.split('\n').filter((l) => l.trim() !== '').length > 1;
}

/** Four 2 MiB pageblocks: less page cache seldom frees a block the host is told about. */
export const RECLAIM_MIN_BYTES = 8 * 1024 * 1024;

const noopLog: ReclaimLog = { info: () => undefined, debug: () => undefined };

export class MemoryReclaimer {
  private readonly root: string;
  private readonly parentDir: string;
  private readonly exitDelayMs: number;
  private readonly idleMs: number;
  private readonly swapsFile: string;
  private readonly log: ReclaimLog;
  private enabled: boolean;
  /** Exited containers whose reclaim is due, with its timer. */
  private readonly due = new Map<string, NodeJS.Timeout>();
  private idleTimer?: NodeJS.Timeout;
  /** Reclaims run one at a time. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(opts: MemoryReclaimerOptions & { enabled?: boolean } = {}) {
    this.root = opts.cgroupRoot ?? '/sys/fs/cgroup';
    this.parentDir = path.join(this.root, opts.parent ?? 'tern');
    this.exitDelayMs = opts.exitDelayMs ?? 2000;
    this.idleMs = opts.idleMs ?? 60_000;
    this.swapsFile = opts.swapsFile ?? '/proc/swaps';
    this.log = opts.log ?? noopLog;
    this.enabled = opts.enabled ?? true;
  }

  /** Off while a template warms up: nothing may be left pending in the memory its clones start from. */
  setEnabled(on: boolean): void {
    this.enabled = on;
    if (!on) this.close();
  }

  /** A container's init has exited and that exit was answered: reclaim its page cache a moment later. */
  containerExited(id: string): void {
    if (!this.enabled) return;
    this.schedule(id);
    this.armIdle();
  }

  /** A start-path call (create, start, exec) begins: due reclaims wait another delay, the quiet time starts over. */
  activity(): void {
    if (!this.enabled) return;
    for (const id of this.due.keys()) this.schedule(id);
    this.armIdle();
  }

  close(): void {
    for (const t of this.due.values()) clearTimeout(t);
    this.due.clear();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** Settles when the reclaims started so far are done (tests). */
  idle(): Promise<void> {
    return this.chain.then(() => undefined);
  }

  private schedule(id: string): void {
    const old = this.due.get(id);
    if (old) clearTimeout(old);
    const t = setTimeout(() => {
      this.due.delete(id);
      this.enqueue(() => this.reclaimExited(id));
    }, this.exitDelayMs);
    t.unref();
    this.due.set(id, t);
  }

  private armIdle(): void {
    if (this.idleMs <= 0) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      this.enqueue(() => this.reclaimParent('idle'));
    }, this.idleMs);
    this.idleTimer.unref();
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: Error) => this.log.debug({ err: err.message }, 'memory reclaim failed'));
  }

  private async reclaimExited(id: string): Promise<void> {
    const own = path.join(this.parentDir, id);
    if (await exists(path.join(own, 'memory.reclaim'))) {
      await this.reclaim(own, 'exit');
      return;
    }
    // Removed already: its pages were moved to the parent.
    await this.reclaimParent('exit');
  }

  private async reclaimParent(why: string): Promise<void> {
    const swaps = await fs.readFile(this.swapsFile, 'utf8').catch(() => '');
    if (hasSwap(swaps)) {
      this.log.debug({ why }, 'memory reclaim of all containers skipped: the guest has swap');
      return;
    }
    await this.reclaim(this.parentDir, why);
  }

  private async reclaim(dir: string, why: string): Promise<void> {
    const stat = await fs.readFile(path.join(dir, 'memory.stat'), 'utf8').catch(() => undefined);
    if (stat === undefined) return;
    const want = reclaimableBytes(stat);
    if (want === 0) return;
    if (want < RECLAIM_MIN_BYTES) {
      this.log.debug({ cgroup: path.relative(this.root, dir), why, reclaimableKiB: Math.round(want / 1024) }, 'page cache left: too little to give back');
      return;
    }
    const t0 = Date.now();
    try {
      await fs.writeFile(path.join(dir, 'memory.reclaim'), String(want));
    } catch (err) {
      // EAGAIN: less than asked could be reclaimed (pages in use again meanwhile).
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    }
    const after = await fs.readFile(path.join(dir, 'memory.stat'), 'utf8').catch(() => '');
    const left = reclaimableBytes(after);
    this.log.info({ cgroup: path.relative(this.root, dir), why, askedMiB: mib(want), leftMiB: mib(left), ms: Date.now() - t0 }, 'page cache reclaimed');
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 1048576);
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}
