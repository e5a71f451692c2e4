// A template is keyed by everything that shapes the booted guest: the QEMU
// binary, the kernel, initramfs and guest image (by path, size and mtime: the
// guest image directory is itself content-hashed), vCPUs, memory, the
// accelerator setting, kernel parameters, hot-plug slots, the TCG cache size, the disk slots' sizes,
// the size of the premounted writable filesystem,
// whether the debug shell's port is there, and the layout version below. Any change gives a new key, so a stale
// template is never used: a new one is built beside it.
import { createHash } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import { failedPrecondition } from '../../common/errors';
import type { RunAs } from '../../common/run-as';

/** Bump when the template layout (command line shape, guest protocol) changes. */
// 2: a virtio-balloon device (free page reporting) after the hot-plug root ports.
// 3: the writable slot's disk after the guest image's.
// 4: read-only layer slots after the writable slot.
// 5: the writable slot's filesystem premounted (writable-premount.ts), the size of writableFsMiB.
export const TEMPLATE_LAYOUT_VERSION = 5;

export interface TemplateShape {
  binary: string;
  kernel: string;
  initrd: string;
  image: string;
  vcpus: number;
  memoryMiB: number;
  accel: string;
  kernelParams: string[];
  hotplugSlots: number;
  tcgTbSizeMiB: number;
  /** hypervisor.tcg_cpu_model: the CPU a TCG guest sees (a template's saved CPU state is that model's). */
  tcgCpuModel: string;
  /** The writable slot's disk (runtime.rootfs_device_mib): the guest reads its size at boot. */
  writableSlotMiB: number;
  /**
   * The filesystem in the writable slot the template's guest mounts (the
   * default container limit: runtime.rootfs_limit_mib, else the device's
   * size); 0: none. A container with that limit takes it over.
   */
  writableFsMiB: number;
  /** The read-only layer slots (runtime.layer_slots, layer_slot_mib): the guest has their disks from boot. */
  layerSlots: { count: number; sizeMiB: number };
  /** Memory hot-plug room (hypervisor.max_memory_mib): the command line's `-m` and a kernel parameter. */
  maxMemoryMiB: number;
  /** CPU hot-plug room (hypervisor.max_vcpus, resolved): the command line's `-smp`. */
  maxVcpus: number;
  /** The guest has the debug shell's port (agent.debug_shell). */
  debugShell: boolean;
  /**
   * The user QEMU drops to (hypervisor.run_as, resolved). Not in the key: it
   * does not change the machine, and a clone gets its template's state
   * through a descriptor, whoever runs it.
   */
  runAs?: RunAs;
}

function fileId(what: string, file: string): string {
  try {
    const real = realpathSync(file);
    const st = statSync(real);
    return `${real}:${st.size}:${st.mtimeMs}`;
  } catch (err) {
    throw failedPrecondition(`template key: ${what} ${file}: ${(err as Error).message}`);
  }
}

/** The template key (24 hex digits) for a guest shape; `binaryPath` is the resolved QEMU binary. */
export function templateKey(shape: TemplateShape, binaryPath: string): string {
  const parts = {
    layout: TEMPLATE_LAYOUT_VERSION,
    qemu: fileId('QEMU binary', binaryPath),
    kernel: fileId('kernel', shape.kernel),
    initrd: fileId('initrd', shape.initrd),
    image: fileId('guest image', shape.image),
    vcpus: shape.vcpus,
    memoryMiB: shape.memoryMiB,
    accel: shape.accel,
    kernelParams: shape.kernelParams,
    hotplugSlots: shape.hotplugSlots,
    tcgTbSizeMiB: shape.tcgTbSizeMiB,
    tcgCpuModel: shape.tcgCpuModel,
    writableSlotMiB: shape.writableSlotMiB,
    writableFsMiB: shape.writableFsMiB,
    layerSlots: shape.layerSlots,
    debugShell: shape.debugShell,
    maxMemoryMiB: shape.maxMemoryMiB,
    maxVcpus: shape.maxVcpus,
  };
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 24);
}
