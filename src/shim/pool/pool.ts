// The warm pool (`tern pool serve`): keeps pool.size VMs cloned from the
// template of the default guest shape, booted and with their agent
// answering, for shims to take instead of restoring one. Taking a VM hands
// it over whole: the pool releases the guest's hold, closes its agent and QMP
// connections, writes the owner record and forgets the VM; from then on the
// shim (or `delete` after it) owns its teardown. The pool refills one VM at a
// time in the background, only while the host has memory to spare, and backs
// off after failures instead of retrying a broken path forever.
//
// An idle pooled VM never outlives the pool: the guest agent powers its VM
// off when the pool's connection ends while it is held (HoldForPool), and a
// pool that starts removes whatever a dead predecessor left in pool.dir.
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TernConfig } from '../../common/config';
import type { Logger } from '../../common/logging';
import type { HypervisorDriver, Vm } from '../../hypervisor/hypervisor';
import { AgentClient, freshIdentity } from '../agent-client';
import { VmFactory, templateShape, templateVmSpec } from '../templates/factory';
import type { TemplateShape } from '../templates/key';
import { createSharedDir } from '../volumes';
import { removePooledVmDir } from './owned';
import { warmUpPooledVm } from './warm-up';
import { isPooledName, pooledPaths, readOwner, type PoolStatus, type Refused, type TakeGranted, type TakeRequest } from './protocol';
import { makeVmDirs, OWNER_DIR_MODE } from '../paths';
import { HostCgroup } from '../host-cgroup';
import { HOST_CGROUP_REMOVE_MS } from '../teardown-undoers';

const BACKOFF_FIRST_MS = 5_000;
/** A pooled VM's hostname until a shim takes it. */
const POOLED_HOSTNAME = 'tern-pooled';
const BACKOFF_MAX_MS = 120_000;

interface PooledVm {
  name: string;
  dir: string;
  vm: Vm;
  agent: AgentClient;
  readyAt: number;
  state: 'ready' | 'taken' | 'gone';
}

/** MemAvailable in MiB (Infinity if /proc/meminfo cannot be read). */
export function memAvailableMiB(meminfo = '/proc/meminfo'): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync(meminfo, 'utf8'));
    return m ? Number(m[1]) / 1024 : Infinity;
  } catch {
    return Infinity;
  }
}

export class WarmPool {
  private readonly ready: PooledVm[] = [];
  private readonly factory: VmFactory;
  private readonly shape: TemplateShape;
  private key = '';
  private starting = 0;
  private readonly inflight = new Set<Promise<void>>();
  private served = 0;
  private missed = 0;
  private failures = 0;
  private lastFailure = '';
  private backoffMs = 0;
  private retryTimer?: NodeJS.Timeout;
  private stopped = false;
  /**
   * The host cgroup of the VMs the pool is starting or keeping, with the
   * least CPU share: a refill right after a take would otherwise take the CPU
   * of the start it serves (2 cores, TCG: tern-pool 2.08 s, 1.71 s with the
   * refill held back). A shim moves the VM it takes into its pod's group.
   */
  private idleGroup?: HostCgroup;

  constructor(
    private readonly cfg: TernConfig,
    private readonly driver: HypervisorDriver,
    private readonly log: Logger,
  ) {
    this.factory = new VmFactory(cfg, driver, log);
    this.shape = templateShape(cfg, cfg.hypervisor.vcpus, cfg.hypervisor.memoryMiB);
  }

  /**
   * Removes what a dead predecessor left in pool.dir: its idle VMs (no owner
   * record), and taken ones whose owning sandbox directory is gone.
   */
  async sweep(): Promise<number> {
    // Others may only pass through, to a pooled VM's 9p share (QEMU as hypervisor.run_as).
    mkdirSync(this.cfg.pool.dir, { recursive: true, mode: OWNER_DIR_MODE });
    chmodSync(this.cfg.pool.dir, OWNER_DIR_MODE);
    let removed = 0;
    for (const name of readdirSync(this.cfg.pool.dir)) {
      if (!isPooledName(name)) continue;
      const dir = join(this.cfg.pool.dir, name);
      const owner = readOwner(dir);
      if (owner && existsSync(owner.owner)) continue;
      this.log.warn({ dir, owner: owner?.owner }, 'removing a pooled VM left behind');
      await removePooledVmDir(dir, this.driver, this.log);
      removed++;
    }
    return removed;
  }

  /** Starts VMs until the pool is full (one at a time), unless stopped, backing off, or short of memory. */
  refill(): void {
    if (this.stopped || this.retryTimer || this.starting > 0) return;
    if (this.ready.length >= this.cfg.pool.size) return;
    const avail = memAvailableMiB();
    const need = this.cfg.pool.reserveMiB + this.shape.memoryMiB;
    if (avail < need) {
      this.log.warn({ availableMiB: Math.round(avail), needMiB: need }, 'warm pool not refilled: host memory is short');
      this.retryLater();
      return;
    }
    this.starting++;
    const p = this.startOne()
      .then(async (pv) => {
        this.backoffMs = 0;
        if (this.stopped) {
          await this.discard(pv, 'pool stopping');
          return;
        }
        this.ready.push(pv);
        this.log.info({ name: pv.name, pid: pv.vm.pid, ready: this.ready.length, size: this.cfg.pool.size }, 'pooled VM ready');
      })
      .catch((err: Error) => {
        this.failures++;
        this.lastFailure = err.message;
        this.log.error({ err: err.message }, 'starting a pooled VM failed');
        this.retryLater();
      })
      .finally(() => {
        this.starting--;
        this.inflight.delete(p);
        this.refill();
      });
    this.inflight.add(p);
  }

  private retryLater(): void {
    if (this.stopped || this.retryTimer) return;
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs ? this.backoffMs * 2 : BACKOFF_FIRST_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.refill();
    }, this.backoffMs);
    this.retryTimer.unref();
  }

  private async startOne(): Promise<PooledVm> {
    const template = await this.factory.template(this.shape);
    this.key = template.key;
    const name = `vm-${randomBytes(6).toString('hex')}`;
    const dir = join(this.cfg.pool.dir, name);
    const paths = pooledPaths(dir);
    makeVmDirs(dir, paths.vmDir);
    let vm: Vm | undefined;
    let agent: AgentClient | undefined;
    try {
      await createSharedDir(dir);
      try {
        vm = await this.driver.start({
          ...templateVmSpec(this.shape),
          id: name,
          runDir: paths.vmDir,
          sharedDir: paths.sharedDir,
          handover: true,
          template: { role: 'clone', memoryPath: template.memoryPath, statePath: template.statePath },
        });
        this.intoIdleGroup(vm.pid);
      } catch (err) {
        const booked = this.factory.cloneFailed(template, err);
        this.log.warn({ key: template.key, err: (err as Error).message, ...booked }, 'pooled VM clone failed');
        throw err;
      }
      agent = new AgentClient(await vm.connectAgent(), this.cfg.agent.callTimeoutMs);
      await agent.check(this.cfg.agent.bootTimeoutMs);
      // Its own identity now, off the start path: the shim that takes it sets only the pod's hostname.
      await agent.adoptIdentity(freshIdentity(POOLED_HOSTNAME));
      // The container path translated and compiled while the VM waits, not on the start that takes it.
      const warmedAt = performance.now();
      const status = await warmUpPooledVm(vm, agent, this.shape.image, dir, this.shape.writableSlotMiB, this.shape.runAs);
      this.log.info({ name, status, ms: Math.round(performance.now() - warmedAt) }, 'pooled VM warmed up');
      await agent.holdForPool(true);
      this.factory.store.noteCloneSuccess(template.key);
    } catch (err) {
      agent?.close();
      await vm?.cleanup().catch((e: Error) => this.log.error({ err: e.message, name }, 'stopping a failed pooled VM'));
      await removePooledVmDir(dir, this.driver, this.log).catch((e: Error) => this.log.error({ err: e.message, dir }, 'removing a failed pooled VM'));
      throw err;
    }
    const pv: PooledVm = { name, dir, vm, agent, readyAt: Date.now(), state: 'ready' };
    void vm.waitExit().then((exit) => {
      if (pv.state !== 'ready') return;
      const i = this.ready.indexOf(pv);
      if (i >= 0) this.ready.splice(i, 1);
      this.failures++;
      this.lastFailure = `pooled VM ${name} exited while idle (${exit.signal ?? `exit ${exit.code}`})`;
      this.log.warn({ name, code: exit.code, signal: exit.signal, output: exit.stderrTail }, 'pooled VM exited while idle');
      void this.discard(pv, 'exited').finally(() => this.refill());
    });
    return pv;
  }

  /** Puts a pooled VM's QEMU in the least-CPU group; one that cannot be made only costs the priority (logged once). */
  private intoIdleGroup(pid: number): void {
    try {
      if (!this.idleGroup) {
        const group = new HostCgroup(`pool-${createHash('sha256').update(this.cfg.pool.dir).digest('hex').slice(0, 12)}`);
        group.create();
        const problems = group.leastCpu();
        if (problems.length > 0) this.log.warn({ problems }, 'pooled VMs keep the default CPU share');
        this.idleGroup = group;
      }
      this.idleGroup.add(pid);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'pooled VM not moved to the low-priority cgroup');
    }
  }

  /** Stops a VM the pool still owns and removes its directory. */
  private async discard(pv: PooledVm, why: string): Promise<void> {
    pv.state = 'gone';
    pv.agent.close();
    await pv.vm.cleanup().catch((err: Error) => this.log.error({ err: err.message, name: pv.name }, 'stopping a pooled VM failed'));
    await removePooledVmDir(pv.dir, this.driver, this.log).catch((err: Error) =>
      this.log.error({ err: err.message, dir: pv.dir }, 'removing a pooled VM failed'),
    );
    this.log.info({ name: pv.name, why }, 'pooled VM removed');
  }

  /** Hands a ready VM to the shim asking, or says why not. */
  async take(req: TakeRequest): Promise<TakeGranted | Refused> {
    if (this.stopped) return { ok: false, reason: 'the warm pool is stopping' };
    if (this.key && req.key !== this.key) {
      this.missed++;
      return { ok: false, reason: `the pool's VMs have template key ${this.key}, the pod wants ${req.key}` };
    }
    for (;;) {
      const pv = this.ready.shift();
      if (!pv) {
        this.missed++;
        this.refill();
        return { ok: false, reason: `no ready VM in the pool (${this.starting} starting)` };
      }
      pv.state = 'taken';
      try {
        await pv.agent.holdForPool(false);
      } catch (err) {
        this.failures++;
        this.lastFailure = `pooled VM ${pv.name} did not answer: ${(err as Error).message}`;
        this.log.warn({ name: pv.name, err: (err as Error).message }, 'pooled VM did not answer: discarding it');
        await this.discard(pv, 'did not answer');
        continue;
      }
      pv.agent.close();
      pv.vm.release();
      writeFileSync(pooledPaths(pv.dir).ownerFile, JSON.stringify({ owner: req.owner, sandboxId: req.sandboxId, takenAt: new Date().toISOString() }), {
        mode: 0o600,
      });
      this.served++;
      const idleMs = Date.now() - pv.readyAt;
      this.log.info({ name: pv.name, sandbox: req.sandboxId, owner: req.owner, idleMs }, 'pooled VM handed over');
      this.refill();
      return { ok: true, dir: pv.dir, name: pv.name, pid: pv.vm.pid, idleMs };
    }
  }

  status(): PoolStatus {
    const now = Date.now();
    return {
      ok: true,
      pid: process.pid,
      size: this.cfg.pool.size,
      key: this.key,
      ready: this.ready.map((pv) => ({ name: pv.name, pid: pv.vm.pid, idleMs: now - pv.readyAt })),
      starting: this.starting,
      served: this.served,
      missed: this.missed,
      failures: this.failures,
      lastFailure: this.lastFailure,
    };
  }

  /** Stops refilling, waits for VMs being started, and removes every VM the pool still owns. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await Promise.allSettled([...this.inflight]);
    const idle = this.ready.splice(0);
    await Promise.all(idle.map((pv) => this.discard(pv, 'pool stopping')));
    const left = (await this.idleGroup?.removeWithin(HOST_CGROUP_REMOVE_MS)) ?? [];
    if (left.length > 0) this.log.warn({ left }, 'the cgroup of the pooled VMs was not removed');
    this.idleGroup = undefined;
  }
}
