// The QEMU command line, built from small typed fragments. Each fragment
// returns the argv words for one concern; buildQemuArgs joins them for a VmSpec.
// QEMU stays in the foreground (no -daemonize) so the driver can wait for its exit.
import path from 'node:path';
import { DEFAULT_TCG_CPU_MODEL } from '../../common/tcg-cpu-model.js';
import { WRITABLE_SLOT_SERIAL } from '../../common/disk-slots.js';
import type { Accel, NicSpec, RunAs, VmSpec } from '../hypervisor.js';

export const DEFAULT_BINARY = 'qemu-system-x86_64';
export const DEFAULT_KERNEL_PARAMS = ['console=ttyS0', 'quiet', 'panic=-1', 'reboot=t'];
export const DEFAULT_HOTPLUG_SLOTS = 4;
export const AGENT_PORT_NAME = 'tern.agent';
export const DEBUG_PORT_NAME = 'tern.debug';
export const GUEST_DISK_SERIAL = 'tern-guest';
export const SHARED_DIR_TAG = 'tern-shared';

/** Files QEMU creates or writes inside the VM's runDir. */
export interface QemuPaths {
  qmpSocket: string;
  /**
   * A second QMP monitor (template layouts): a helper hands QEMU a tap opened
   * in another network namespace over it, as QMP keeps passed files per monitor.
   */
  qmpFdSocket: string;
  agentSocket: string;
  /** The guest's debug shell (VmSpec.debugShell). */
  debugSocket: string;
  consoleLog: string;
  /** QEMU's own stdout/stderr, for a VM launched to be handed over (else it goes to a pipe). */
  outputLog: string;
  pidFile: string;
  /** Written by the driver: what cleanupFromDisk needs after a crash. */
  stateFile: string;
}

export function qemuPaths(runDir: string): QemuPaths {
  return {
    qmpSocket: path.join(runDir, 'qmp.sock'),
    qmpFdSocket: path.join(runDir, 'qmp-fd.sock'),
    agentSocket: path.join(runDir, 'agent.sock'),
    debugSocket: path.join(runDir, 'debug.sock'),
    consoleLog: path.join(runDir, 'console.log'),
    outputLog: path.join(runDir, 'qemu.log'),
    pidFile: path.join(runDir, 'qemu.pid'),
    stateFile: path.join(runDir, 'vm.json'),
  };
}

/** Escapes a value for QEMU's key=value option syntax (a comma is written twice). */
export function optValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * QEMU's seccomp filter: no obsolete syscalls, no scheduler or resource
 * control; no spawning, except for a template VM, whose state is saved
 * through `exec:` (migration.ts; it also stays root); and no setuid/setgid/capability changes,
 * except when QEMU must drop to runAs itself (-runas calls setgid/setuid
 * after the filter is in place, and "deny" and "children" both kill it
 * then). That drop leaves QEMU no capabilities and no_new_privs set (the
 * filter sets it), so set*id calls can no longer gain anything.
 */
export function sandboxArgs(runAs?: RunAs, spawn: 'allow' | 'deny' = 'deny'): string[] {
  const elevate = runAs ? 'allow' : 'deny';
  return ['-sandbox', `on,obsolete=deny,elevateprivileges=${elevate},spawn=${spawn},resourcecontrol=deny`];
}

export function baseArgs(runAs?: RunAs, spawn: 'allow' | 'deny' = 'deny'): string[] {
  return ['-nodefaults', '-no-user-config', '-nographic', '-display', 'none', ...sandboxArgs(runAs, spawn), ...runAsArgs(runAs)];
}

/**
 * QEMU drops to this user and group after it has built the machine from its
 * command line (sockets, files, taps named there are opened as root) and
 * before the guest runs.
 */
export function runAsArgs(runAs?: RunAs): string[] {
  return runAs ? ['-runas', `${runAs.uid}:${runAs.gid}`] : [];
}

/** debug-threads names each vCPU thread "CPU <n>/<accel>" on the host (top -H, /proc/<pid>/task/<tid>/comm): which threads a pinning holds can be seen. */
export function nameArgs(id: string): string[] {
  return ['-name', `${optValue(`tern-${id}`)},debug-threads=on`];
}

export function machineArgs(machine = 'q35'): string[] {
  return ['-machine', machine];
}

/**
 * Under TCG, tbSizeMiB bounds QEMU's translation cache (its default is far
 * larger). Measured here with template clones (10 idle pods, 2 rounds): 32
 * MiB saves 8-10 MiB PSS per pod; 24 MiB saves 18 MiB, but a start takes
 * ~45% more time and QEMU CPU; 16 MiB made a cold boot 50% slower. 0 or
 * absent keeps QEMU's default.
 */
export function accelArgs(accel: Accel, tbSizeMiB = 0): string[] {
  if (accel === 'kvm') return ['-accel', 'kvm'];
  return ['-accel', tbSizeMiB > 0 ? `tcg,thread=multi,tb-size=${tbSizeMiB}` : 'tcg,thread=multi'];
}

/**
 * vCPUs at boot; with maxVcpus above that, room to hot-plug more (ACPI CPU
 * hot-plug). Under KVM the guest sees the host's CPU; under TCG it sees
 * tcgModel, whose every feature the guest uses is emulated.
 */
export function cpuArgs(accel: Accel, vcpus: number, maxVcpus = 0, tcgModel = DEFAULT_TCG_CPU_MODEL): string[] {
  return ['-cpu', accel === 'kvm' ? 'host' : tcgModel, '-smp', maxVcpus > vcpus ? `${vcpus},maxcpus=${maxVcpus}` : String(vcpus)];
}

/** DIMM slots for memory hot-plug (each Update that grows the VM takes one). */
export const MEMORY_SLOTS = 8;
/** Makes the guest kernel online hot-plugged memory by itself (no udev in the guest). */
export const MEMORY_HOTPLUG_KERNEL_PARAM = 'memhp_default_state=online';

/** `-m`'s value: with maxMiB above the boot size, room for hot-plugged DIMMs up to maxMiB (ACPI). */
export function memorySize(memoryMiB: number, maxMiB = 0): string {
  return maxMiB > memoryMiB ? `${memoryMiB}M,slots=${MEMORY_SLOTS},maxmem=${maxMiB}M` : `${memoryMiB}M`;
}

/** Kernel parameters a VM of this spec needs besides the configured ones. */
export function memoryHotplugParams(spec: Pick<VmSpec, 'memoryMiB' | 'maxMemoryMiB'>): string[] {
  return (spec.maxMemoryMiB ?? 0) > spec.memoryMiB ? [MEMORY_HOTPLUG_KERNEL_PARAM] : [];
}

/**
 * Guest RAM. Plain anonymous memory by default; `shared` backs it with a memfd
 * mapped shared, which vhost-user devices (virtio-fs) need.
 */
export function memoryArgs(memoryMiB: number, backend: 'anonymous' | 'shared' = 'anonymous', maxMiB = 0): string[] {
  const args = ['-m', memorySize(memoryMiB, maxMiB)];
  if (backend === 'shared') {
    args.push('-object', `memory-backend-memfd,id=tern-mem,size=${memoryMiB}M,share=on`);
    args.push('-machine', 'memory-backend=tern-mem');
  }
  return args;
}

/**
 * Guest RAM backed by a file (a VM template's memory): the template maps it
 * shared, so the booted guest's pages land in the file; a clone maps it
 * private, so it reads the template's pages and its own writes stay its own
 * (copy-on-write). `readonly=on` is not used: it made clones hang here.
 */
export function memoryFileArgs(memoryMiB: number, memPath: string, share: boolean, maxMiB = 0): string[] {
  return [
    '-m',
    memorySize(memoryMiB, maxMiB),
    '-object',
    `memory-backend-file,id=tern-mem,size=${memoryMiB}M,mem-path=${optValue(memPath)},share=${share ? 'on' : 'off'}`,
    '-machine',
    'memory-backend=tern-mem',
  ];
}

/**
 * VM generation id (ACPI): a clone gets a new one, and the guest kernel
 * reseeds its random generator when it sees the change.
 */
export function vmgenidArgs(): string[] {
  return ['-device', 'vmgenid,guid=auto'];
}

/** Kernel parameter that tells the guest's /init it boots a template (no shared-dir mount). */
export const TEMPLATE_KERNEL_PARAM = 'tern.template=1';
/** Extra hot-plug slots a template layout keeps for the NICs hot-plugged into clones. */
export const TEMPLATE_NIC_SLOTS = 2;

export function kernelArgs(kernelPath: string, initrdPath: string, params: readonly string[] = []): string[] {
  return [
    '-kernel',
    kernelPath,
    '-initrd',
    initrdPath,
    '-append',
    [...DEFAULT_KERNEL_PARAMS, ...params].join(' '),
    // panic=-1 makes the guest reboot on panic; -no-reboot turns that into QEMU exiting.
    '-no-reboot',
  ];
}

/** Guest serial console (ttyS0) written to a log file (truncated at launch). */
export function serialConsoleArgs(logPath: string): string[] {
  return ['-chardev', `file,id=tern-console,path=${optValue(logPath)}`, '-serial', 'chardev:tern-console'];
}

/**
 * virtio-serial port named tern.agent, bound to a listening unix socket on the
 * host; with debugSocket, a second port (tern.debug) for the guest's debug shell.
 */
export function agentChannelArgs(socketPath: string, debugSocket?: string): string[] {
  const args = [
    '-device',
    'virtio-serial-pci,id=tern-vser',
    '-chardev',
    `socket,id=tern-agent,path=${optValue(socketPath)},server=on,wait=off`,
    '-device',
    `virtserialport,bus=tern-vser.0,chardev=tern-agent,name=${AGENT_PORT_NAME}`,
  ];
  if (debugSocket !== undefined) {
    args.push('-chardev', `socket,id=tern-debug,path=${optValue(debugSocket)},server=on,wait=off`);
    args.push('-device', `virtserialport,bus=tern-vser.0,chardev=tern-debug,name=${DEBUG_PORT_NAME}`);
  }
  return args;
}

/** The read-only guest image (node + agent), a raw virtio-blk disk with serial tern-guest. */
export function guestDiskArgs(imagePath: string): string[] {
  return [
    '-blockdev',
    `driver=file,node-name=tern-guest-file,filename=${optValue(imagePath)},read-only=on`,
    '-blockdev',
    'driver=raw,node-name=tern-guest,file=tern-guest-file,read-only=on',
    '-device',
    `virtio-blk-pci,id=tern-guest-disk,drive=tern-guest,serial=${GUEST_DISK_SERIAL}`,
  ];
}

/**
 * A disk present from boot with nothing behind it yet: a null node of its
 * size that reads zeros. A file is put behind it later by reopening its raw
 * node (QMP blockdev-reopen), which the guest does not see, so a container's
 * disk needs no PCI hot-plug. The guest read the size at boot: only a file of
 * exactly that size may go in.
 */
export interface DiskSlot {
  /** What the guest sees in /sys/block/<dev>/serial. */
  serial: string;
  /** The virtio-blk device's id. */
  device: string;
  /** The raw node the device is on; its `file` child is what changes. */
  node: string;
  /** The null node behind the disk while it is empty. */
  empty: string;
  readOnly: boolean;
  sizeMiB: number;
  /** The file in the slot from boot (VmSpec.writableSlotFile), on the file node `${node}-boot`; else the slot starts empty. */
  bootFile?: string;
}

/** The VM's disk slots: the writable one (if it has a size), then the read-only ones for image layers (VmSpec.layerSlots). */
export function diskSlots(spec: Pick<VmSpec, 'writableSlotMiB' | 'writableSlotFile' | 'layerSlots'>): DiskSlot[] {
  const slots: DiskSlot[] = [];
  const rw = spec.writableSlotMiB ?? 0;
  if (rw > 0) {
    const bootFile = spec.writableSlotFile ? { bootFile: spec.writableSlotFile } : {};
    slots.push({ serial: WRITABLE_SLOT_SERIAL, device: 'tern-rw-dev', node: 'tern-rw', empty: 'tern-rw-null', readOnly: false, sizeMiB: rw, ...bootFile });
  }
  const ro = spec.layerSlots;
  if (ro && ro.sizeMiB > 0) {
    for (let i = 0; i < ro.count; i++) {
      slots.push({
        serial: `tern-ro-slot${i}`,
        device: `tern-ro${i}-dev`,
        node: `tern-ro${i}`,
        empty: `tern-ro${i}-null`,
        readOnly: true,
        sizeMiB: ro.sizeMiB,
      });
    }
  }
  return slots;
}

/** The file node a slot's boot file is on. */
export function slotBootNode(slot: DiskSlot): string {
  return `${slot.node}-boot`;
}

/**
 * The slots' disks. A writable one passes discards on, as a hot-plugged
 * writable disk does; a read-only one is read-only to the guest. A slot with
 * a boot file has it behind the disk from the start.
 */
export function diskSlotArgs(slots: DiskSlot[]): string[] {
  return slots.flatMap((s) => {
    const mode = s.readOnly ? 'read-only=on' : 'discard=unmap';
    const boot = s.bootFile ? ['-blockdev', `driver=file,node-name=${slotBootNode(s)},filename=${optValue(s.bootFile)},${mode}`] : [];
    return [
      '-blockdev',
      `driver=null-co,node-name=${s.empty},size=${s.sizeMiB * 1024 * 1024},read-zeroes=on${s.readOnly ? ',read-only=on' : ''}`,
      ...boot,
      '-blockdev',
      `driver=raw,node-name=${s.node},file=${s.bootFile ? slotBootNode(s) : s.empty},${mode}`,
      '-device',
      `virtio-blk-pci,id=${s.device},drive=${s.node},serial=${s.serial}`,
    ];
  });
}

/** Ids of the empty pcie-root-ports created for hot-plug. */
export function hotplugPortIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `tern-rp${i}`);
}

export function hotplugPortArgs(count: number): string[] {
  return hotplugPortIds(count).flatMap((id, i) => ['-device', `pcie-root-port,id=${id},bus=pcie.0,chassis=${i + 1}`]);
}

/**
 * virtio-balloon with free page reporting: the guest hands free blocks of
 * pageblock size (2 MiB) back, and QEMU discards them (madvise DONTNEED), so
 * memory the guest freed leaves QEMU's resident set. The balloon itself is
 * never inflated; deflate-on-oom lets the guest take pages back first should
 * anyone inflate it. Placed after the hot-plug root ports, so every device
 * before it keeps its PCI address.
 */
export function balloonArgs(): string[] {
  return ['-device', 'virtio-balloon-pci,id=tern-balloon,free-page-reporting=on,deflate-on-oom=on'];
}

export function rngArgs(): string[] {
  return ['-object', 'rng-random,id=tern-rng,filename=/dev/urandom', '-device', 'virtio-rng-pci,rng=tern-rng'];
}

export function qmpArgs(socketPath: string, id = 'tern-qmp'): string[] {
  return ['-chardev', `socket,id=${id},path=${optValue(socketPath)},server=on,wait=off`, '-mon', `chardev=${id},mode=control`];
}

export function pidFileArgs(pidFile: string): string[] {
  return ['-pidfile', pidFile];
}

/** One virtio-net NIC per tap device (no vhost: /dev/vhost-net is not assumed). */
export function nicArgs(nics: readonly NicSpec[] = []): string[] {
  return nics.flatMap((n) => [
    '-netdev',
    `tap,id=${n.id},ifname=${optValue(n.tap)},script=no,downscript=no`,
    '-device',
    `virtio-net-pci,netdev=${n.id},mac=${n.mac}`,
  ]);
}

/**
 * The sandbox's shared directory as a virtio-9p device (tag tern-shared).
 * security_model=none: files keep their host ownership and modes, and what the
 * guest asks for (chown, chmod) is applied as is, as QEMU runs as root (a
 * failure to chown is ignored rather than reported); "mapped" would keep guest
 * ownership in xattrs, so the host would not see the files the container wrote
 * as they are. multidevs=remap: volumes bound in from several host filesystems
 * get distinct inode numbers in the guest.
 */
export function sharedDirArgs(dir: string | undefined): string[] {
  if (!dir) return [];
  return sharedDirArgsAt(dir);
}

function sharedDirArgsAt(dir: string): string[] {
  return [
    '-fsdev',
    `local,id=tern-shared-fs,path=${optValue(dir)},security_model=none,multidevs=remap`,
    '-device',
    `virtio-9p-pci,id=tern-shared-dev,fsdev=tern-shared-fs,mount_tag=${SHARED_DIR_TAG}`,
  ];
}

/** Hot-plug slots the VM is launched with. */
export function hotplugSlotCount(spec: VmSpec): number {
  const slots = spec.hotplugSlots ?? DEFAULT_HOTPLUG_SLOTS;
  return spec.template ? slots + TEMPLATE_NIC_SLOTS : slots;
}

export function buildQemuArgs(spec: VmSpec, paths: QemuPaths, accel: Accel): string[] {
  if (spec.template) return buildTemplateLayoutArgs(spec, paths, accel);
  return [
    ...nameArgs(spec.id),
    ...machineArgs('q35'),
    ...accelArgs(accel, spec.tcgTbSizeMiB),
    ...cpuArgs(accel, spec.vcpus, spec.maxVcpus, spec.tcgCpuModel),
    ...memoryArgs(spec.memoryMiB, 'anonymous', spec.maxMemoryMiB),
    ...baseArgs(spec.runAs),
    ...kernelArgs(spec.kernelPath, spec.initrdPath, [...(spec.kernelParams ?? []), ...memoryHotplugParams(spec)]),
    ...serialConsoleArgs(paths.consoleLog),
    ...qmpArgs(paths.qmpSocket),
    ...agentChannelArgs(paths.agentSocket, spec.debugShell ? paths.debugSocket : undefined),
    ...guestDiskArgs(spec.guestImagePath),
    ...diskSlotArgs(diskSlots(spec)),
    ...rngArgs(),
    ...nicArgs(spec.nics),
    ...sharedDirArgs(spec.sharedDir),
    ...hotplugPortArgs(spec.hotplugSlots ?? DEFAULT_HOTPLUG_SLOTS),
    ...balloonArgs(),
    ...pidFileArgs(paths.pidFile),
  ];
}

/**
 * The device layout shared by a template and its clones. Both command lines
 * must describe the same machine: only backends (sockets, files, the 9p
 * export's directory) may differ. So: file-backed RAM, the disk slots (their
 * null backends are a clone's too: files go in after the restore), a vmgenid device, the
 * 9p device always present (a template's points at an empty directory and is
 * never mounted there: a mounted export blocks saving), no NICs (a clone
 * hot-plugs its own) and TEMPLATE_NIC_SLOTS extra root ports for them. A
 * clone waits for its state (-incoming defer).
 */
function buildTemplateLayoutArgs(spec: VmSpec, paths: QemuPaths, accel: Accel): string[] {
  const t = spec.template!;
  if (!spec.sharedDir) throw new Error('a template layout needs VmSpec.sharedDir');
  return [
    ...nameArgs(spec.id),
    ...machineArgs('q35'),
    ...accelArgs(accel, spec.tcgTbSizeMiB),
    ...cpuArgs(accel, spec.vcpus, spec.maxVcpus, spec.tcgCpuModel),
    ...memoryFileArgs(spec.memoryMiB, t.memoryPath, t.role === 'template', spec.maxMemoryMiB),
    ...(t.role === 'template' ? baseArgs(undefined, 'allow') : baseArgs(spec.runAs)),
    ...kernelArgs(spec.kernelPath, spec.initrdPath, [...(spec.kernelParams ?? []), ...memoryHotplugParams(spec), TEMPLATE_KERNEL_PARAM]),
    ...serialConsoleArgs(paths.consoleLog),
    ...qmpArgs(paths.qmpSocket),
    ...qmpArgs(paths.qmpFdSocket, 'tern-qmp-fd'),
    ...agentChannelArgs(paths.agentSocket, spec.debugShell ? paths.debugSocket : undefined),
    ...guestDiskArgs(spec.guestImagePath),
    ...diskSlotArgs(diskSlots(spec)),
    ...rngArgs(),
    ...vmgenidArgs(),
    ...sharedDirArgsAt(spec.sharedDir),
    ...hotplugPortArgs(hotplugSlotCount(spec)),
    ...balloonArgs(),
    ...pidFileArgs(paths.pidFile),
    ...(t.role === 'clone' ? ['-incoming', 'defer'] : []),
  ];
}
