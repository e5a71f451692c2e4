// The pod sandbox on the host: its directory under <stateDir>/sb/, its
// teardown ledger, and its life as one explicit state: new -> booting ->
// ready (a RunningSandbox) -> stopping -> stopped. The VM is booted once (the
// first Create, or the CRI sandbox container; booter.ts) and torn down by
// destroy(), which is idempotent and also runs when the VM dies on its own.
import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { TernConfig } from '../common/config';
import { failedPrecondition, unavailable } from '../common/errors';
import { selfStartTime } from '../common/proc';
import type { Logger } from '../common/logging';
import type { HypervisorDriver, Vm, VmExit } from '../hypervisor/hypervisor';
import type { BootEnv, BootOptions, PodCgroup } from './boot-env';
import { ConfiguredSources, type BootSources } from './boot-sources';
import { bootSandbox } from './booter';
import { HostCgroup } from './host-cgroup';
import { layersDirOf } from './layer-files';
import { LayerPins } from './layer-pins';
import { resolveRunAs } from '../common/run-as';
import { ScratchDisks, scratchDirOf, type WritableTemplate } from './scratch-disks';
import { eventsPath, StartEventLog, type StartEvent } from './metrics-events';
import { StartRecorder } from './metrics-recorder';
import { makeVmDirs, OWNER_DIR_MODE } from './paths';
import { BootClock, type RunningSandbox } from './running-sandbox';
import { SandboxRecordFile } from './sandbox-record';
import { TeardownLedger, type Undoers } from './teardown-ledger';
import { diskUndoers, HOST_CGROUP_REMOVE_MS } from './teardown-undoers';
import { removeSandboxDir } from './volumes';
import { writableTemplateOf } from './templates/store';

/** How long a live VM has to quit at teardown before it is killed. */
const VM_STOP_TIMEOUT_MS = 3000;

type Phase =
  | { kind: 'new' }
  | { kind: 'booting'; ready: Promise<RunningSandbox> }
  | { kind: 'ready'; running: RunningSandbox }
  | { kind: 'stopping' }
  | { kind: 'stopped' };

export type SandboxState = Phase['kind'];

/** What a test may put in place of the host's: the pod cgroup and where pooled VMs and templates come from. */
export interface SandboxDeps {
  cgroup?: PodCgroup;
  sources?: BootSources;
}

export class Sandbox {
  private phase: Phase = { kind: 'new' };
  private destroying?: Promise<void>;
  private exitHandlers: Array<(exit: VmExit, reason: string) => void> = [];
  private dirRemovalHandlers: Array<() => void> = [];
  private exitReported = false;
  /** Every host resource this sandbox acquires, in order: the one teardown (teardown-ledger.ts). */
  private readonly ledger: TeardownLedger;
  /** VMs launched or adopted and not yet undone, by run directory (a live one is stopped, not killed). */
  private readonly liveVms = new Map<string, Vm>();
  private readonly cgroup: PodCgroup;
  /** The shim's task socket, recorded in sandbox.json. */
  shimSocket?: string;
  /** The shim process's control socket, when it serves more pods (shim-daemon.ts); in sandbox.json for `delete`. */
  controlSocket?: string;
  /** The start's record for `tern metrics`: fallbacks, then its outcome (metrics-recorder.ts). */
  readonly start: StartRecorder;
  private eventLog?: StartEventLog;
  private pins?: LayerPins;
  private scratch?: ScratchDisks;
  /** The template's premounted writable disk, once the boot knows its template (undefined: none); settled whatever the boot does. */
  private readonly writableTemplateKnown = deferred<WritableTemplate | undefined>();

  constructor(
    readonly namespace: string,
    readonly id: string,
    readonly dir: string,
    private cfg: TernConfig,
    private readonly driver: HypervisorDriver,
    private readonly log: Logger,
    private readonly deps: SandboxDeps = {},
  ) {
    this.ledger = new TeardownLedger(dir);
    this.cgroup = deps.cgroup ?? new HostCgroup(basename(dir));
    this.start = new StartRecorder(namespace, id, (e) => this.recordStartEvent(e));
  }

  get state(): SandboxState {
    return this.phase.kind;
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

  setConfig(cfg: TernConfig): void {
    if (this.phase.kind !== 'new') throw failedPrecondition('the sandbox VM is already running; its config cannot change');
    this.cfg = cfg;
  }

  /**
   * This sandbox's pins of layer images (layer-pins.ts), recorded in the
   * ledger the first time: one append, then nothing more for later
   * containers. Their teardown releases them and collects the layer cache.
   */
  layerPins(): LayerPins {
    if (this.pins) return this.pins;
    const layersDir = layersDirOf(this.cfg.runtime.cacheDir);
    const pins = new LayerPins(layersDir, this.dir);
    if (this.ledger.closed) throw unavailable(`sandbox ${this.id} is ${this.phase.kind}: no layer is pinned for it`);
    // The boot makes the directory too (with its modes); the pod's first Create gets here first.
    mkdirSync(this.dir, { recursive: true, mode: OWNER_DIR_MODE });
    this.ledger.record({ kind: 'layer-pins', pinsDir: pins.dir, layersDir, maxMiB: this.cfg.runtime.layerCacheMaxMiB });
    this.pins = pins;
    return pins;
  }

  /**
   * The containers' writable-layer files (scratch-disks.ts), their directory
   * recorded in the ledger the first time, before any file is made.
   */
  scratchDisks(): ScratchDisks {
    if (this.scratch) return this.scratch;
    const { cacheDir } = this.cfg.runtime;
    const scratch = new ScratchDisks(scratchDirOf(cacheDir, this.dir), this.dir, this.cfg.runtime.rootfsDeviceMiB, resolveRunAs(this.cfg.hypervisor.runAs));
    if (this.ledger.closed) throw unavailable(`sandbox ${this.id} is ${this.phase.kind}: no writable layer is made for it`);
    mkdirSync(this.dir, { recursive: true, mode: OWNER_DIR_MODE });
    this.ledger.record({ kind: 'scratch-disks', dir: scratch.dir, cacheDir });
    this.scratch = scratch;
    return scratch;
  }

  /**
   * The disk a container's writable layer may be a copy of (scratch-disks.ts):
   * the template's the VM is cloned from, when it premounted one. Resolves
   * as soon as the boot has chosen its template, undefined without one or
   * when the boot fails.
   */
  writableTemplate(): Promise<WritableTemplate | undefined> {
    if (this.phase.kind !== 'new' && this.phase.kind !== 'booting' && this.phase.kind !== 'ready') this.writableTemplateKnown.resolve(undefined);
    return this.writableTemplateKnown.promise;
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

  /** The running sandbox, booted once; concurrent callers share the boot. */
  ensureReady(opts: BootOptions = {}): Promise<RunningSandbox> {
    const p = this.phase;
    if (p.kind === 'ready') return Promise.resolve(p.running);
    if (p.kind === 'booting') return p.ready;
    if (p.kind !== 'new') return Promise.reject(unavailable(`sandbox ${this.id} is ${p.kind}`));
    const ready = this.boot(opts).then(
      async (running) => {
        this.writableTemplateKnown.resolve(undefined);
        if (this.phase.kind !== 'booting') {
          // destroy() began as the boot completed: the ledger stops the VM; this lets go of the agent.
          await running.shutDown();
          throw unavailable(`sandbox ${this.id} was destroyed while it booted`);
        }
        this.phase = { kind: 'ready', running };
        running.watchHealth();
        return running;
      },
      async (err: unknown) => {
        this.writableTemplateKnown.resolve(undefined);
        this.start.failed('vm_ready', err);
        await this.destroy('boot failed');
        throw err;
      },
    );
    this.phase = { kind: 'booting', ready };
    return ready;
  }

  private async boot(opts: BootOptions): Promise<RunningSandbox> {
    const clock = new BootClock();
    const vmDir = join(this.dir, 'vm');
    makeVmDirs(this.dir, vmDir);
    const c = this.cfg;
    const record = new SandboxRecordFile(this.dir, {
      namespace: this.namespace,
      id: this.id,
      shimPid: process.pid,
      shimStartTime: selfStartTime(),
      vmDir,
      createdAt: new Date().toISOString(),
      shimSocket: this.shimSocket,
      controlSocket: this.controlSocket,
      templateDir: c.factory.template ? c.factory.templateDir : undefined,
      poolDir: c.pool.size > 0 ? c.pool.dir : undefined,
    });
    // Written before a VM is taken from the pool: its owner record names this directory.
    await record.update({});
    const env: BootEnv = {
      id: this.id,
      dir: this.dir,
      cfg: c,
      driver: this.driver,
      log: this.log,
      ledger: this.ledger,
      undoers: () => this.undoers(),
      liveVms: this.liveVms,
      cgroup: this.cgroup,
      clock,
      start: this.start,
      sources: this.deps.sources ?? new ConfiguredSources(this.id, this.dir, c, this.driver, this.start, this.log),
      updateRecord: (patch) => record.update(patch),
      templateChosen: (t) => this.writableTemplateKnown.resolve(t && writableTemplateOf(t)),
    };
    return bootSandbox(env, opts, {
      vmExited: (e) => {
        if (this.phase.kind !== 'stopping' && this.phase.kind !== 'stopped') {
          this.log.error({ code: e.code, signal: e.signal, stderr: e.stderrTail }, 'VM exited unexpectedly');
        }
        this.reportExit(e, `VM exited (qemu ${e.signal ?? `exit ${e.code}`})`);
        void this.destroy('vm exited');
      },
      guestLost: (reason) => {
        if (this.phase.kind !== 'ready') return;
        this.log.error({ reason }, 'guest lost: reporting its containers as exited and stopping the VM');
        this.reportExit({ code: null, signal: null, stderrTail: '' }, reason);
        void this.destroy(reason);
      },
    });
  }

  /**
   * How this live sandbox undoes each ledger step: a VM it holds is stopped
   * (then its files removed), its own host cgroup removed once QEMU left it, a
   * template build in this live process ends by itself; anything else as
   * `delete` after a dead shim would (teardown-undoers.ts).
   */
  private undoers(): Undoers {
    const disk = diskUndoers(this.dir, this.driver, this.log);
    return {
      ...disk,
      'template-builds': async () => {},
      'host-cgroup': async (s) => {
        if (this.cgroup.name !== s.name) return disk['host-cgroup'](s);
        const left = await this.cgroup.removeWithin(HOST_CGROUP_REMOVE_MS);
        if (left.length > 0) this.log.error({ left }, 'pod host cgroup not removed');
      },
      vm: async (s) => {
        const vm = this.liveVms.get(s.runDir);
        if (!vm) return disk.vm(s);
        this.liveVms.delete(s.runDir);
        await vm.stop(VM_STOP_TIMEOUT_MS).catch((err: Error) => this.log.error({ err: err.message }, 'stopping VM failed'));
        await vm.cleanup().catch((err: Error) => this.log.error({ err: err.message }, 'VM cleanup failed'));
      },
    };
  }

  /** Powers the VM off (agent first, then the ledger, newest first), removes the sandbox directory. Idempotent. */
  destroy(reason: string): Promise<void> {
    this.writableTemplateKnown.resolve(undefined);
    this.destroying ??= this.doDestroy(reason);
    return this.destroying;
  }

  private async doDestroy(reason: string): Promise<void> {
    const prev = this.phase;
    this.phase = { kind: 'stopping' };
    // A boot in flight acquires nothing more; what it is acquiring now it undoes itself (boot-paths.ts).
    this.ledger.close();
    this.log.info({ reason, from: prev.kind, cpu: prev.kind === 'ready' ? prev.running.clock.cpuSoFar() : undefined }, 'destroying sandbox');
    if (prev.kind === 'ready') await prev.running.shutDown();
    // QMP quit now: the ledger's vm step then finds QEMU exiting or gone.
    for (const vm of this.liveVms.values()) void vm.stop(VM_STOP_TIMEOUT_MS).catch(() => undefined);
    // Every host resource, newest first, as recorded; the directory (volumes unmounted first) last.
    await this.ledger.undoAll(this.undoers(), this.log);
    for (const fn of this.dirRemovalHandlers) fn();
    await removeSandboxDir(this.dir, this.log).catch((err: Error) => this.log.error({ err: err.message }, 'removing the sandbox directory failed'));
    this.phase = { kind: 'stopped' };
    const u = process.cpuUsage();
    this.log.info({ cpu: { shimMs: Math.round((u.user + u.system) / 1000) } }, 'sandbox destroyed');
  }
}

/** A promise with its resolve at hand (Node 20 has no Promise.withResolvers). */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
