// The one interface every hypervisor driver implements (QEMU now; Cloud
// Hypervisor later). The shim only ever talks to this interface; drivers never
// import the shim.
import type { Duplex } from 'node:stream';
import { TernError } from '../common/errors.js';
import type { RunAs } from '../common/run-as.js';

export type { RunAs };

export type Accel = 'kvm' | 'tcg';

export interface VmSpec {
  /** Sandbox id; used in names and logs. */
  id: string;
  /** Directory owned by this VM (sockets, pid file, console log). Created by the caller. */
  runDir: string;
  kernelPath: string;
  initrdPath: string;
  /** Read-only image (erofs) holding node, its libraries and the agent; attached as the first virtio-blk disk, serial "tern-guest". */
  guestImagePath: string;
  vcpus: number;
  memoryMiB: number;
  /** 'auto' picks KVM where the CPU has vmx/svm (and not PVM), TCG otherwise. */
  accel: Accel | 'auto';
  /** Extra kernel command-line words. */
  kernelParams?: string[];
  /**
   * Called with the hypervisor's pid as soon as it is spawned, before it has
   * set up its guest (the shim moves it into the pod's host cgroup). A throw
   * fails the launch and the process is killed.
   */
  onSpawn?: (pid: number) => void;
  /**
   * The VM will be handed to another process (Vm.release): its output goes
   * to a file in runDir and it does not depend on the launching process.
   */
  handover?: boolean;
  /** Number of free hot-plug slots to create at launch. */
  hotplugSlots?: number;
  /**
   * A writable disk of this many MiB present from boot, with nothing behind
   * it yet (it reads zeros): Vm.insertDisk puts a file there, so the first
   * container that writes needs no hot-plug. Absent or 0: no such disk.
   */
  writableSlotMiB?: number;
  /**
   * A file in the writable slot from boot instead of nothing (a template's:
   * the filesystem its guest mounts before it is saved). Its size must be
   * writableSlotMiB.
   */
  writableSlotFile?: string;
  /**
   * Read-only disks for image layers, present from boot and empty (they read
   * zeros), each sizeMiB large: Vm.insertDisk puts a layer's file (padded to
   * that size) behind one, so a container's layers need no hot-plug either.
   */
  layerSlots?: { count: number; sizeMiB: number };
  /** Under TCG: the translation cache size in MiB (0 = the hypervisor's default). */
  tcgTbSizeMiB?: number;
  /** Under TCG: the emulated CPU model (QEMU's -cpu value; default DEFAULT_TCG_CPU_MODEL, "max,-erms"). KVM always passes the host's. */
  tcgCpuModel?: string;
  /**
   * Memory hot-plug: the VM may grow up to this many MiB (Vm.addMemory);
   * absent, 0 or not above memoryMiB: a fixed size.
   */
  maxMemoryMiB?: number;
  /** CPU hot-plug: the VM may grow to this many vCPUs (Vm.addVcpus); absent or not above vcpus: fixed. */
  maxVcpus?: number;
  /**
   * A second agent-side port (tern.debug) bound to a socket in runDir: the
   * guest serves a root shell on it (`tern debug-shell`). Off unless configured.
   */
  debugShell?: boolean;
  /** QEMU binary; defaults to qemu-system-x86_64 on PATH. */
  binary?: string;
  /**
   * Run the hypervisor as this unprivileged user once it has set the machine
   * up (hypervisor.run_as): what it opens later (hot-plugged disks, the 9p
   * share's files, taps by name) it opens with this user's rights only.
   */
  runAs?: RunAs;
  /**
   * Network namespace (a path such as /var/run/netns/cni-...) the hypervisor
   * runs in, so it can open the pod's tap devices.
   */
  netnsPath?: string;
  /** NICs attached at launch, each backed by a tap device in netnsPath. */
  nics?: NicSpec[];
  /**
   * Host directory exported to the guest as one virtio-9p device (mount tag
   * "tern-shared"); host volumes are bind-mounted into it by the shim. The
   * file server is QEMU itself, so a VM cloned from a template can serve it too.
   */
  sharedDir?: string;
  /**
   * Booting through a VM template: 'template' boots the VM whose state is
   * saved (Vm.saveTemplate) for clones; 'clone' restores one from it. Both
   * back guest RAM with memoryPath (the template shared, a clone privately,
   * copy-on-write) and give the VM the template's device layout: NICs are
   * hot-plugged after the restore.
   */
  template?: TemplateRole;
}

/**
 * statePath: where a template's device state is written (Vm.saveTemplate) or
 * a clone's is read from (the driver opens it and the clone's QEMU inherits
 * the open file, so it needs no access to the template's directory). A
 * template VM ignores VmSpec.runAs: it stays root to write its state.
 */
export type TemplateRole = { role: 'template'; memoryPath: string; statePath: string } | { role: 'clone'; memoryPath: string; statePath: string };

export interface NicSpec {
  /** QEMU id for the netdev and device. */
  id: string;
  /** Name of an existing tap device (in the VM's network namespace). */
  tap: string;
  /** MAC address the guest NIC gets (the pod interface's own, Kata-style). */
  mac: string;
}

export interface HostNicSpec {
  /** Hypervisor id for the netdev and device. */
  id: string;
  mac: string;
}

/** The guest's side of a host NIC (QEMU's user-mode network defaults). */
export const HOST_NIC_NETWORK = { guestAddress: '10.0.2.15/24', gateway: '10.0.2.2', mtu: 1500 } as const;

export interface BlockDevice {
  /** Unique id within the VM (QEMU node/device name). */
  id: string;
  path: string;
  readOnly: boolean;
  /** virtio-blk serial the guest sees in /sys/block/vdX/serial (max 20 chars). */
  serial: string;
}

export interface VmExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Last lines QEMU printed on stderr, for error messages. */
  stderrTail: string;
}

export interface Vm {
  readonly id: string;
  readonly pid: number;
  readonly accel: Accel;
  /** Opens a new connection to the guest agent's channel (virtio-serial unix socket or vsock). */
  connectAgent(): Promise<Duplex>;
  attachBlock(dev: BlockDevice): Promise<void>;
  /**
   * Hot-plugs a NIC backed by a tap device, in the hypervisor's network
   * namespace or, given netnsPath, in that one (a VM started outside its
   * pod's network namespace, as the warm pool's are).
   */
  attachNic(nic: NicSpec, netnsPath?: string): Promise<void>;
  /**
   * Host networking: hot-plugs a NIC on the hypervisor's own user-mode
   * network (HOST_NIC_NETWORK: the guest's traffic leaves from the host's
   * addresses, as a host-network pod's does), to which host ports can be
   * forwarded.
   */
  attachHostNic(nic: HostNicSpec): Promise<void>;
  /** Forwards TCP `port` on every host address to the same port of the guest, over that NIC. */
  forwardHostPort(nicId: string, port: number): Promise<void>;
  /** Ends a forward made by forwardHostPort (idempotent). */
  unforwardHostPort(nicId: string, port: number): Promise<void>;
  detachBlock(id: string): Promise<void>;
  /**
   * Puts `path` behind a free disk slot of its kind (writable: the one of
   * VmSpec.writableSlotMiB; read-only: one of VmSpec.layerSlots), which the
   * guest has had since boot; resolves with the serial the guest sees it
   * under, or undefined when no slot of that kind is free or the file's size
   * is not the slot's (attach a disk of its own then).
   */
  insertDisk(path: string, readOnly: boolean): Promise<string | undefined>;
  /** Takes the file back out of the slot of `serial` (the guest must have let go of it); the slot is free again. */
  ejectDisk(serial: string): Promise<void>;
  /**
   * Hot-plugs sizeMiB of RAM (a DIMM); the guest onlines it. Only within the
   * VmSpec.maxMemoryMiB the VM was started with.
   */
  addMemory(sizeMiB: number): Promise<void>;
  /**
   * Hot-plugs `count` vCPUs (the guest sees them offline: the agent onlines
   * them). Only within the VmSpec.maxVcpus the VM was started with.
   */
  addVcpus(count: number): Promise<void>;
  /**
   * Host thread ids of the VM's vCPUs now (hot-plugged ones included), for
   * pinning them to host CPUs; a thread that runs several vCPUs is listed once.
   */
  vcpuThreadIds(): Promise<number[]>;
  pause(): Promise<void>;
  /**
   * Template VMs only: pauses the VM and writes its device state to its
   * TemplateRole's statePath (guest RAM stays in the template's memory file).
   * The VM must be stopped afterwards; it cannot go on running over its template.
   */
  saveTemplate(): Promise<void>;
  resume(): Promise<void>;
  /** Graceful power-off with a deadline, then SIGKILL. Idempotent. */
  stop(timeoutMs?: number): Promise<void>;
  /** Resolves when the hypervisor process has exited. */
  waitExit(): Promise<VmExit>;
  /** Removes everything the VM created in runDir (sockets, pid file). Idempotent. */
  cleanup(): Promise<void>;
  /**
   * Lets go of a running VM without stopping it, so that another process can
   * adopt it (HypervisorDriver.adopt): closes the control channel; every
   * other method then fails. The warm pool hands its VMs to shims this way.
   */
  release(): void;
}

export interface HypervisorDriver {
  readonly name: string;
  /** Launches the VM; resolves once the hypervisor process runs and its control channel is connected. */
  start(spec: VmSpec): Promise<Vm>;
  /**
   * Takes over a running VM another process launched from this spec and
   * released (the warm pool's): checks on disk that the process in runDir is
   * that VM, connects its control channel. Its exit is seen when the control
   * channel closes (it is not our child: no exit code).
   */
  adopt(spec: VmSpec): Promise<Vm>;
  /** Kills a VM left behind by a dead shim, from what is on disk in runDir. */
  cleanupFromDisk(runDir: string): Promise<void>;
  /**
   * The hypervisor process that runDir's files name, and whether it runs now
   * as that VM (a pid reused by another process does not count), read from
   * disk alone: for tools that inspect sandboxes they do not own.
   */
  processOnDisk(runDir: string): { pid: number | null; running: boolean };
}

/**
 * A clone's restore from its template was refused or killed QEMU (not a
 * deadline, not a launch problem): the template itself is suspect.
 */
export class TemplateRestoreError extends TernError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('Internal', message, options);
    this.name = 'TemplateRestoreError';
  }
}
