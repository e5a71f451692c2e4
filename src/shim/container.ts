// One container of the pod as the host shim holds it: its processes, the
// layer disks and host volumes it uses, and the running sandbox it lives in.
// createContainer builds it in the guest, undoing its own steps on failure;
// releaseContainer gives back what it used on the host.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition, invalidArgument, TernError } from '../common/errors';
import type { Logger } from '../common/logging';
import { guestCpuList } from './cpuset';
import { specWithGuestCpus, type GuestSpec } from './guest-spec';
import type { LayerImage } from './layers';
import { HostProcess } from './process';
import type { ScratchDisk, ScratchDisks } from './scratch-disks';
import type { RunningSandbox } from './running-sandbox';
import { writeStateFile } from './state-file';
import { ProcessIO, type StdioPaths } from './stdio';
import { ZERO_TIME, fromNanos } from './timestamp';
import { mountVolumes, unmountVolumes } from './volumes';

/** containerd's task Status values. */
const STATUS = { UNKNOWN: 0, CREATED: 1, RUNNING: 2, STOPPED: 3, PAUSED: 4 } as const;

export interface Container {
  id: string;
  bundle: string;
  /** The sandbox the container runs in. */
  pod: RunningSandbox;
  /** Frozen in the guest (Pause); the init process still counts as running. */
  paused: boolean;
  init: HostProcess;
  execs: Map<string, HostProcess>;
  layers: LayerImage[];
  rootfsDisk?: ScratchDisk;
  scratch: ScratchDisks;
  /**
   * Where its create went, for the start's log line (bench/ reads it): ms
   * since the host's create began at the end of each host step (layers,
   * rootfs, volumes, agent), and the guest's own split (ms since the guest's
   * create began).
   */
  createMs: { host: Record<string, number>; guest: Record<string, number> };
}

/** A container's disks: its image layers (shared in the pod) and its own writable layer. */
export interface ContainerDisks {
  layers: LayerImage[];
  /** None for a read-only root filesystem (the guest keeps an empty tmpfs as the overlay's upper). */
  rootfsDisk?: ScratchDisk;
  /** Where the writable layer's file goes back to. */
  scratch: ScratchDisks;
}

/** Attaches the layers, binds the host volumes and creates the container in the guest (not started). */
export async function createContainer(
  pod: RunningSandbox,
  id: string,
  bundle: string,
  guest: GuestSpec,
  disks: ContainerDisks,
  stdio: StdioPaths,
  /** The bundle's process asks for a terminal (the request may not say so). */
  specTerminal: boolean,
  log: Logger,
): Promise<Container> {
  const clog = log.child({ container: id });
  const { layers, rootfsDisk, scratch } = disks;
  const attached: LayerImage[] = [];
  let rootfs: ScratchDisk | undefined;
  const io = new ProcessIO({ ...stdio, terminal: stdio.terminal || specTerminal }, pod.agent, id, '', clog);
  let pinned = false;
  const t0 = performance.now();
  const host: Record<string, number> = {};
  const mark = (step: string) => (host[step] = Math.round(performance.now() - t0));
  try {
    const layerSerials: string[] = [];
    for (const l of layers) {
      layerSerials.push(await pod.layerDisks.attach(l));
      attached.push(l);
    }
    mark('layers');
    if (rootfsDisk) rootfs = await attachRootfsDisk(pod, rootfsDisk);
    mark('rootfs');
    await mountVolumes(pod.sharedDir, id, guest.volumes, clog);
    mark('volumes');
    let specJson = guest.specJson;
    if (guest.hostCpus) {
      // k host CPUs want k vCPUs to run on (hot-plugged up to the maximum), then the threads are pinned.
      await pod.resizer.growCpusTo(guest.hostCpus.length);
      pinned = true;
      await pod.pinning.set(id, guest.hostCpus);
      specJson = specWithGuestCpus(specJson, guestCpuList(guest.hostCpus.length, pod.resizer.vcpuCount));
    }
    const layerRefs = layerSerials.map((serial) => ({ serial, fs_type: 'erofs' }));
    const rootfsRef = rootfs ? { serial: rootfs.serial, fs_type: 'ext4', premounted: rootfs.premounted === true } : undefined;
    const { pid, step_ms } = await pod.agent.createContainer(id, specJson, layerRefs, io.wanted(), guest.files, rootfsRef);
    mark('agent');
    io.start();
    const createMs = { host, guest: step_ms ?? {} };
    return { id, bundle, pod, paused: false, init: new HostProcess(id, '', pid, io, stdio), execs: new Map(), layers, rootfsDisk: rootfs, scratch, createMs };
  } catch (err) {
    io.close();
    if (pinned && pod.active) await pod.pinning.remove(id).catch((e: Error) => clog.warn({ err: e.message }, 'unpinning after a failed create failed'));
    await releaseVolumes(pod, id, log);
    for (const l of attached) await pod.layerDisks.release(l.serial);
    if (rootfs) await releaseRootfsDisk(pod, rootfs, scratch, true, clog);
    else if (rootfsDisk)
      await scratch.remove(rootfsDisk).catch((e: Error) => clog.warn({ err: e.message, file: rootfsDisk.file }, 'removing the writable layer failed'));
    throw err;
  }
}

/** A new exec of container `c` (not started), from the OCI Process JSON in `spec`. */
export function newExec(c: Container, execId: string, stdio: StdioPaths, spec: { value: Uint8Array } | null | undefined, log: Logger): HostProcess {
  const processJson = spec?.value ? Buffer.from(spec.value).toString('utf8') : '';
  if (!processJson) throw invalidArgument('exec: missing process spec');
  try {
    JSON.parse(processJson);
  } catch {
    throw invalidArgument('exec: process spec is not valid JSON');
  }
  const io = new ProcessIO(stdio, c.pod.agent, c.id, execId, log.child({ container: c.id, exec: execId }));
  return new HostProcess(c.id, execId, 0, io, stdio, processJson);
}

/** Starts an exec created by newExec once its container runs; returns its pid. */
export async function startExec(c: Container, p: HostProcess): Promise<number> {
  if (c.init.state.kind !== 'running') throw failedPrecondition(`container ${c.id} is not running`);
  const { pid } = await c.pod.agent.execProcess(c.id, p.execId, p.processJson ?? '{}', p.io.wanted());
  p.markRunning(pid);
  p.io.start();
  return pid;
}

/** Resizes a process's terminal; one that has exited in the guest (its exit on its way) is left alone, as runc does. */
export async function resizeTty(c: Container, p: HostProcess, width: number, height: number): Promise<void> {
  if (!p.stdio.terminal) throw failedPrecondition(`process ${p.label()} has no terminal`);
  if (p.state.kind !== 'running') return;
  try {
    await c.pod.agent.resizeTty(c.id, p.execId, height, width);
  } catch (err) {
    if (err instanceof TernError && (err.code === 'NotFound' || err.code === 'FailedPrecondition')) return;
    throw err;
  }
}

/** The Task API's State reply for a process of container `c`. */
export function taskState(c: Container, p: HostProcess, execId: string) {
  const s = p.state;
  return {
    id: p.execId || c.id,
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

/**
 * Removes a stopped container: from the guest unless the VM goes with it
 * (`last`: taking its rootfs, cgroup and processes apart inside the guest
 * first would only delay that, ~0.6 s of a `ctr run --rm` under TCG), then
 * its stdio, host volumes and layer disks (not unplugged either when last).
 */
export async function releaseContainer(c: Container, last: boolean, log: Logger): Promise<void> {
  const { pod } = c;
  if (pod.active && !last) {
    await pod.agent.removeContainer(c.id).catch((err: unknown) => {
      if (!(err instanceof TernError && err.code === 'NotFound')) throw err;
    });
  }
  for (const proc of [c.init, ...c.execs.values()]) proc.io.close();
  // Its CPUs leave the pod's pinning (nothing to do when the VM goes with it).
  if (pod.active && !last)
    await pod.pinning.remove(c.id).catch((err: Error) => log.warn({ err: err.message, container: c.id }, 'unpinning vCPU threads failed'));
  await releaseVolumes(pod, c.id, log);
  for (const l of c.layers) await pod.layerDisks.release(l.serial, { detach: !last });
  await releaseRootfsDisk(pod, c.rootfsDisk, c.scratch, !last, log.child({ container: c.id }));
}

/**
 * Gives the VM a container's writable disk: in its writable slot when that is
 * free (no hot-plug: the guest has had the device since boot), else
 * hot-plugged as a device of its own. Returns the disk as the guest sees it;
 * premounted when it is the first in the slot of a clone whose guest holds
 * the template's filesystem premounted, and a copy of that template's disk.
 */
async function attachRootfsDisk(pod: RunningSandbox, disk: ScratchDisk): Promise<ScratchDisk> {
  const slotSerial = await pod.vm.insertDisk(disk.file, false);
  if (slotSerial !== undefined) {
    const premounted = pod.takeWritablePremount() && disk.templateCopy === true;
    return { ...disk, serial: slotSerial, inSlot: true, premounted };
  }
  await pod.vm.attachBlock({ id: disk.id, path: disk.file, readOnly: false, serial: disk.serial });
  return disk;
}

/** Takes a container's writable layer out of the VM (unless the VM goes anyway) and removes its file; failures are logged (the sandbox's teardown removes the directory). */
async function releaseRootfsDisk(pod: RunningSandbox, disk: ScratchDisk | undefined, scratch: ScratchDisks, detach: boolean, log: Logger): Promise<void> {
  if (!disk) return;
  if (detach && pod.active) {
    const out = disk.inSlot ? pod.vm.ejectDisk(disk.serial) : pod.vm.detachBlock(disk.id);
    await out.catch((err: Error) => log.warn({ err: err.message, disk: disk.inSlot ? 'writable slot' : disk.id }, 'detaching the writable layer failed'));
  }
  await scratch.remove(disk).catch((err: Error) => log.warn({ err: err.message, file: disk.file }, 'removing the writable layer failed'));
}

/** Unmounts a container's host volumes; a failure is logged (the sandbox's removal unmounts again). */
async function releaseVolumes(pod: RunningSandbox, id: string, log: Logger): Promise<void> {
  await unmountVolumes(pod.sharedDir, id, log.child({ container: id })).catch((err: Error) =>
    log.warn({ err: err.message, container: id }, 'unmounting host volumes failed'),
  );
}

/** Writes containers.json: what `delete` needs after a crash (container ids and init pids). */
export async function saveContainers(sandboxDir: string, containers: Iterable<Container>): Promise<void> {
  await mkdir(sandboxDir, { recursive: true });
  const list = [...containers].map((c) => ({ id: c.id, bundle: c.bundle, pid: c.init.pid }));
  await writeStateFile(join(sandboxDir, 'containers.json'), JSON.stringify(list));
}
