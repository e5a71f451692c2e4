// containerd.task.v2.Task for one sandbox. Every RPC has one shape: look the
// process up, call the domain code, return a plain reply; errors are TernErrors
// whose code the ttrpc server puts on the wire (src/ttrpc/status.ts), so no
// RPC converts errors itself. RPCs tern does not do yet answer NotImplemented.
import type { TernConfig } from '../common/config';
import { START_SLOT_MAX_HOLD_MS, START_SLOT_MAX_WAIT_MS, START_SLOTS_NAME, startSlotCount, takeStartSlot, type StartSlot } from './start-slots';
import { loadConfig } from '../common/config';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, notImplemented } from '../common/errors';
import type { Logger } from '../common/logging';
import type { Msg } from '../common/proto-service';
import { createContainer, newExec, releaseContainer, resizeTty, saveContainers, startExec, taskState, type Container } from './container';
import { updateResources } from './container-update';
import type { EventPublisher } from './events';
import { metricsForHost } from './host-metrics';
import { layerImage, type LayerImage } from './layers';
import type { RunningSandbox } from './running-sandbox';
import type { ScratchDisk } from './scratch-disks';
import { planCreate } from './create-plan';
import { configPathOf } from './runtime-options';
import { ProcessExits } from './process-exits';
import type { HostProcess } from './process';
import type { Sandbox } from './sandbox';
import type { StdioPaths } from './stdio';
import { fromNanos, nowNanos, type Timestamp } from './timestamp';

export const VERSION = '0.1.0';

type CreateTaskRequest = Msg<'containerd.task.v2.CreateTaskRequest'>;
type AnyMsg = Msg<'google.protobuf.Any'> | null | undefined;

export class TaskService {
  private readonly containers = new Map<string, Container>();
  private shutdownRequested = false;
  private readonly exits: ProcessExits;

  constructor(
    private readonly sandbox: Sandbox,
    private cfg: TernConfig,
    private readonly events: EventPublisher,
    private readonly log: Logger,
    private readonly onShutdown: () => void,
  ) {
    this.exits = new ProcessExits(events, log, () => this.cfg.runtime.ioDrainTimeoutMs);
    sandbox.onVmExit((_exit, reason) => this.exits.allKilled(this.allProcesses(), reason));
  }

  private *allProcesses(): Iterable<HostProcess> {
    for (const c of this.containers.values()) yield* [c.init, ...c.execs.values()];
  }

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    return c;
  }

  private process(id: string, execId: string): HostProcess {
    const c = this.container(id);
    if (!execId) return c.init;
    const p = c.execs.get(execId);
    if (!p) throw notFound(`exec ${execId} of container ${id}`);
    return p;
  }

  async create(req: CreateTaskRequest): Promise<{ pid: number }> {
    if (!req.id) throw invalidArgument('create: empty container id');
    if (this.containers.has(req.id)) throw alreadyExists(`container ${req.id}`);
    if (req.checkpoint) throw notImplemented('create from checkpoint');
    // The pod's first container: its failure is the start's (recorded for `tern metrics`).
    const first = this.containers.size === 0;
    this.applyOptions(req.options);
    const plan = planCreate(req, this.cfg);
    const stdio = { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
    let c: Container;
    let rootfsDisk: ScratchDisk | undefined;
    // The pod's start (its VM's boot and first container) waits for a start slot (start-slots.ts).
    const slot = first ? await this.takeSlot() : undefined;
    if (slot?.error) this.log.warn({ err: slot.error }, 'no start slot: starting without one');
    try {
      // Boot (or reuse) the VM while the layers are converted; each is pinned for this sandbox first.
      const pins = this.sandbox.layerPins();
      const scratch = this.sandbox.scratchDisks();
      const making =
        plan.rootfsMiB === undefined
          ? Promise.resolve(undefined)
          : scratch.make(plan.rootfsMiB, this.sandbox.writableTemplate(), (err) =>
              this.log.warn({ container: req.id, err: err.message }, "copying the template's writable disk failed: making a new filesystem"),
            );
      let pod: RunningSandbox;
      let layers: LayerImage[];
      try {
        [pod, layers, rootfsDisk] = await Promise.all([
          this.sandbox.ensureReady(plan.boot),
          Promise.all(plan.lowerDirs.map((d) => layerImage(d, pins))),
          making,
        ]);
      } catch (err) {
        // A disk made while something else failed goes now (the sandbox's teardown would only take it later).
        await making.then((d) => d && scratch.remove(d)).catch(() => undefined);
        throw err;
      }
      pod.relayOom((id) => {
        if (!this.containers.has(id)) return;
        this.log.warn({ container: id }, 'OOM kill in the guest');
        this.events.publish({ topic: '/tasks/oom', type: 'TaskOOM', event: { container_id: id } });
      });
      c = await createContainer(pod, req.id, req.bundle, plan.guest, { layers, rootfsDisk, scratch }, stdio, plan.terminal, this.log);
    } catch (err) {
      if (first) this.sandbox.start.failed('container_created', err);
      if (this.containers.size === 0) await this.sandbox.destroy('create failed');
      throw err;
    } finally {
      slot?.release();
    }
    this.containers.set(req.id, c);
    await saveContainers(this.sandbox.dir, this.containers.values());
    const { pid } = c.init;
    const event = { container_id: req.id, bundle: req.bundle, rootfs: req.rootfs, io: stdio, checkpoint: req.checkpoint, pid };
    this.events.publish({ topic: '/tasks/create', type: 'TaskCreate', event });
    const sinceBootMs = c.pod.sinceBoot();
    this.sandbox.start.phase('container_created', sinceBootMs);
    this.log.info(
      {
        container: req.id,
        pid,
        layers: c.layers.length,
        premounted: c.rootfsDisk?.premounted === true,
        sinceBootMs,
        cpu: c.pod.clock.cpuSoFar(),
        createMs: c.createMs,
        slotWaitMs: slot?.waitedMs,
      },
      'container created',
    );
    return { pid };
  }

  private takeSlot(): Promise<StartSlot> {
    return takeStartSlot({
      count: startSlotCount(this.cfg.runtime.startSlots),
      name: START_SLOTS_NAME,
      maxHoldMs: START_SLOT_MAX_HOLD_MS,
      maxWaitMs: START_SLOT_MAX_WAIT_MS,
    });
  }

  /** The config file runtime options named, once applied. */
  private configPath?: string;

  /** Every container of a CRI pod carries the handler's options: the pod's first one applies them. */
  private applyOptions(options: AnyMsg): void {
    const path = configPathOf(options);
    if (!path || path === this.configPath) return;
    this.cfg = loadConfig(path);
    this.sandbox.setConfig(this.cfg);
    this.configPath = path;
  }

  async start(id: string, execId: string): Promise<{ pid: number }> {
    const c = this.container(id);
    const p = this.process(id, execId);
    if (p.state.kind !== 'created') throw failedPrecondition(`process ${p.label()} is ${p.state.kind}, cannot start`);
    const { agent } = c.pod;
    if (p.isInit) {
      let pid: number;
      try {
        ({ pid } = await agent.startContainer(id));
      } catch (err) {
        this.sandbox.start.failed('process_started', err);
        throw err;
      }
      p.markRunning(pid);
      this.events.publish({ topic: '/tasks/start', type: 'TaskStart', event: { container_id: id, pid } });
      const sinceBootMs = c.pod.sinceBoot();
      // The pod's first process running is its start (a no-op for later containers).
      this.sandbox.start.phase('process_started', sinceBootMs);
      this.sandbox.start.started(c.pod.startPath);
      // The boot split (QEMU launched -> agent ready -> created -> started), for bench/.
      this.log.info({ container: id, pid, ...c.pod.clock.timings, sinceBootMs, cpu: c.pod.clock.cpuSoFar(), phaseCpu: c.pod.clock.cpu }, 'container started');
    } else {
      const pid = await startExec(c, p);
      this.events.publish({ topic: '/tasks/exec-started', type: 'TaskExecStarted', event: { container_id: id, exec_id: execId, pid } });
    }
    void this.exits.watch(c.pod, p);
    return { pid: p.pid };
  }

  state(id: string, execId: string) {
    return taskState(this.container(id), this.process(id, execId), execId);
  }

  async wait(id: string, execId: string): Promise<{ exit_status: number; exited_at: Timestamp }> {
    const e = await this.process(id, execId).wait();
    return { exit_status: e.exitStatus, exited_at: fromNanos(e.exitedAt) };
  }

  async kill(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const p = this.process(id, execId);
    if (p.state.kind === 'stopped') throw notFound(`process ${p.label()}: already finished`);
    if (signal <= 0 || signal > 64) throw invalidArgument(`kill: invalid signal ${signal}`);
    await this.container(id).pod.agent.signalProcess(id, execId, signal, all);
  }

  async exec(id: string, execId: string, stdio: StdioPaths, spec: AnyMsg): Promise<void> {
    const c = this.container(id);
    if (!execId) throw invalidArgument('exec: empty exec id');
    if (c.execs.has(execId)) throw alreadyExists(`exec ${execId} of container ${id}`);
    if (c.init.state.kind !== 'running') throw failedPrecondition(`container ${id} is not running`);
    c.execs.set(execId, newExec(c, execId, stdio, spec, this.log));
    this.events.publish({ topic: '/tasks/exec-added', type: 'TaskExecAdded', event: { container_id: id, exec_id: execId } });
  }

  async delete(id: string, execId: string): Promise<{ pid: number; exit_status: number; exited_at: Timestamp }> {
    const c = this.container(id);
    const p = this.process(id, execId);
    if (p.state.kind === 'running') throw failedPrecondition(`process ${p.label()} is running; kill it before delete`);
    if (!p.isInit) {
      c.execs.delete(execId);
      p.io.close();
      const s = p.state;
      const exitedAt = s.kind === 'stopped' ? s.exitedAt : nowNanos();
      return { pid: p.pid, exit_status: s.kind === 'stopped' ? s.exitStatus : 0, exited_at: fromNanos(exitedAt) };
    }
    for (const e of c.execs.values()) if (e.state.kind === 'running') throw failedPrecondition(`exec ${e.label()} still running`);
    if (p.state.kind === 'created') {
      // Never started: its launcher waits in the guest; removing the container ends it.
      p.markExited(137, nowNanos());
    }
    await releaseContainer(c, this.containers.size === 1, this.log);
    this.containers.delete(id);
    const s = p.state as Extract<typeof p.state, { kind: 'stopped' }>;
    this.events.publish({
      topic: '/tasks/delete',
      type: 'TaskDelete',
      event: { container_id: id, pid: p.pid, exit_status: s.exitStatus, exited_at: fromNanos(s.exitedAt), id },
    });
    if (this.containers.size === 0) {
      await this.sandbox.destroy('last container deleted');
    } else {
      await saveContainers(this.sandbox.dir, this.containers.values());
    }
    return { pid: p.pid, exit_status: s.exitStatus, exited_at: fromNanos(s.exitedAt) };
  }

  async pause(id: string): Promise<void> {
    const c = this.container(id);
    if (c.init.state.kind !== 'running') throw failedPrecondition(`container ${id} is not running`);
    if (c.paused) throw failedPrecondition(`container ${id} is already paused`);
    await c.pod.agent.pauseContainer(id);
    c.paused = true;
    this.events.publish({ topic: '/tasks/paused', type: 'TaskPaused', event: { container_id: id } });
  }

  async resume(id: string): Promise<void> {
    const c = this.container(id);
    if (!c.paused) throw failedPrecondition(`container ${id} is not paused`);
    await c.pod.agent.resumeContainer(id);
    c.paused = false;
    this.events.publish({ topic: '/tasks/resumed', type: 'TaskResumed', event: { container_id: id } });
  }

  async update(id: string, resources: AnyMsg): Promise<void> {
    const c = this.container(id);
    if (c.init.state.kind === 'stopped') throw failedPrecondition(`container ${id} has exited`);
    const json = resources?.value ? Buffer.from(resources.value).toString('utf8') : '';
    if (!json) throw invalidArgument('update: no resources given');
    await updateResources(c.pod, id, json);
  }

  /** cgroup metrics from the guest, in the type containerd expects for this host (v1 or v2). */
  async stats(id: string) {
    const c = this.container(id);
    if (c.init.state.kind === 'stopped') throw notFound(`container ${id} has exited: no stats`);
    const { metrics_v2 } = await c.pod.agent.statsContainer(id);
    return { stats: metricsForHost(metrics_v2) };
  }

  /**
   * PSI (pressure stall information) of the guest and of the named containers
   * (every container when none is named; unknown ones are left out), for
   * `tern metrics`: containerd 1.6's cgroups Metrics has no field for it.
   */
  async pressure(ids: readonly string[]) {
    const first = this.containers.values().next();
    if (first.done) throw failedPrecondition('the sandbox has no container (and no VM)');
    const wanted = ids.length > 0 ? ids.filter((id) => this.containers.has(id)) : [...this.containers.keys()];
    return first.value.pod.agent.statsPressure(wanted);
  }

  async pids(id: string) {
    const c = this.container(id);
    if (c.init.state.kind === 'stopped') return { processes: [] };
    const { pids } = await c.pod.agent.listProcesses(id);
    return { processes: pids.map((pid) => ({ pid })) };
  }

  async closeIO(id: string, execId: string, stdin: boolean): Promise<void> {
    const p = this.process(id, execId);
    if (stdin) await p.io.closeStdin();
  }

  async resizePty(id: string, execId: string, width: number, height: number): Promise<void> {
    await resizeTty(this.container(id), this.process(id, execId), width, height);
  }

  connect(id: string) {
    const c = this.containers.get(id);
    return { shim_pid: process.pid, task_pid: c?.init.pid ?? 0, version: VERSION };
  }

  async shutdown(): Promise<void> {
    if (this.containers.size > 0) return;
    if (this.shutdownRequested) return;
    this.shutdownRequested = true;
    await this.sandbox.destroy('shutdown');
    this.onShutdown();
  }

  notImplemented(what: string): never {
    throw notImplemented(what);
  }
}
