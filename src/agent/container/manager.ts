// ContainerManager: the agent's container engine. Flow per container:
//   createContainer: translate the spec (plan-from-spec.ts) -> cgroup (cgroups.ts) ->
//     rootfs overlay (rootfs.ts) -> plan file -> init GuestProcess created, stopped before exec
//   startContainer: the init execs;  execProcess: a GuestProcess joining the init's namespaces
//   removeContainer: kill everything, wait, unmount, remove cgroup and dirs.
//   pause/resume (cgroup-freezer.ts), update (cgroup-update.ts), stats
//   (cgroup-stats.ts) work on the container's cgroup; oom-watcher.ts queues
//   OOM kills for getOomEvent.
// Every resource is pushed on the container's undo stack (undo-stack.ts) by the
// function that creates it: that stack undoes a failed create and, later,
// removes the container.
import { promises as fs, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import path from 'node:path';
import type { CgroupV2Metrics } from '../../common/cgroup-metrics.js';
import { alreadyExists, failedPrecondition, internal, invalidArgument, notFound } from '../../common/errors.js';
import { hasFreezer, setFrozen } from './cgroup-freezer.js';
import { readCgroupStats } from './cgroup-stats.js';
import { updateFiles } from './cgroup-update.js';
import { Cgroup, ownCgroupDir } from './cgroups.js';
import type { OciResources } from './oci-types.js';
import { OomWatcher } from './oom-watcher.js';
import type { OciProcess, OciSpec } from './oci-types.js';
import { renderPlan, type LaunchPlan } from './plan.js';
import { GUEST_PRESSURE_DIR, type PressureStats, readCgroupPressure, readGuestPressure } from './cgroup-pressure.js';
import { GuestProcess, type ProcessIo, type ProcessLog } from './guest-process.js';
import { isMountPoint, LayerStore, mountRootfs, type LayerRef, type ResolveLayer, type Rootfs } from './rootfs.js';
import { translateProcess, translateSpec, type GuestDevice } from './plan-from-spec.js';
import { UndoStack } from './undo-stack.js';

export type { OciProcess, OciSpec } from './oci-types.js';
export type { LayerRef, ResolveLayer } from './rootfs.js';

export interface ContainerManagerOptions {
  runDir?: string;
  cgroupRoot?: string;
  launcherPath?: string;
  resolveLayer?: ResolveLayer;
  log?: ProcessLog;
  /** The guest's total memory in bytes (default os.totalmem()): the ceiling for memory limits. */
  guestMemoryBytes?: () => number;
  /** Deadline for the freezer to report a pause/resume done (default 5000 ms). */
  freezeTimeoutMs?: number;
  /** memory.events re-read interval where it cannot be watched (default 3000 ms). */
  oomPollIntervalMs?: number;
  /** Where the guest's PSI files are (default /proc/pressure). */
  guestPressureDir?: string;
}

export interface CreateContainerRequest {
  containerId: string;
  spec: OciSpec;
  layers: LayerRef[];
  /** The writable layer's disk; without it, a tmpfs. */
  rootfs?: LayerRef;
  terminal: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

interface Container {
  id: string;
  dir: string;
  cgroup: Cgroup;
  rootfs: Rootfs;
  /** The compiled seccomp filter, applied to execs as well. */
  seccomp?: LaunchPlan['seccomp'];
  init: GuestProcess;
  execs: Map<string, GuestProcess>;
  paused: boolean;
  /** How to release what the container holds, newest first: its teardown. */
  undo: UndoStack;
  /** Serializes pause/resume/update/signal-all on the cgroup. */
  cgroupOp: Promise<unknown>;
  removing?: Promise<void>;
}

/** Removes a container's directory, never while its rootfs or scratch space is still mounted under it. */
async function removeContainerDir(id: string, dir: string): Promise<void> {
  for (const sub of ['rootfs', 'scratch']) {
    if (await isMountPoint(path.join(dir, sub))) throw internal(`container ${id}: ${sub} is still mounted`);
  }
  await fs.rm(dir, { recursive: true, force: true });
}

/** The guest's device node at `p` (its own numbers), if there is one. */
function guestDevice(p: string): GuestDevice | undefined {
  try {
    const st = statSync(p);
    const type = st.isCharacterDevice() ? 'c' : st.isBlockDevice() ? 'b' : undefined;
    if (!type) return undefined;
    // Linux dev_t encoding (glibc major()/minor())
    const rdev = BigInt(st.rdev);
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    return { type, major, minor };
  } catch {
    return undefined;
  }
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const MAX_READ = 1 << 20;
const noopLog: ProcessLog = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

export class ContainerManager {
  private readonly runDir: string;
  private readonly cgroupRoot: string;
  readonly launcherPath: string;
  private readonly resolveLayer: ResolveLayer;
  private readonly log: ProcessLog;
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();
  private cgroupReturn?: Promise<string>;
  private readonly guestMemoryBytes: () => number;
  private readonly freezeTimeoutMs: number;
  private readonly oom: OomWatcher;
  private readonly guestPressureDir: string;

  constructor(opts: ContainerManagerOptions = {}) {
    this.runDir = opts.runDir ?? '/run/tern-agent';
    this.cgroupRoot = opts.cgroupRoot ?? '/sys/fs/cgroup';
    this.launcherPath = opts.launcherPath ?? '/opt/tern/sbin/tern-launch';
    this.resolveLayer = opts.resolveLayer ?? new LayerStore({ runDir: this.runDir }).resolve;
    this.log = opts.log ?? noopLog;
    this.guestMemoryBytes = opts.guestMemoryBytes ?? totalmem;
    this.freezeTimeoutMs = opts.freezeTimeoutMs ?? 5000;
    this.oom = new OomWatcher({ pollIntervalMs: opts.oomPollIntervalMs, log: this.log });
    this.guestPressureDir = opts.guestPressureDir ?? GUEST_PRESSURE_DIR;
  }

  /** Creates the container (not started); `stepMs` is where the create's time went (ms since it began, at each step's end). */
  async createContainer(req: CreateContainerRequest): Promise<{ pid: number; stepMs: Record<string, number> }> {
    const id = req.containerId;
    if (!ID_RE.test(id)) throw invalidArgument(`container id ${JSON.stringify(id)}: use letters, digits, _ . - (max 128)`);
    if (this.containers.has(id) || this.creating.has(id)) throw alreadyExists(`container ${id}`);
    this.creating.add(id);
    const undo = new UndoStack();
    // Where the create's time goes (ms since it began), for the log: the start path is the hottest one.
    const t0 = performance.now();
    const ms: Record<string, number> = {};
    const mark = (phase: string) => (ms[phase] = Math.round(performance.now() - t0));
    try {
      const dir = path.join(this.runDir, 'containers', id);
      const cgroupPath = path.join(this.cgroupRoot, 'tern', id);
      const returnTo = await (this.cgroupReturn ??= ownCgroupDir(this.cgroupRoot));
      // translate first: a bad spec fails before anything is created
      const { plan, limits, warnings } = translateSpec(req.spec, {
        rootfs: path.join(dir, 'rootfs'),
        cgroup: { path: cgroupPath, returnTo },
        terminal: req.terminal,
        statSource: (p) => {
          try {
            return statSync(p).isDirectory() ? 'dir' : 'file';
          } catch {
            return 'dir';
          }
        },
        guestDevice,
      });
      for (const w of warnings) this.log.warn({ container: id }, w);
      const planText = renderPlan(plan);
      mark('spec');

      await fs.mkdir(dir, { recursive: true });
      undo.push('directory', () => removeContainerDir(id, dir));
      const cgroup = await Cgroup.create(this.cgroupRoot, id, limits, this.log);
      undo.push('cgroup', () => cgroup.remove());
      mark('cgroupCreated');
      await this.oom.add(id, cgroup.path);
      undo.push('oom watch', () => this.oom.remove(id));
      mark('cgroup');
      const rootfs = await mountRootfs(dir, req.layers, this.resolveLayer, req.rootfs, {}, (step) => mark(`rootfs.${step}`));
      undo.push('rootfs', () => rootfs.remove());
      mark('rootfs');
      const planFile = path.join(dir, 'init.plan');
      await fs.writeFile(planFile, planText, { mode: 0o600 });

      const io: ProcessIo = { terminal: req.terminal, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr };
      const init = new GuestProcess({ launcherPath: this.launcherPath, planFile, io, label: `container ${id}`, log: this.log });
      undo.push('init process', () => init.destroy());
      const pid = await init.create();
      this.containers.set(id, { id, dir, cgroup, rootfs, seccomp: plan.seccomp, init, execs: new Map(), paused: false, undo, cgroupOp: Promise.resolve() });
      mark('launched');
      this.log.info({ container: id, pid, ms }, 'container created');
      return { pid, stepMs: ms };
    } catch (err) {
      await undo.unwindAll((what, e) => this.log.error({ container: id, step: what, err: String(e) }, 'cleanup after failed create'));
      throw err;
    } finally {
      this.creating.delete(id);
    }
  }

  async startContainer(id: string): Promise<{ pid: number }> {
    const c = this.get(id);
    await c.init.start();
    this.log.info({ container: id, pid: c.init.pid }, 'container started');
    return { pid: c.init.pid };
  }

  async execProcess(id: string, execId: string, process: OciProcess, io: ProcessIo): Promise<{ pid: number }> {
    const c = this.get(id);
    if (!execId) throw invalidArgument('exec id must not be empty');
    if (!ID_RE.test(execId)) throw invalidArgument(`exec id ${JSON.stringify(execId)}: use letters, digits, _ . - (max 128)`);
    if (c.execs.has(execId)) throw alreadyExists(`exec ${execId} in container ${id}`);
    if (c.init.state !== 'created' && c.init.state !== 'running') {
      throw failedPrecondition(`container ${id} is ${c.init.state}: cannot exec`);
    }
    if (c.paused) throw failedPrecondition(`container ${id} is paused: cannot exec`);
    const { plan, warnings } = translateProcess(process, {
      initPid: c.init.pid,
      seccomp: c.seccomp,
      cgroup: { path: c.cgroup.path, returnTo: await (this.cgroupReturn ??= ownCgroupDir(this.cgroupRoot)) },
      terminal: io.terminal,
    });
    for (const w of warnings) this.log.warn({ container: id, exec: execId }, w);
    const planFile = path.join(c.dir, `exec-${execId}.plan`);
    await fs.writeFile(planFile, renderPlan(plan), { mode: 0o600 });
    const proc = new GuestProcess({ launcherPath: this.launcherPath, planFile, io, label: `exec ${execId} in container ${id}`, log: this.log });
    c.execs.set(execId, proc);
    c.undo.push(`exec ${execId}`, () => proc.destroy());
    try {
      await proc.create();
      await proc.start();
    } catch (err) {
      c.execs.delete(execId);
      await proc.destroy();
      throw err;
    }
    this.log.info({ container: id, exec: execId, pid: proc.pid }, 'exec started');
    return { pid: proc.pid };
  }

  async signalProcess(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    const c = this.get(id);
    const proc = this.proc(c, execId);
    if (!all) {
      proc.signal(signal);
      return;
    }
    await this.onCgroup(c, async () => {
      // Freeze while listing and signalling so nothing forks out of reach
      // (signals stay pending in frozen processes and land on thaw).
      // A freeze that cannot complete (e.g. a task stuck in the kernel) must
      // not stop the signal: then signal unfrozen.
      let freeze = !c.paused && (await hasFreezer(c.cgroup.path));
      if (freeze) {
        freeze = await setFrozen(c.cgroup.path, true, Math.min(this.freezeTimeoutMs, 1000)).then(
          () => true,
          (err) => {
            this.log.warn({ container: id, err: String(err) }, 'cannot freeze before signalling all; signalling unfrozen');
            return false;
          },
        );
      }
      try {
        const pids = new Set(await this.containerPids(c));
        // processes the cgroup cannot list (no cgroupfs) are still the container's
        for (const p of [c.init, ...c.execs.values()]) if (!p.exited && p.pid > 0) pids.add(p.pid);
        if (pids.size === 0) throw notFound(`container ${id}: no processes left`);
        for (const pid of pids) {
          try {
            process.kill(pid, signal);
          } catch {
            // exited meanwhile
          }
        }
      } finally {
        if (freeze) await setFrozen(c.cgroup.path, false, this.freezeTimeoutMs);
      }
    });
  }

  /** Freeze every process of the container (init and execs share its cgroup). */
  async pauseContainer(id: string): Promise<void> {
    const c = this.get(id);
    await this.onCgroup(c, async () => {
      if (c.paused) throw failedPrecondition(`container ${id} is already paused`);
      if (c.init.state !== 'running') throw failedPrecondition(`container ${id} is ${c.init.state}: cannot pause`);
      await setFrozen(c.cgroup.path, true, this.freezeTimeoutMs);
      c.paused = true;
      this.log.info({ container: id }, 'container paused');
    });
  }

  async resumeContainer(id: string): Promise<void> {
    const c = this.get(id);
    await this.onCgroup(c, async () => {
      if (!c.paused) throw failedPrecondition(`container ${id} is not paused`);
      await setFrozen(c.cgroup.path, false, this.freezeTimeoutMs);
      c.paused = false;
      this.log.info({ container: id }, 'container resumed');
    });
  }

  isPaused(id: string): boolean {
    return this.get(id).paused;
  }

  /**
   * Apply new limits (OCI LinuxResources) to the container's cgroup. Returns
   * the files written and warnings for what was ignored; a memory limit above
   * the guest's total memory fails with ResourceExhausted before any write.
   */
  async updateContainer(id: string, resources: OciResources): Promise<{ files: Record<string, string>; warnings: string[] }> {
    const c = this.get(id);
    return this.onCgroup(c, async () => {
      const currentCpuMax = await fs.readFile(path.join(c.cgroup.path, 'cpu.max'), 'utf8').catch(() => undefined);
      const { files, warnings } = updateFiles(resources, { guestMemoryBytes: this.guestMemoryBytes(), currentCpuMax });
      warnings.push(...(await c.cgroup.writeLimits(files)));
      for (const w of warnings) this.log.warn({ container: id }, `update: ${w}`);
      this.log.info({ container: id, files }, 'container resources updated');
      return { files, warnings };
    });
  }

  /** Statistics of the container's cgroup (io.containerd.cgroups.v2.Metrics shape). */
  async statsContainer(id: string): Promise<CgroupV2Metrics> {
    const c = this.get(id);
    return readCgroupStats(c.cgroup.path, { guestMemoryBytes: this.guestMemoryBytes() });
  }

  /** PSI of the guest and of each named container that is here (others are left out); nothing is read for any other call. */
  async statsPressure(ids: readonly string[]): Promise<{ guest: PressureStats; containers: Array<{ container_id: string; pressure: PressureStats }> }> {
    const here = ids.flatMap((id) => {
      const c = this.containers.get(id);
      return c && !c.removing ? [{ id, dir: c.cgroup.path }] : [];
    });
    const [guest, ...each] = await Promise.all([readGuestPressure(this.log, this.guestPressureDir), ...here.map((c) => readCgroupPressure(c.dir, this.log))]);
    return { guest: guest!, containers: here.map((c, i) => ({ container_id: c.id, pressure: each[i]! })) };
  }

  /** Long poll: the id of the next container whose cgroup saw an OOM kill. */
  getOomEvent(signal?: AbortSignal): Promise<string> {
    return this.oom.next(signal);
  }

  /** Long poll until the process exits; `signal` (the caller went away) cancels it. */
  async waitProcess(id: string, execId: string, signal?: AbortSignal): Promise<{ exitStatus: number; exitedAtNs: bigint }> {
    const e = await this.proc(this.get(id), execId).wait(signal);
    return { exitStatus: e.exitStatus, exitedAtNs: e.exitedAt };
  }

  async listProcesses(id: string): Promise<number[]> {
    return this.containerPids(this.get(id));
  }

  async readStream(id: string, execId: string, which: 'stdout' | 'stderr', maxBytes: number, signal?: AbortSignal): Promise<{ data: Buffer; eof: boolean }> {
    const proc = this.proc(this.get(id), execId);
    return proc.read(which, Math.min(Math.max(maxBytes || 65536, 1), MAX_READ), signal);
  }

  async writeStdin(id: string, execId: string, data: Buffer): Promise<number> {
    return this.proc(this.get(id), execId).writeStdin(data);
  }

  async closeStdin(id: string, execId: string): Promise<void> {
    await this.proc(this.get(id), execId).closeStdin();
  }

  async resizeTty(id: string, execId: string, rows: number, cols: number): Promise<void> {
    await this.proc(this.get(id), execId).resize(rows, cols);
  }

  /** Kill what remains, wait, unmount, remove the cgroup and directories. */
  async removeContainer(id: string): Promise<void> {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id}`);
    c.removing ??= this.teardown(c).catch((err) => {
      c.removing = undefined; // allow a retry
      throw err;
    });
    return c.removing;
  }

  private async teardown(c: Container): Promise<void> {
    const procs = [c.init, ...c.execs.values()];
    await c.cgroupOp.catch(() => undefined);
    await c.cgroup.killAll().catch((err) => this.log.warn({ container: c.id, err: String(err) }, 'cgroup kill failed'));
    // launchers report the exits and drain output; then the stack forces whatever is left
    await Promise.all(procs.map((p) => p.launcherDone(2000)));
    if (c.paused) {
      await setFrozen(c.cgroup.path, false, this.freezeTimeoutMs).catch((err) => this.log.warn({ container: c.id, err: String(err) }, 'thaw failed'));
      c.paused = false;
    }
    await c.undo.unwind();
    this.containers.delete(c.id);
    this.log.info({ container: c.id }, 'container removed');
  }

  /** Remove every container. */
  async shutdown(): Promise<void> {
    const results = await Promise.allSettled([...this.containers.keys()].map((id) => this.removeContainer(id)));
    this.oom.close();
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Run `fn` after the container's previous cgroup operation has settled. */
  private onCgroup<T>(c: Container, fn: () => Promise<T>): Promise<T> {
    const run = c.cgroupOp.catch(() => undefined).then(fn);
    c.cgroupOp = run.catch(() => undefined);
    return run;
  }

  private get(id: string): Container {
    const c = this.containers.get(id);
    if (!c || c.removing) throw notFound(`container ${id}`);
    return c;
  }

  private proc(c: Container, execId: string): GuestProcess {
    if (!execId) return c.init;
    const p = c.execs.get(execId);
    if (!p) throw notFound(`exec ${execId} in container ${c.id}`);
    return p;
  }

  /** Pids in the container's cgroup, without the launchers (which only pass through it). */
  private async containerPids(c: Container): Promise<number[]> {
    const launchers = new Set([c.init, ...c.execs.values()].map((p) => p.launcherPid));
    return (await c.cgroup.pids()).filter((p) => !launchers.has(p));
  }
}
