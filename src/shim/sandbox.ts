// The pod sandbox on the host: one VM, the agent connection, the image-layer
// disks attached to it, and its directory under <stateDir>/sb/. The VM is
// booted once (the first Create, or the CRI sandbox container) and torn down
// by destroy(), which is idempotent and also runs when the VM dies on its own.
import { basename, join } from 'node:path';
import type { TernConfig } from '../common/config';
import { TernError, deadlineExceeded, failedPrecondition, internal, unavailable } from '../common/errors';
import type { Logger } from '../common/logging';
import type { HypervisorDriver, Vm, VmExit, VmSpec } from '../hypervisor/hypervisor';
import { AgentClient, freshIdentity } from './agent-client';
import { setupHostNetwork, type HostPortForwarder } from './host-network';
import { guestInterfaces, readPodNetwork, teardownPodNetwork, wirePodNetwork, type PodNetwork } from './network';
import { createSharedDir, removeSandboxDir, sharedDirOf } from './volumes';
import { HostCgroup } from './host-cgroup';
import { VmFactory, templateShape, templateVmSpec } from './templates/factory';
import type { TemplateShape } from './templates/key';
import type { Template } from './templates/store';
import { poolRequest } from './pool/client';
import { parseTakeReply, pooledPaths, type TakeGranted } from './pool/protocol';
import { eventsPath, StartEventLog, type StartEvent, type StartPathName } from './metrics-events';
import { StartRecorder } from './metrics-recorder';
import { HealthCheck } from './health-check';
import { LayerDisks } from './layer-disks';
import { VmResizer } from './vm-resize';
import { writeStateFile } from './state-file';
import { makeVmDirs } from './paths';
import { consoleTail } from './vm-console';
import { TeardownLedger, type Undoers } from './teardown-ledger';
import { diskUndoers, HOST_CGROUP_REMOVE_MS } from './teardown-undoers';

/** How long a shim waits for the warm pool to hand it a VM before it starts one. */
const POOL_TAKE_TIMEOUT_MS = 3_000;

/** The guest's hostname for a sandbox id: its first 12 letters, digits or dashes after "tern-". */
export function guestHostname(id: string): string {
  const clean = id
    .replace(/[^A-Za-z0-9-]/g, '-')
    .slice(0, 12)
    .replace(/-+$/, '');
  return clean ? `tern-${clean}` : 'tern';
}

/** What the first container of a pod decides about its VM. */
export interface BootOptions {
  /** The pod's network namespace (CRI); absent = no NIC, loopback only. */
  netnsPath?: string;
  /** The pod asked for the node's network (no namespace of its own): a host NIC and forwarded ports (host-network.ts). */
  hostNetwork?: boolean;
  vcpus?: number;
  memoryMiB?: number;
}

export type SandboxState = 'new' | 'booting' | 'ready' | 'stopping' | 'stopped';

export interface SandboxRecord {
  namespace: string;
  id: string;
  shimPid: number;
  vmDir: string;
  createdAt: string;
  /** The template store this sandbox's shim may build in (for `delete` after it dies). */
  templateDir?: string;
  /** The warm pool's directory, where a VM this sandbox took lives (for `delete`). */
  poolDir?: string;
  /** The pooled VM's directory, once this sandbox took one (its vm/ is vmDir). */
  pooledDir?: string;
  /** How the VM came up, once it has. */
  startPath?: StartPath;
  /** The shim's task socket (what `tern metrics` asks for the containers' stats). */
  shimSocket?: string;
}

export type StartPath = StartPathName;

export class Sandbox {
  state: SandboxState = 'new';
  vm?: Vm;
  agent?: AgentClient;
  private booting?: Promise<void>;
  private exitHandlers: Array<(exit: VmExit, reason: string) => void> = [];
  private dirRemovalHandlers: Array<() => void> = [];
  private exitReported = false;
  /** Grows the running VM for containers' larger limits (memory and CPU hot-plug). */
  resizer?: VmResizer;
  private health?: HealthCheck;
  /** The VM's runDir: <dir>/vm, or the pooled VM's when the VM came from the warm pool. */
  vmDir: string;
  /** Exported to the guest over virtio-9p; host volumes are bound into it (volumes.ts). */
  sharedDir: string;
  /** The pooled VM's directory (vm/, shared/), when the VM came from the warm pool. */
  pooledDir?: string;
  private record?: SandboxRecord;
  /** Every host resource this sandbox acquires, in order: the one teardown (teardown-ledger.ts). */
  private readonly ledger: TeardownLedger;
  /** VMs launched or adopted and not yet undone, by run directory (a live one is stopped, not killed). */
  private readonly liveVms = new Map<string, Vm>();
  /** Boot-phase timings in ms since the boot began, for the start-path log and benchmarks. */
  readonly timings: Record<string, number> = {};
  /** performance.now() when the boot began; 0 before. */
  bootStartedAt = 0;
  /** The shim's task socket, recorded in sandbox.json. */
  shimSocket?: string;
  /** The start's record for `tern metrics`: fallbacks, then its outcome (metrics-recorder.ts). */
  readonly start: StartRecorder;
  private eventLog?: StartEventLog;

  constructor(
    readonly namespace: string,
    readonly id: string,
    readonly dir: string,
    private cfg: TernConfig,
    private readonly driver: HypervisorDriver,
    private readonly log: Logger,
  ) {
    this.vmDir = join(dir, 'vm');
    this.sharedDir = sharedDirOf(dir);
    this.ledger = new TeardownLedger(dir);
    this.start = new StartRecorder(namespace, id, (e) => this.recordStartEvent(e));
    this.layerDisks = new LayerDisks(() => (this.state === 'ready' ? this.vm : undefined), log);
  }

  /** One append to the events file (its path from the config in force: runtime options may change it before the boot). */
  private recordStartEvent(e: StartEvent): void {
    const maxMiB = this.cfg.metrics.eventsMaxMiB;
    if (maxMiB <= 0) return;
    this.eventLog ??= new StartEventLog(eventsPath(this.cfg.runtime.stateDir), Math.round(maxMiB * 1024 * 1024), (err) =>
      this.log.debug({ err: err.message }, 'start event not recorded'),
    );
    this.eventLog.append(e);
  }

  /** How the VM came up, once it is ready. */
  get startPath(): StartPath | undefined {
    return this.record?.startPath;
  }

  private factoryInstance?: VmFactory;
  private get factory(): VmFactory {
    this.factoryInstance ??= new VmFactory(this.cfg, this.driver, this.log);
    return this.factoryInstance;
  }

  setConfig(cfg: TernConfig): void {
    if (this.state !== 'new') throw failedPrecondition('the sandbox VM is already running; its config cannot change');
    this.cfg = cfg;
  }

  /** Called once when the VM is gone or its guest is lost, with why. */
  onVmExit(fn: (exit: VmExit, reason: string) => void): void {
    this.exitHandlers.push(fn);
  }

  /** Called once, right before destroy() removes the sandbox directory (whoever writes into it stops). */
  beforeDirRemoval(fn: () => void): void {
    this.dirRemovalHandlers.push(fn);
  }

  private reportExit(exit: VmExit, reason: string): void {
    if (this.exitReported) return;
    this.exitReported = true;
    for (const fn of this.exitHandlers) fn(exit, reason);
  }

  /** Boots the VM and waits for the agent, once; concurrent callers share the boot. */
  ensureReady(opts: BootOptions = {}): Promise<void> {
    if (this.state === 'ready') return Promise.resolve();
    if (this.state === 'stopping' || this.state === 'stopped') return Promise.reject(unavailable(`sandbox ${this.id} is ${this.state}`));
    if (!this.booting) {
      this.booting = this.boot(opts).catch(async (err) => {
        this.start.failed('vm_ready', err);
        await this.destroy('boot failed');
        throw err;
      });
    }
    return this.booting;
  }

  /** The pod network wired for this VM (taps + redirects), torn down in destroy. */
  network?: PodNetwork;
  /** A host-network pod's forwarded ports (they end with the VM). */
  hostPorts?: HostPortForwarder;
  private hostCgroup?: HostCgroup;

  private async boot(opts: BootOptions): Promise<void> {
    this.state = 'booting';
    const t0 = performance.now();
    this.bootStartedAt = t0;
    makeVmDirs(this.dir, this.vmDir);
    this.record = {
      namespace: this.namespace,
      id: this.id,
      shimPid: process.pid,
      vmDir: this.vmDir,
      createdAt: new Date().toISOString(),
      shimSocket: this.shimSocket,
      templateDir: this.cfg.factory.template ? this.cfg.factory.templateDir : undefined,
      poolDir: this.cfg.pool.size > 0 ? this.cfg.pool.dir : undefined,
    };
    // Written before a VM is taken from the pool: its owner record names this directory.
    await this.writeRecord();
    if (this.cfg.factory.template) this.ledger.record({ kind: 'template-builds', templateDir: this.cfg.factory.templateDir, shimPid: process.pid });
    // Before the take: one that times out here may still complete in the pool, owned by this sandbox.
    if (this.cfg.pool.size > 0) this.ledger.record({ kind: 'pooled-vms', poolDir: this.cfg.pool.dir });
    const h = this.cfg.hypervisor;
    const shape = templateShape(this.cfg, opts.vcpus ?? h.vcpus, opts.memoryMiB ?? h.memoryMiB);
    this.resizer = new VmResizer(shape, () => (this.state === 'ready' && this.vm && this.agent ? { vm: this.vm, agent: this.agent } : undefined), this.log);
    // Both before the pod's cgroup is entered: the pool and a template outlive this pod.
    const pooled = await this.takeFromPool(shape);
    let template = pooled ? undefined : await this.findTemplate(shape);
    // The pod's host cgroup: entered before anything is launched, so QEMU and
    // every helper are accounted to the pod from their first page.
    this.ledger.record({ kind: 'host-cgroup', name: basename(this.dir) });
    this.hostCgroup = new HostCgroup(basename(this.dir));
    this.hostCgroup.create();
    this.hostCgroup.enterSelf();
    let started: { vm: Vm; agent: AgentClient } | undefined;
    if (pooled) {
      started = await this.adoptPooled(pooled, shape, opts);
      // Rare: the pool's template is there, so this finds it rather than builds it.
      if (!started) template = await this.findTemplate(shape);
    }
    if (!started) started = await this.startOwnVm(shape, opts, template);
    const { vm, agent } = started;
    this.vm = vm;
    this.agent = agent;
    this.timings.agentReady = performance.now() - t0;
    void vm.waitExit().then((e) => {
      if (this.state !== 'stopping' && this.state !== 'stopped') {
        this.log.error({ code: e.code, signal: e.signal, stderr: e.stderrTail }, 'VM exited unexpectedly');
      }
      this.reportExit(e, `VM exited (qemu ${e.signal ?? `exit ${e.code}`})`);
      void this.destroy('vm exited');
    });
    if (this.network && this.network.interfaces.length > 0) {
      await agent.configureNetwork(guestInterfaces(this.network), this.network.routes);
      this.timings.networkConfigured = performance.now() - t0;
    } else if (opts.hostNetwork) {
      this.hostPorts = await setupHostNetwork(vm, agent, this.log);
      this.timings.networkConfigured = performance.now() - t0;
    }
    this.ledger.checkpoint();
    this.state = 'ready';
    this.timings.vmReady = performance.now() - t0;
    this.start.phase('vm_ready', this.timings.vmReady);
    this.record = { ...this.record!, startPath: this.timings.fromPool ? 'pool' : this.timings.fromTemplate ? 'template' : 'cold' };
    await this.writeRecord();
    const { healthIntervalMs: intervalMs, healthTimeoutMs: timeoutMs, healthFailures: failures } = this.cfg.agent;
    this.health = new HealthCheck(agent, { intervalMs, timeoutMs, failures }, this.log, (reason) => {
      if (this.state !== 'ready') return;
      this.log.error({ reason }, 'guest lost: reporting its containers as exited and stopping the VM');
      this.reportExit({ code: null, signal: null, stderrTail: '' }, reason);
      void this.destroy(reason);
    });
    this.health.start();
    this.log.info({ accel: vm.accel, qemuPid: vm.pid, ...this.timings }, 'sandbox VM ready');
  }

  /** Launches this sandbox's own VM: a clone of `template` if there is one (cold boot if that fails), else a cold boot. */
  private async startOwnVm(shape: TemplateShape, opts: BootOptions, template: Template | undefined): Promise<{ vm: Vm; agent: AgentClient }> {
    await createSharedDir(this.dir);
    if (opts.netnsPath) await this.setupNetwork(opts.netnsPath);
    const spec: VmSpec = {
      ...templateVmSpec(shape),
      id: this.id,
      runDir: this.vmDir,
      netnsPath: this.network && this.network.interfaces.length > 0 ? this.network.netnsPath : undefined,
      nics: this.network?.interfaces.map((itf, i) => ({ id: `net${i}`, tap: itf.tap, mac: itf.mac })),
      sharedDir: this.sharedDir,
    };
    if (template) {
      try {
        const started = await this.startVm({ ...spec, template: { role: 'clone', memoryPath: template.memoryPath, statePath: template.statePath } });
        this.timings.fromTemplate = 1;
        this.factory.store.noteCloneSuccess(template.key);
        return started;
      } catch (err) {
        const { restoreRefused, templateRemoved } = this.factory.cloneFailed(template, err);
        const fields = { key: template.key, err: (err as Error).message, templateRemoved };
        // A refused restore blames the template; anything else more likely load.
        if (restoreRefused) this.log.warn(fields, 'VM clone failed to restore from its template: booting cold');
        else this.log.warn(fields, 'VM clone from template did not come up: booting cold');
        this.start.fallback('template', restoreRefused ? 'restore_refused' : 'clone_failed', fields.err);
      }
    }
    return this.startVm(spec);
  }

  /** The pod's taps and redirects in its network namespace, recorded in the ledger before they are made. */
  private async setupNetwork(netnsPath: string): Promise<void> {
    const network = await readPodNetwork(netnsPath);
    this.ledger.record({ kind: 'pod-network', network });
    await wirePodNetwork(network);
    this.network = network;
    this.timings.networkReady = performance.now() - this.bootStartedAt;
  }

  private async writeRecord(): Promise<void> {
    await writeStateFile(join(this.dir, 'sandbox.json'), JSON.stringify(this.record));
  }

  /** A ready VM from the warm pool, or undefined (pool off, empty, unreachable, a pod it cannot serve: logged). */
  private async takeFromPool(shape: TemplateShape): Promise<TakeGranted | undefined> {
    const pool = this.cfg.pool;
    if (pool.size === 0) return undefined;
    const t0 = performance.now();
    try {
      const key = this.factory.keyOf(shape);
      const line = await poolRequest(pool.socket, { op: 'take', key, sandboxId: this.id, owner: this.dir }, POOL_TAKE_TIMEOUT_MS);
      const reply = parseTakeReply(line, pool.dir);
      if (!reply.ok) {
        this.log.info({ reason: reply.reason }, 'warm pool had no VM for this pod');
        this.start.fallback('pool', 'refused', reply.reason);
        return undefined;
      }
      this.timings.poolTaken = performance.now() - t0;
      return reply;
    } catch (err) {
      // A take that timed out may still complete: destroy() removes what this sandbox owns in the pool.
      this.log.warn({ err: (err as Error).message }, 'warm pool not reachable');
      this.start.fallback('pool', 'unreachable', (err as Error).message);
      return undefined;
    }
  }

  /** Adopts a VM taken from the pool; undefined (the VM removed, logged) if that fails. */
  private async adoptPooled(granted: TakeGranted, shape: TemplateShape, opts: BootOptions): Promise<{ vm: Vm; agent: AgentClient } | undefined> {
    const p = pooledPaths(granted.dir);
    const mark = this.ledger.mark();
    let started: { vm: Vm; agent: AgentClient } | undefined;
    try {
      this.ledger.record({ kind: 'pooled-vms', poolDir: this.cfg.pool.dir });
      this.hostCgroup!.add(granted.pid);
      started = await this.startVm({ ...templateVmSpec(shape), id: this.id, runDir: p.vmDir, sharedDir: p.sharedDir }, 'adopt');
      if (opts.netnsPath) {
        // The pooled QEMU runs outside the pod's network namespace: each tap is opened in there and handed to it.
        await this.setupNetwork(opts.netnsPath);
        for (const [i, itf] of this.network!.interfaces.entries()) {
          await started.vm.attachNic({ id: `net${i}`, tap: itf.tap, mac: itf.mac }, this.network!.netnsPath);
        }
      }
      this.vmDir = p.vmDir;
      this.sharedDir = p.sharedDir;
      this.pooledDir = granted.dir;
      this.record = { ...this.record!, vmDir: p.vmDir, pooledDir: granted.dir };
      await this.writeRecord();
      this.timings.fromPool = 1;
      return started;
    } catch (err) {
      this.log.warn({ err: (err as Error).message, pooled: granted.name }, 'VM from the warm pool could not be adopted: starting one');
      this.start.fallback('pool', 'adopt_failed', (err as Error).message);
      started?.agent.close();
      this.vm = undefined;
      // The VM, its taps and the pooled directory: what this path recorded, undone as destroy would.
      await this.ledger.undoSince(mark, this.undoers(), this.log);
      return undefined;
    }
  }

  /** The template to clone this VM from, or undefined (disabled, or none can be had: logged). */
  private async findTemplate(shape: TemplateShape): Promise<Template | undefined> {
    if (!this.cfg.factory.template) return undefined;
    const t0 = performance.now();
    try {
      const template = await this.factory.template(shape);
      this.timings.templateReady = performance.now() - t0;
      return template;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'no VM template: booting cold');
      this.start.fallback('template', 'unavailable', (err as Error).message);
      return undefined;
    }
  }

  /**
   * Launches a VM (cold, or restored from a template) and waits for its
   * agent; a clone then adopts its own identity. On failure the VM is gone.
   */
  private async startVm(spec: VmSpec, how: 'launch' | 'adopt' = 'launch'): Promise<{ vm: Vm; agent: AgentClient }> {
    const t0 = this.bootStartedAt;
    const mark = this.ledger.mark();
    this.ledger.record({ kind: 'vm', runDir: spec.runDir });
    let vm: Vm;
    try {
      vm = how === 'adopt' ? await this.driver.adopt(spec) : await this.driver.start(spec);
    } catch (err) {
      await this.ledger.undoSince(mark, this.undoers(), this.log);
      throw err;
    }
    this.liveVms.set(spec.runDir, vm);
    this.vm = vm; // so that a destroy() meanwhile stops it
    this.timings.vmLaunched = performance.now() - t0;
    let agent: AgentClient | undefined;
    try {
      let exited: VmExit | undefined;
      const exitP = vm.waitExit().then((e) => {
        exited = e;
        return e;
      });
      agent = new AgentClient(await vm.connectAgent(), this.cfg.agent.callTimeoutMs, Math.max(this.cfg.agent.callTimeoutMs, this.cfg.agent.bootTimeoutMs));
      // A pooled VM's agent is up and its identity adopted in the pool: it
      // only takes the pod's hostname, which doubles as the liveness check.
      const bootTimeout = how === 'adopt' ? this.cfg.agent.callTimeoutMs : this.cfg.agent.bootTimeoutMs;
      const first = how === 'adopt' ? agent.setHostname(guestHostname(this.id)) : agent.check(bootTimeout);
      const outcome = await Promise.race([first.then(() => 'ready' as const), exitP.then(() => 'exited' as const)]).catch((err: unknown) => err);
      if (outcome !== 'ready') {
        // A dying QEMU closes the agent socket a moment before its exit is
        // seen: give the exit a short while to show, so the cause is named right.
        if (outcome !== 'exited' && !exited) {
          await Promise.race([exitP, new Promise((r) => setTimeout(r, 1000).unref())]);
        }
        const guestConsole = await consoleTail(spec.runDir);
        if (outcome === 'exited' || exited) {
          throw internal(
            `VM exited during boot (qemu ${exited?.signal ?? `exit ${exited?.code}`}): ${exited?.stderrTail.trim() || 'no stderr'}; guest console: ${guestConsole}`,
          );
        }
        if (outcome instanceof TernError && outcome.code === 'DeadlineExceeded') {
          throw deadlineExceeded(`guest agent did not answer within ${bootTimeout} ms (accel ${vm.accel}); guest console: ${guestConsole}`);
        }
        throw internal(`guest agent check failed: ${(outcome as Error).message}; guest console: ${guestConsole}`);
      }
      this.timings.agentAnswered = performance.now() - t0;
      if (spec.template?.role === 'clone') {
        await agent.adoptIdentity(freshIdentity(guestHostname(this.id)));
        this.timings.identityAdopted = performance.now() - t0;
      }
      return { vm, agent };
    } catch (err) {
      agent?.close();
      this.vm = undefined;
      await this.ledger.undoSince(mark, this.undoers(), this.log);
      throw err;
    }
  }

  /**
   * How this live sandbox undoes each ledger step: a VM it holds is stopped
   * (then its files removed), its own host cgroup is left before removal, a
   * template build in this live process ends by itself; anything else as
   * `delete` after a dead shim would (teardown-undoers.ts).
   */
  private undoers(): Undoers {
    const disk = diskUndoers(this.dir, this.driver, this.log);
    return {
      ...disk,
      'template-builds': async () => {},
      'host-cgroup': async (s) => {
        if (this.hostCgroup?.name !== s.name) return disk['host-cgroup'](s);
        this.hostCgroup.leaveSelf();
        const left = await this.hostCgroup.removeWithin(HOST_CGROUP_REMOVE_MS);
        if (left.length > 0) this.log.error({ left }, 'pod host cgroup not removed');
      },
      'pod-network': async (s) => {
        await teardownPodNetwork(s.network);
        if (this.network?.netnsPath === s.network.netnsPath) this.network = undefined;
      },
      vm: async (s) => {
        const vm = this.liveVms.get(s.runDir);
        if (!vm) return disk.vm(s);
        this.liveVms.delete(s.runDir);
        await vm.stop(3000).catch((err: Error) => this.log.error({ err: err.message }, 'stopping VM failed'));
        await vm.cleanup().catch((err: Error) => this.log.error({ err: err.message }, 'VM cleanup failed'));
      },
    };
  }

  /** The image layers' disks, shared by the containers (layer-disks.ts). */
  readonly layerDisks: LayerDisks;

  /** Powers the VM off (agent first, then the hypervisor), removes the sandbox directory. Idempotent. */
  private destroying?: Promise<void>;
  destroy(reason: string): Promise<void> {
    if (!this.destroying) this.destroying = this.doDestroy(reason);
    return this.destroying;
  }

  private async doDestroy(reason: string): Promise<void> {
    const prev = this.state;
    this.state = 'stopping';
    this.health?.stop();
    this.hostPorts?.stop();
    this.log.info({ reason, from: prev }, 'destroying sandbox');
    if (this.agent && prev === 'ready') {
      await this.agent.destroySandbox(2000).catch(() => undefined);
    }
    this.agent?.close();
    // Every host resource, newest first, as recorded; the directory (volumes unmounted first) last.
    await this.ledger.undoAll(this.undoers(), this.log);
    for (const fn of this.dirRemovalHandlers) fn();
    // Host volumes are unmounted before anything is removed.
    await removeSandboxDir(this.dir, this.log).catch((err: Error) => this.log.error({ err: err.message }, 'removing the sandbox directory failed'));
    this.state = 'stopped';
  }
}
