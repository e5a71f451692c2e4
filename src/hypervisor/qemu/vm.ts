// A running QEMU VM: the agent channel (virtio-serial unix socket), block
// hot-plug onto free pcie-root-ports through QMP, pause/resume, stop
// (QMP quit, then SIGKILL after a deadline) and removal of its runDir files.
import fs from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { TernError, invalidArgument, notFound } from '../../common/errors.js';
import { runCommand } from '../../common/run-command.js';
import type { Accel, BlockDevice, HostNicSpec, NicSpec, Vm, VmExit } from '../hypervisor.js';
import type { LogSink } from '../../common/log-sink.js';
import { randomBytes } from 'node:crypto';
import { qemuPaths, slotBootNode, type DiskSlot, type QemuPaths } from './cmdline.js';
import type { QemuProcessHandle } from './process-handle.js';
import type { QmpClient } from './qmp.js';
import { restoreState, saveState } from './migration.js';
import { ownedFiles, removeFiles } from './vm-state.js';

export const DEFAULT_STOP_TIMEOUT_MS = 3_000;
const AGENT_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;
/** tern-tapfd waits up to 10 s for each QMP reply itself. */
const TAPFD_TIMEOUT_MS = 30_000;
/** QEMU node names are at most 31 characters; the node name is `<id>-blk`. */
const BLOCK_ID_RE = /^[A-Za-z][A-Za-z0-9_-]{0,26}$/;

/** A slot's block options, the same for its file node and its raw node: a layer's is read-only; the writable one passes the guest's discards on. */
function slotMode(slot: DiskSlot): { 'read-only': true } | { discard: 'unmap' } {
  return slot.readOnly ? { 'read-only': true } : { discard: 'unmap' };
}

export interface QemuVmInit {
  id: string;
  accel: Accel;
  runDir: string;
  proc: QemuProcessHandle;
  qmp: QmpClient;
  hotplugPorts: string[];
  /** The disk slots the command line has (diskSlotArgs); a pooled VM's are empty when adopted. */
  diskSlots?: DiskSlot[];
  logger: LogSink;
  /** How long detachBlock waits for the guest to release a device (default 10 s). */
  unplugTimeoutMs?: number;
  /** The tern-tapfd helper, for NICs whose tap is in another network namespace. */
  tapFdHelper?: string;
  /** A template's state file (written by saveTemplate) or a clone's (inherited open as migration STATE_FD). */
  statePath?: string;
}

interface Attached {
  port: string;
  nodeName: string;
  /** device_del was sent; QEMU refuses a second one while the guest has not answered. */
  unplugRequested: boolean;
  /** DEVICE_DELETED seen: only the block node remains. */
  deviceGone: boolean;
}

export class QemuVm implements Vm {
  readonly id: string;
  readonly accel: Accel;
  readonly runDir: string;
  readonly paths: QemuPaths;
  private readonly proc: QemuProcessHandle;
  private readonly qmpClient: QmpClient;
  private readonly logger: LogSink;
  private readonly freePorts: string[];
  private readonly unplugTimeoutMs: number;
  private readonly tapFdHelper?: string;
  private readonly statePath?: string;
  private readonly attached = new Map<string, Attached>();
  /** The disk slots, each with the file node in it (or the claim of one being put there). */
  private readonly slots: { slot: DiskSlot; fileNode?: string }[];
  /** Hot-plug operations run one at a time. */
  private hotplugChain: Promise<unknown> = Promise.resolve();
  private dimms = 0;
  private cpusAdded = 0;
  private stopping: Promise<void> | undefined;
  private cleaned: Promise<void> | undefined;
  /** Handed to another process (release()): no longer ours to control or report on. */
  private released = false;

  constructor(init: QemuVmInit) {
    this.id = init.id;
    this.accel = init.accel;
    this.runDir = init.runDir;
    this.paths = qemuPaths(init.runDir);
    this.proc = init.proc;
    this.qmpClient = init.qmp;
    this.logger = init.logger;
    this.freePorts = [...init.hotplugPorts];
    this.slots = (init.diskSlots ?? []).map((slot) => (slot.bootFile ? { slot, fileNode: slotBootNode(slot) } : { slot }));
    this.unplugTimeoutMs = init.unplugTimeoutMs ?? DEFAULT_UNPLUG_TIMEOUT_MS;
    this.tapFdHelper = init.tapFdHelper;
    this.statePath = init.statePath;
    this.qmpClient.on('event', (name, data) => {
      if (name !== 'DEVICE_DELETED') return;
      const device = (data as { device?: unknown } | undefined)?.device;
      const dev = typeof device === 'string' ? this.attached.get(device) : undefined;
      if (dev) dev.deviceGone = true;
    });
    void this.proc.exited.then((exit) => {
      this.qmpClient.close();
      if (this.released) return;
      const fields = { id: this.id, pid: this.pid, code: exit.code, signal: exit.signal, output: exit.stderrTail };
      if (this.stopping || exit.code === 0) this.logger.info(fields, 'qemu exited');
      else this.logger.warn(fields, 'qemu exited unexpectedly');
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** The VM's QMP connection (one per VM: QMP serves a single client). */
  get qmp(): QmpClient {
    return this.qmpClient;
  }

  /** Pcie-root-ports still free for hot-plug. */
  get freeHotplugPorts(): readonly string[] {
    return [...this.freePorts];
  }

  private ensureRunning(what: string): void {
    if (this.proc.hasExited || this.stopping || this.released) throw new TernError('FailedPrecondition', `${what}: VM ${this.id} is not running`);
  }

  connectAgent(): Promise<Duplex> {
    this.ensureRunning('connect agent');
    const socketPath = this.paths.agentSocket;
    return new Promise<Duplex>((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new TernError('DeadlineExceeded', `agent socket ${socketPath}: no connection within ${AGENT_CONNECT_TIMEOUT_MS} ms`));
      }, AGENT_CONNECT_TIMEOUT_MS);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(sock);
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(new TernError('Unavailable', `agent socket ${socketPath}: ${err.message}`, { cause: err }));
      });
    });
  }

  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.hotplugChain.then(op, op);
    this.hotplugChain = run.catch(() => {});
    return run;
  }

  attachBlock(dev: BlockDevice): Promise<void> {
    return this.serialize(() => this.doAttach(dev));
  }

  private async doAttach(dev: BlockDevice): Promise<void> {
    this.ensureRunning(`attach ${dev.id}`);
    if (!BLOCK_ID_RE.test(dev.id)) {
      throw invalidArgument(`block device id ${JSON.stringify(dev.id)}: want a letter then up to 26 of [A-Za-z0-9_-]`);
    }
    if (dev.serial.length > 20 || !/^[\x21-\x7e]*$/.test(dev.serial)) {
      throw invalidArgument(`block device serial ${JSON.stringify(dev.serial)}: at most 20 printable characters`);
    }
    if (this.attached.has(dev.id)) throw new TernError('AlreadyExists', `block device ${dev.id}: already attached`);
    try {
      fs.statSync(dev.path);
    } catch {
      throw new TernError('FailedPrecondition', `block device ${dev.id}: ${dev.path} does not exist`);
    }
    const port = this.freePorts.shift();
    if (port === undefined) {
      throw new TernError('ResourceExhausted', `VM ${this.id}: no free hot-plug slot for ${dev.id}`);
    }
    const nodeName = `${dev.id}-blk`;
    try {
      // A writable disk passes the guest's discards on: freed blocks become holes in its sparse file again.
      const discard = dev.readOnly ? {} : { discard: 'unmap' };
      await this.qmpClient.execute('blockdev-add', {
        driver: 'raw',
        'node-name': nodeName,
        'read-only': dev.readOnly,
        ...discard,
        file: { driver: 'file', filename: dev.path, 'read-only': dev.readOnly, ...discard },
      });
      try {
        await this.qmpClient.execute('device_add', {
          driver: 'virtio-blk-pci',
          drive: nodeName,
          id: dev.id,
          serial: dev.serial,
          bus: port,
        });
      } catch (err) {
        await this.qmpClient.execute('blockdev-del', { 'node-name': nodeName }).catch(() => {});
        throw err;
      }
    } catch (err) {
      this.freePorts.unshift(port);
      throw err;
    }
    this.attached.set(dev.id, { port, nodeName, unplugRequested: false, deviceGone: false });
    this.logger.info({ id: this.id, device: dev.id, path: dev.path, port }, 'block device attached');
  }

  detachBlock(id: string): Promise<void> {
    return this.serialize(() => this.doDetach(id));
  }

  async insertDisk(path: string, readOnly: boolean): Promise<string | undefined> {
    const what = `insert ${path} in a ${readOnly ? 'read-only' : 'writable'} disk slot`;
    this.ensureRunning(what);
    if (!this.slots.some((s) => s.slot.readOnly === readOnly)) return undefined;
    let size: number;
    try {
      size = fs.statSync(path).size;
    } catch {
      throw new TernError('FailedPrecondition', `disk slot: ${path} does not exist`);
    }
    // The guest read the disk's size at boot: a file of another size cannot stand in for it.
    const entry = this.slots.find((s) => s.slot.readOnly === readOnly && s.fileNode === undefined && s.slot.sizeMiB * 1024 * 1024 === size);
    if (!entry) return undefined;
    // Claimed before the first await: a second disk at the same time gets another slot, or a device of its own.
    const node = `${entry.slot.node}-${randomBytes(4).toString('hex')}`;
    entry.fileNode = node;
    const { slot } = entry;
    try {
      await this.serialize(async () => {
        this.ensureRunning(what);
        await this.qmpClient.execute('blockdev-add', { driver: 'file', 'node-name': node, filename: path, ...slotMode(slot) });
        try {
          await this.reopenSlot(slot, node);
        } catch (err) {
          await this.qmpClient.execute('blockdev-del', { 'node-name': node }).catch(() => {});
          throw err;
        }
      });
    } catch (err) {
      entry.fileNode = undefined;
      throw err;
    }
    this.logger.info({ id: this.id, path, slot: slot.serial }, 'file put in a disk slot');
    return slot.serial;
  }

  ejectDisk(serial: string): Promise<void> {
    return this.serialize(async () => {
      const entry = this.slots.find((s) => s.slot.serial === serial);
      const node = entry?.fileNode;
      if (!entry || node === undefined) return;
      this.ensureRunning(`empty the disk slot ${serial}`);
      await this.reopenSlot(entry.slot, entry.slot.empty);
      await this.qmpClient.execute('blockdev-del', { 'node-name': node });
      entry.fileNode = undefined;
      this.logger.info({ id: this.id, slot: serial }, 'disk slot emptied');
    });
  }

  /** Points a slot's raw node at another file node (the options not named go back to their defaults). */
  private async reopenSlot(slot: DiskSlot, fileNode: string): Promise<void> {
    await this.qmpClient.execute('blockdev-reopen', { options: [{ driver: 'raw', 'node-name': slot.node, file: fileNode, ...slotMode(slot) }] });
  }

  addVcpus(count: number): Promise<void> {
    return this.serialize(async () => {
      this.ensureRunning(`add ${count} vCPUs`);
      if (!Number.isSafeInteger(count) || count <= 0) throw invalidArgument(`vCPUs to add: ${count}`);
      const slots = (await this.qmpClient.execute('query-hotpluggable-cpus', {})) as Array<{
        type: string;
        props: Record<string, number>;
        'qom-path'?: string;
      }>;
      const free = slots.filter((s) => s['qom-path'] === undefined);
      if (free.length < count) {
        throw new TernError('ResourceExhausted', `VM ${this.id}: ${count} more vCPUs wanted, ${free.length} hot-plug slots left`);
      }
      for (const slot of free.slice(0, count)) {
        const id = `tern-cpu${++this.cpusAdded}`;
        await this.qmpClient.execute('device_add', { driver: slot.type, id, ...slot.props });
        this.logger.info({ id: this.id, cpu: id, props: slot.props }, 'vCPU hot-plugged');
      }
    });
  }

  addMemory(sizeMiB: number): Promise<void> {
    return this.serialize(async () => {
      this.ensureRunning(`add ${sizeMiB} MiB of memory`);
      if (!Number.isSafeInteger(sizeMiB) || sizeMiB <= 0) throw invalidArgument(`memory to add: ${sizeMiB} MiB`);
      const n = ++this.dimms;
      const memdev = `tern-dimm-mem${n}`;
      await this.qmpClient.execute('object-add', { 'qom-type': 'memory-backend-ram', id: memdev, size: sizeMiB * 1024 * 1024 });
      try {
        await this.qmpClient.execute('device_add', { driver: 'pc-dimm', id: `tern-dimm${n}`, memdev });
      } catch (err) {
        await this.qmpClient.execute('object-del', { id: memdev }).catch(() => {});
        throw err;
      }
      this.logger.info({ id: this.id, sizeMiB, dimm: `tern-dimm${n}` }, 'memory hot-plugged');
    });
  }

  private async doDetach(id: string): Promise<void> {
    this.ensureRunning(`detach ${id}`);
    const dev = this.attached.get(id);
    if (!dev) throw notFound(`block device ${id} in VM ${this.id}`);
    if (!dev.deviceGone) {
      const cancel = new AbortController();
      const deleted = this.qmpClient.waitEvent(
        'DEVICE_DELETED',
        this.unplugTimeoutMs,
        (data) => typeof data === 'object' && data !== null && (data as { device?: unknown }).device === id,
        cancel.signal,
      );
      deleted.catch(() => {});
      if (!dev.unplugRequested) {
        try {
          await this.qmpClient.execute('device_del', { id });
        } catch (err) {
          cancel.abort();
          throw err;
        }
        dev.unplugRequested = true;
      }
      // PCIe native hot-unplug completes only when the guest releases the device.
      try {
        await deleted;
      } catch (err) {
        if (!(err instanceof TernError && err.code === 'DeadlineExceeded')) throw err;
        throw new TernError('DeadlineExceeded', `block device ${id}: the guest did not release it within ${this.unplugTimeoutMs} ms (unplug stays requested)`, {
          cause: err,
        });
      }
    }
    await this.qmpClient.execute('blockdev-del', { 'node-name': dev.nodeName });
    this.attached.delete(id);
    this.freePorts.push(dev.port);
    this.logger.info({ id: this.id, device: id }, 'block device detached');
  }

  /**
   * Hot-plugs a virtio-net NIC backed by a tap device onto a free root port:
   * a VM restored from a template gets its NICs this way. The tap is in
   * QEMU's network namespace, or in `netnsPath` (a VM from the warm pool runs
   * outside its pod's): there the tern-tapfd helper opens it and hands it to
   * QEMU over the second monitor.
   */
  attachNic(nic: NicSpec, netnsPath?: string): Promise<void> {
    return this.plugNic(nic.id, nic.mac, { tap: nic.tap }, async () => {
      if (netnsPath) await this.passTap(nic, netnsPath);
      else await this.qmpClient.execute('netdev_add', { type: 'tap', id: nic.id, ifname: nic.tap, script: 'no', downscript: 'no' });
    });
  }

  /**
   * A virtio-net NIC on QEMU's user-mode network (slirp): outgoing traffic is
   * QEMU's own sockets, so it leaves from the host's addresses.
   */
  attachHostNic(nic: HostNicSpec): Promise<void> {
    return this.plugNic(nic.id, nic.mac, { network: 'user' }, () => this.qmpClient.execute('netdev_add', { type: 'user', id: nic.id }).then(() => undefined));
  }

  /** Makes the netdev (`addNetdev`), then a virtio-net device on it in a free hot-plug slot; undoes both on failure. */
  private plugNic(id: string, mac: string, logFields: object, addNetdev: () => Promise<void>): Promise<void> {
    return this.serialize(async () => {
      this.ensureRunning(`attach NIC ${id}`);
      if (!BLOCK_ID_RE.test(id)) throw invalidArgument(`NIC id ${JSON.stringify(id)}`);
      const port = this.freePorts.shift();
      if (port === undefined) throw new TernError('ResourceExhausted', `VM ${this.id}: no free hot-plug slot for NIC ${id}`);
      try {
        await addNetdev();
        try {
          await this.qmpClient.execute('device_add', { driver: 'virtio-net-pci', netdev: id, id: `${id}-dev`, mac, bus: port });
        } catch (err) {
          await this.qmpClient.execute('netdev_del', { id }).catch(() => {});
          throw err;
        }
      } catch (err) {
        this.freePorts.unshift(port);
        throw err;
      }
      this.logger.info({ id: this.id, nic: id, ...logFields, port }, 'NIC attached');
    });
  }

  forwardHostPort(nicId: string, port: number): Promise<void> {
    return this.hostfwd(nicId, port, `hostfwd_add ${nicId} tcp::${port}-:${port}`);
  }

  unforwardHostPort(nicId: string, port: number): Promise<void> {
    return this.hostfwd(nicId, port, `hostfwd_remove ${nicId} tcp::${port}`);
  }

  /** hostfwd_add/remove exist only as monitor commands; they answer errors as text, not as QMP errors. */
  private hostfwd(nicId: string, port: number, command: string): Promise<void> {
    return this.serialize(async () => {
      this.ensureRunning(command);
      if (!BLOCK_ID_RE.test(nicId)) throw invalidArgument(`NIC id ${JSON.stringify(nicId)}`);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument(`port ${port}`);
      const out = String((await this.qmpClient.execute('human-monitor-command', { 'command-line': command })) ?? '').trim();
      if (out !== '') throw new TernError('FailedPrecondition', `VM ${this.id}: ${command}: ${out}`);
    });
  }

  /** Opens nic.tap in netnsPath and creates the netdev from it, through tern-tapfd. */
  private async passTap(nic: NicSpec, netnsPath: string): Promise<void> {
    const helper = this.tapFdHelper;
    if (!helper)
      throw new TernError(
        'FailedPrecondition',
        `NIC ${nic.id}: its tap is in ${netnsPath}, outside QEMU's network namespace, and no tern-tapfd helper is configured`,
      );
    try {
      await runCommand(helper, [netnsPath, nic.tap, this.paths.qmpFdSocket, nic.id], { timeoutMs: TAPFD_TIMEOUT_MS });
    } catch (err) {
      const code = err instanceof TernError ? err.code : 'Internal';
      throw new TernError(code, `NIC ${nic.id}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Loads a template's device state (the state file QEMU inherited) into this VM (launched with -incoming defer) and runs it. */
  async restoreTemplate(): Promise<void> {
    this.ensureRunning('restore from template');
    await restoreState(this.qmpClient, this.templateStatePath(), this.proc.exited);
  }

  async saveTemplate(): Promise<void> {
    this.ensureRunning('save template');
    await saveState(this.qmpClient, this.templateStatePath(), this.proc.exited);
  }

  private templateStatePath(): string {
    if (this.statePath === undefined) throw new TernError('FailedPrecondition', `VM ${this.id} was not launched as a template or clone: it has no state file`);
    return this.statePath;
  }

  async vcpuThreadIds(): Promise<number[]> {
    this.ensureRunning('list vCPU threads');
    const cpus = (await this.qmpClient.execute('query-cpus-fast')) as Array<{ 'thread-id'?: unknown }>;
    const tids = cpus.map((c) => c['thread-id']).filter((t): t is number => typeof t === 'number' && Number.isSafeInteger(t) && t > 0);
    if (tids.length === 0) throw new TernError('Internal', `VM ${this.id}: query-cpus-fast named no vCPU thread`);
    return [...new Set(tids)];
  }

  async pause(): Promise<void> {
    this.ensureRunning('pause');
    await this.qmpClient.execute('stop');
  }

  async resume(): Promise<void> {
    this.ensureRunning('resume');
    await this.qmpClient.execute('cont');
  }

  stop(timeoutMs = DEFAULT_STOP_TIMEOUT_MS): Promise<void> {
    this.stopping ??= this.doStop(timeoutMs);
    return this.stopping;
  }

  private async doStop(timeoutMs: number): Promise<void> {
    if (this.proc.hasExited) return;
    if (this.released) throw new TernError('FailedPrecondition', `stop VM ${this.id}: it was handed to another process`);
    const deadline = Date.now() + timeoutMs;
    if (!this.qmpClient.closed) {
      // QEMU may close the socket before answering quit: either way it is leaving.
      await this.qmpClient.execute('quit', undefined, timeoutMs).catch((err: Error) => {
        this.logger.debug({ id: this.id, err: err.message }, 'qmp quit');
      });
    }
    if (await this.proc.waitExit(Math.max(0, deadline - Date.now()))) return;
    this.logger.warn({ id: this.id, pid: this.pid, timeoutMs }, 'qemu did not quit in time: SIGKILL');
    await this.proc.kill();
  }

  release(): void {
    if (this.stopping) throw new TernError('FailedPrecondition', `release VM ${this.id}: it is stopping`);
    this.released = true;
    this.qmpClient.close();
    // Still our child until it exits (we reap it), but it must not keep us running.
    this.proc.release();
  }

  waitExit(): Promise<VmExit> {
    return this.proc.exited;
  }

  /** Stops QEMU if it still runs, then removes its sockets, pid file and vm.json. Idempotent. */
  cleanup(): Promise<void> {
    this.cleaned ??= (async () => {
      await this.stop();
      this.qmpClient.close();
      removeFiles(this.runDir, ownedFiles(this.runDir));
    })().catch((err: unknown) => {
      this.cleaned = undefined; // let a later call retry
      throw err;
    });
    return this.cleaned;
  }
}
