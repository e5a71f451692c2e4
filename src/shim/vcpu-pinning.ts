// Pinning a pod VM's vCPU threads to the host CPUs its containers ask for
// (cpuset.ts reads and checks the lists). A pod has one VM for all its
// containers, so every vCPU thread gets the union of the pinned containers'
// sets; containers without a set count for nothing. When the last pinned
// container unpins or goes, the threads float again: they get back the
// affinity of the hypervisor's main thread, which tern never changes (what
// they had when they were made). A pod nobody pins costs nothing: no thread
// is queried and no helper runs until a container asks. vCPUs hot-plugged
// while a pinning is in force are pinned too (refresh, from vm-resize.ts).
import type { Logger } from '../common/logging';
import { formatCpuList } from './cpu-list';

export interface AffinityOps {
  /** Host thread ids of the VM's vCPUs (one thread may run several under a single-threaded TCG). */
  vcpuThreads(): Promise<number[]>;
  /** The CPUs the vCPU threads float on when nothing is pinned. */
  floating(): number[];
  setAffinity(tid: number, cpus: readonly number[]): Promise<void>;
}

export class VcpuPinning {
  /** Each pinned container's host CPUs. */
  private readonly wanted = new Map<string, number[]>();
  /** The union in force on the vCPU threads; undefined while they float as launched. */
  private applied?: string;
  /** A change failed part way: the threads' affinity is not known to be `applied`. */
  private unsettled = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ops: AffinityOps,
    private readonly log: Logger,
  ) {}

  /** Whether the vCPU threads are pinned now. */
  get pinned(): boolean {
    return this.applied !== undefined;
  }

  /** The host CPUs the vCPU threads are pinned to now ("" while floating). */
  get inForce(): string {
    return this.applied ?? '';
  }

  /** The host CPUs container `id` is pinned to, if it is. */
  of(id: string): number[] | undefined {
    const cpus = this.wanted.get(id);
    return cpus ? [...cpus] : undefined;
  }

  /**
   * Container `id` is pinned to `cpus` (or to nothing: undefined); every vCPU
   * thread gets the new union. If that fails the container's former wish is
   * put back (and re-applied as far as possible) and the error thrown.
   */
  set(id: string, cpus: readonly number[] | undefined): Promise<void> {
    return this.serialize(async () => {
      const before = this.wanted.get(id);
      if (cpus === undefined) this.wanted.delete(id);
      else this.wanted.set(id, [...cpus]);
      try {
        await this.apply(false);
      } catch (err) {
        if (before === undefined) this.wanted.delete(id);
        else this.wanted.set(id, before);
        await this.apply(true).catch((again: Error) => this.log.warn({ err: again.message }, 'vCPU pinning not restored after a failed change'));
        throw err;
      }
    });
  }

  /** Container `id` is gone: its CPUs leave the union. */
  remove(id: string): Promise<void> {
    return this.set(id, undefined);
  }

  /** vCPUs were added: while a pinning is in force, every vCPU thread (the new ones too) gets it. */
  refresh(): Promise<void> {
    return this.serialize(async () => {
      if (this.applied !== undefined || this.unsettled) await this.apply(true);
    });
  }

  private union(): number[] {
    const all = new Set<number>();
    for (const cpus of this.wanted.values()) for (const c of cpus) all.add(c);
    return [...all].sort((a, b) => a - b);
  }

  /** Puts the union (or, with none, the floating set) on every vCPU thread; `force` even when it is already in force. */
  private async apply(force: boolean): Promise<void> {
    const union = this.union();
    const next = union.length > 0 ? formatCpuList(union) : undefined;
    if (!force && next === this.applied) return;
    if (next === undefined && this.applied === undefined && !this.unsettled) return; // never pinned: the threads float as launched
    const target = union.length > 0 ? union : this.ops.floating();
    this.unsettled = true;
    const threads = [...new Set(await this.ops.vcpuThreads())];
    await Promise.all(threads.map((tid) => this.ops.setAffinity(tid, target)));
    this.applied = next;
    this.unsettled = false;
    this.log.info(
      { cpus: formatCpuList(target), threads, pinned: next !== undefined },
      next === undefined ? 'vCPU threads float again' : 'vCPU threads pinned',
    );
  }

  private serialize(op: () => Promise<void>): Promise<void> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
