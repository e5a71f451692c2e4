// containerd.task.v2.Task for one sandbox. Every RPC has one shape: look the
// process up, call the domain code, return a plain reply; errors are TernErrors
// whose code the ttrpc server puts on the wire (src/ttrpc/status.ts), so no
// RPC converts errors itself. RPCs tern does not do yet answer NotImplemented.
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { TernConfig } from '../common/config';
import { loadConfig } from '../common/config';
import { alreadyExists, failedPrecondition, invalidArgument, notFound, notImplemented, TernError } from '../common/errors';
import type { Logger } from '../common/logging';
import { anyUnpack } from '../common/proto';
import { lowerDirsFromMounts, layerImage, type LayerImage, type RootfsMount } from './layers';
import { HostProcess } from './process';
import type { BootOptions, Sandbox } from './sandbox';
import { prepareGuestSpec, vmSize } from './guest-spec';
import { mountVolumes, unmountVolumes } from './volumes';
import { CGROUPS_V1_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, v2ToV1Metrics } from '../common/cgroup-metrics';
import { anyPack } from '../common/proto';
import { existsSync } from 'node:fs';
import { readBundleSpec } from './bundle-spec';
import { ProcessIO } from './stdio';
import type { EventPublisher } from './events';
import { ZERO_TIME, fromNanos, nowNanos, type Timestamp } from './timestamp';
import { memoryLimitOf } from './vm-memory';
import { cpusWanted } from './vm-cpus';
import { writeStateFile } from './state-file';

/** How long an update waits for the guest to online memory just hot-plugged. */
const MEMORY_ONLINE_TIMEOUT_MS = 10_000;
const isExhausted = (err: unknown): boolean => err instanceof TernError && err.code === 'ResourceExhausted';

export const VERSION = '0.1.0';

interface Container {
  id: string;
  /** Frozen in the guest (Pause); the init process still counts as running. */
  paused: boolean;
  bundle: string;
  init: HostProcess;
  execs: Map<string, HostProcess>;
  layers: LayerImage[];
}

// Wire shapes (snake_case, as decoded by src/common/proto.ts).
export interface CreateTaskRequest {
  id: string;
  bundle: string;
  rootfs: RootfsMount[];
  terminal: boolean;
  stdin: string;
  stdout: string;
  stderr: string;
  checkpoint: string;
  options?: { type_url: string; value: Uint8Array } | null;
}

/** CRI asks for the metrics type of the host's cgroup mode: v2 only on a unified host. */
const HOST_CGROUP_V2 = existsSync('/sys/fs/cgroup/cgroup.controllers');

const STATUS = { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4 } as const;

export class TaskService {
  private readonly containers = new Map<string, Container>();
  private shutdownRequested = false;

  constructor(
    private readonly sandbox: Sandbox,
    private cfg: TernConfig,
    private readonly events: EventPublisher,
    private readonly log: Logger,
    private readonly onShutdown: () => void,
  ) {
    sandbox.onVmExit((_exit, reason) => this.vmGone(reason));
  }

  /** The VM died or its guest was lost: every process still running is reported as killed (137). */
  private vmGone(reason: string): void {
    const at = nowNanos();
    for (const c of this.containers.values()) {
      for (const p of [c.init, ...c.execs.values()]) {
        if (p.state.kind !== 'stopped') this.exited(p, 137, at, reason);
      }
    }
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
    const spec = readBundleSpec(req.bundle);
    if (spec.podWantsHostIpc) {
      // System V IPC and POSIX message queues are the guest kernel's: the host's cannot reach into the VM.
      throw failedPrecondition(
        `pod ${spec.groupId(req.id)}: hostIPC is not supported by tern: a pod in its own VM cannot share the node's IPC namespace (its shared memory, semaphores and message queues stay on the host); run this pod with runc`,
      );
    }
    const lowerDirs = lowerDirsFromMounts(req.rootfs, spec.rootPath);

    // Host paths the guest cannot see are copied in or rejected, before any work.
    const guest = prepareGuestSpec(spec.raw, req.id);
    // The pod's first container decides the VM: its network namespace and size.
    const boot: BootOptions = spec.joinsSandbox()
      ? {}
      : { netnsPath: spec.networkNamespacePath, hostNetwork: spec.wantsHostNetwork, ...vmSize(spec.annotations, this.cfg.hypervisor) };

    // Boot (or reuse) the VM while the layers are converted.
    const [, layers] = await Promise.all([
      this.sandbox.ensureReady(boot).then(() => this.watchOom()),
      Promise.all(lowerDirs.map((d) => layerImage(d, this.cfg.runtime.cacheDir))),
    ]);
    const attached: LayerImage[] = [];
    const io = new ProcessIO(
      { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal || spec.terminal },
      this.sandbox.agent!,
      req.id,
      '',
      this.log.child({ container: req.id }),
    );
    try {
      for (const l of layers) {
        await this.sandbox.layerDisks.attach(l);
        attached.push(l);
      }
      await mountVolumes(this.sandbox.sharedDir, req.id, guest.volumes, this.log.child({ container: req.id }));
      const { pid } = await this.sandbox.agent!.createContainer(
        req.id,
        guest.specJson,
        layers.map((l) => ({ serial: l.serial, fs_type: 'erofs' })),
        io.wanted(),
        guest.files,
      );
      const init = new HostProcess(req.id, '', pid, io, { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal });
      this.containers.set(req.id, { id: req.id, bundle: req.bundle, init, execs: new Map(), layers, paused: false });
      io.start();
      await this.saveState();
      this.events.publish({
        topic: '/tasks/create',
        type: 'TaskCreate',
        event: {
          container_id: req.id,
          bundle: req.bundle,
          rootfs: req.rootfs,
          io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
          checkpoint: req.checkpoint,
          pid,
        },
      });
      const sinceBootMs = this.sinceBoot();
      this.sandbox.start.phase('container_created', sinceBootMs);
      this.log.info({ container: req.id, pid, layers: layers.length, sinceBootMs }, 'container created');
      return { pid };
    } catch (err) {
      if (first) this.sandbox.start.failed('container_created', err);
      io.close();
      await this.releaseVolumes(req.id);
      for (const l of attached) await this.sandbox.layerDisks.release(l.serial);
      if (this.containers.size === 0) await this.sandbox.destroy('create failed');
      throw err;
    }
  }

  /** Unmounts a container's host volumes; a failure is logged (the sandbox's removal unmounts again). */
  private async releaseVolumes(id: string): Promise<void> {
    await unmountVolumes(this.sandbox.sharedDir, id, this.log.child({ container: id })).catch((err: Error) =>
      this.log.warn({ err: err.message, container: id }, 'unmounting host volumes failed'),
    );
  }

  /** The config file runtime options named, once applied. */
  private configPath?: string;

  private applyOptions(options: CreateTaskRequest['options']): void {
    if (!options?.type_url) return;
    const unpacked = anyUnpack<{ config_path?: string }>(options);
    const path = unpacked?.message.config_path;
    // Every container of a CRI pod carries the handler's options: the pod's first one applies them.
    if (unpacked?.typeName === 'runtimeoptions.v1.Options' && path && path !== this.configPath) {
      this.cfg = loadConfig(path);
      this.sandbox.setConfig(this.cfg);
      this.configPath = path;
    }
  }

  async start(id: string, execId: string): Promise<{ pid: number }> {
    const c = this.container(id);
    const p = this.process(id, execId);
    if (p.state.kind !== 'created') throw failedPrecondition(`process ${p.label()} is ${p.state.kind}, cannot start`);
    const agent = this.sandbox.agent!;
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
      const sinceBootMs = this.sinceBoot();
      // The pod's first process running is its start (a no-op for later containers).
      this.sandbox.start.phase('process_started', sinceBootMs);
      if (this.sandbox.startPath) this.sandbox.start.started(this.sandbox.startPath);
      // The boot split (QEMU launched -> agent ready -> created -> started), for bench/.
      this.log.info({ container: id, pid, ...this.sandbox.timings, sinceBootMs }, 'container started');
    } else {
      if (c.init.state.kind !== 'running') throw failedPrecondition(`container ${id} is not running`);
      const { pid } = await agent.execProcess(id, execId, p.processJson ?? '{}', p.io.wanted());
      p.markRunning(pid);
      p.io.start();
      this.events.publish({ topic: '/tasks/exec-started', type: 'TaskExecStarted', event: { container_id: id, exec_id: execId, pid } });
    }
    void this.watch(p);
    return { pid: p.pid };
  }

  /** Long-polls the guest for the process's exit, then reports it once its output has drained. */
  private async watch(p: HostProcess): Promise<void> {
    try {
      const r = await this.sandbox.agent!.waitProcess(p.containerId, p.execId);
      await p.io.drained(this.cfg.runtime.ioDrainTimeoutMs);
      this.exited(p, r.exit_status, BigInt(r.exited_at_unix_nano) || nowNanos(), 'exited');
    } catch (err) {
      if (p.state.kind !== 'stopped') {
        this.log.error({ err: (err as Error).message, container: p.containerId, process: p.label() }, 'lost track of process; reporting it killed');
        this.exited(p, 137, nowNanos(), 'agent wait failed');
      }
    }
  }

  private exited(p: HostProcess, status: number, at: bigint, why: string): void {
    if (!p.markExited(status, at)) return;
    this.log.info({ container: p.containerId, process: p.label(), status, why }, 'process exited');
    this.events.publish({
      topic: '/tasks/exit',
      type: 'TaskExit',
      event: { container_id: p.containerId, id: p.execId || p.containerId, pid: p.pid, exit_status: status, exited_at: fromNanos(at) },
    });
  }

  private sinceBoot(): number {
    return this.sandbox.bootStartedAt ? Math.round(performance.now() - this.sandbox.bootStartedAt) : 0;
  }

  state(id: string, execId: string) {
    const c = this.container(id);
    const p = this.process(id, execId);
    const s = p.state;
    return {
      id: p.execId || id,
      bundle: c.bundle,
      pid: p.pid,
      status: s.kind === 'created' ? STATUS.CREATED : s.kind === 'running' ? (c.paused ? STATUS.PAUSED : STATUS.RUNNING) : STATUS.STOPPED,
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exit_status: s.kind === 'stopped' ? s.exitStatus : 0,
      exited_at: s.kind === 'stopped' ? fromNanos(s.exitedAt) : ZERO_TIME,
      exec_id: execId,
    };
  }

  async wait(id: string, execId: string): Promise<{ exit_status: number; exited_at: Timestamp }> {
    const e = await this.process(id, execId).wait();
    return { exit_status: e.exitStatus, exited_at: fromNanos(e.exitedAt) };
  }

  async kill(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const p = this.process(id, execId);
    if (p.state.kind === 'stopped') throw notFound(`process ${p.label()}: already finished`);
    if (signal <= 0 || signal > 64) throw invalidArgument(`kill: invalid signal ${signal}`);
    await this.sandbox.agent!.signalProcess(id, execId, signal, all);
  }

  async exec(
    id: string,
    execId: string,
    terminal: boolean,
    stdin: string,
    stdout: string,
    stderr: string,
    spec: { type_url: string; value: Uint8Array } | null | undefined,
  ) {
    const c = this.container(id);
    if (!execId) throw invalidArgument('exec: empty exec id');
    if (c.execs.has(execId)) throw alreadyExists(`exec ${execId} of container ${id}`);
    if (c.init.state.kind !== 'running') throw failedPrecondition(`container ${id} is not running`);
    const processJson = spec?.value ? Buffer.from(spec.value).toString('utf8') : '';
    if (!processJson) throw invalidArgument('exec: missing process spec');
    try {
      JSON.parse(processJson);
    } catch {
      throw invalidArgument('exec: process spec is not valid JSON');
    }
    const io = new ProcessIO({ stdin, stdout, stderr, terminal }, this.sandbox.agent!, id, execId, this.log.child({ container: id, exec: execId }));
    c.execs.set(execId, new HostProcess(id, execId, 0, io, { stdin, stdout, stderr, terminal }, processJson));
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
    const agent = this.sandbox.agent;
    // The last container takes the VM with it (below): taking its rootfs,
    // cgroup and processes apart inside the guest first would only delay that
    // (~0.6 s of a `ctr run --rm` under TCG).
    const last = this.containers.size === 1;
    if (agent && this.sandbox.state === 'ready' && !last) {
      await agent.removeContainer(id).catch((err: unknown) => {
        if (!(err instanceof TernError && err.code === 'NotFound')) throw err;
      });
    }
    for (const proc of [p, ...c.execs.values()]) proc.io.close();
    await this.releaseVolumes(id);
    // Nor are its disks unplugged first (the guest must answer each unplug).
    for (const l of c.layers) await this.sandbox.layerDisks.release(l.serial, { detach: !last });
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
      await this.saveState();
    }
    return { pid: p.pid, exit_status: s.exitStatus, exited_at: fromNanos(s.exitedAt) };
  }

  private oomWatching = false;
  /** Relays the guest's OOM kills as /tasks/oom, for as long as the VM runs. */
  private watchOom(): void {
    if (this.oomWatching) return;
    this.oomWatching = true;
    void (async () => {
      while (this.sandbox.state === 'ready' && this.sandbox.agent) {
        try {
          const { container_id } = await this.sandbox.agent.getOomEvent();
          if (!this.containers.has(container_id)) continue;
          this.log.warn({ container: container_id }, 'OOM kill in the guest');
          this.events.publish({ topic: '/tasks/oom', type: 'TaskOOM', event: { container_id } });
        } catch {
          break; // the channel closed: the VM is going away
        }
      }
    })();
  }

  async pause(id: string): Promise<void> {
    const c = this.container(id);
    if (c.init.state.kind !== 'running') throw failedPrecondition(`container ${id} is not running`);
    if (c.paused) throw failedPrecondition(`container ${id} is already paused`);
    await this.sandbox.agent!.pauseContainer(id);
    c.paused = true;
    this.events.publish({ topic: '/tasks/paused', type: 'TaskPaused', event: { container_id: id } });
  }

  async resume(id: string): Promise<void> {
    const c = this.container(id);
    if (!c.paused) throw failedPrecondition(`container ${id} is not paused`);
    await this.sandbox.agent!.resumeContainer(id);
    c.paused = false;
    this.events.publish({ topic: '/tasks/resumed', type: 'TaskResumed', event: { container_id: id } });
  }

  async update(id: string, resources: { type_url: string; value: Uint8Array } | null | undefined): Promise<void> {
    const c = this.container(id);
    if (c.init.state.kind === 'stopped') throw failedPrecondition(`container ${id} has exited`);
    const json = resources?.value ? Buffer.from(resources.value).toString('utf8') : '';
    if (!json) throw invalidArgument('update: no resources given');
    // A larger CPU quota than the VM has vCPUs for: grow it first (the guest applies any quota).
    const wantCpus = cpusWanted(json);
    if (wantCpus !== undefined) await this.sandbox.resizer!.growCpusTo(wantCpus);
    try {
      await this.sandbox.agent!.updateContainer(id, json);
    } catch (err) {
      // More memory than the guest has: grow the VM (hot-plug), then again
      // until the guest has onlined the new memory.
      if (!isExhausted(err)) throw err;
      const limit = memoryLimitOf(json);
      if (limit === undefined) throw failedPrecondition((err as Error).message);
      await this.sandbox.resizer!.growMemoryFor(limit);
      const deadline = Date.now() + MEMORY_ONLINE_TIMEOUT_MS;
      for (;;) {
        try {
          await this.sandbox.agent!.updateContainer(id, json);
          return;
        } catch (again) {
          if (!isExhausted(again)) throw again;
          if (Date.now() > deadline) {
            throw failedPrecondition(`${(again as Error).message}: the guest did not take the hot-plugged memory within ${MEMORY_ONLINE_TIMEOUT_MS} ms`);
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  }

  /** cgroup metrics from the guest, in the type containerd expects for this host (v1 or v2). */
  async stats(id: string): Promise<{ stats: { type_url: string; value: Uint8Array } }> {
    const c = this.container(id);
    if (c.init.state.kind === 'stopped') throw notFound(`container ${id} has exited: no stats`);
    const { metrics_v2 } = await this.sandbox.agent!.statsContainer(id);
    const stats = HOST_CGROUP_V2
      ? anyPack(CGROUPS_V2_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, metrics_v2)
      : anyPack(CGROUPS_V1_METRICS_TYPE, CGROUPS_V1_METRICS_TYPE, v2ToV1Metrics(metrics_v2));
    return { stats };
  }

  async pids(id: string) {
    const c = this.container(id);
    if (c.init.state.kind === 'stopped') return { processes: [] };
    const { pids } = await this.sandbox.agent!.listProcesses(id);
    return { processes: pids.map((pid) => ({ pid })) };
  }

  async closeIO(id: string, execId: string, stdin: boolean): Promise<void> {
    const p = this.process(id, execId);
    if (stdin) await p.io.closeStdin();
  }

  async resizePty(id: string, execId: string, width: number, height: number): Promise<void> {
    const p = this.process(id, execId);
    if (!p.stdio.terminal) throw failedPrecondition(`process ${p.label()} has no terminal`);
    if (p.state.kind !== 'running') return;
    try {
      await this.sandbox.agent!.resizeTty(id, execId, height, width);
    } catch (err) {
      // The process exited in the guest and its exit is still on its way to us:
      // resizing it is moot, as with runc (clients resize right up to the end).
      if (err instanceof TernError && (err.code === 'NotFound' || err.code === 'FailedPrecondition')) return;
      throw err;
    }
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

  /** Writes what `delete` needs after a crash (container ids and init pids). */
  private async saveState(): Promise<void> {
    await mkdir(this.sandbox.dir, { recursive: true });
    const list = [...this.containers.values()].map((c) => ({ id: c.id, bundle: c.bundle, pid: c.init.pid }));
    await writeStateFile(join(this.sandbox.dir, 'containers.json'), JSON.stringify(list));
  }

  notImplemented(what: string): never {
    throw notImplemented(what);
  }
}
