// Growing a pod's VM for a container's larger memory limit (Task Update).
// The guest refuses a limit above its MemTotal (ResourceExhausted); the shim
// then hot-plugs enough RAM for the limit plus the guest kernel's own share,
// in whole memory blocks, within hypervisor.max_memory_mib, and retries the
// update until the guest has onlined the new memory.
import { failedPrecondition } from '../common/errors';

/** Linux x86-64 hot-plugs memory in 128 MiB blocks: DIMMs are sized in those. */
export const GROW_STEP_MIB = 128;
/** What the guest kernel keeps of its RAM (MemTotal is below the VM's size by about this much). */
export const GUEST_OVERHEAD_MIB = 128;
const MiB = 1024 * 1024;

/** memory.limit (bytes) of an OCI LinuxResources JSON, if it sets a positive one. */
export function memoryLimitOf(resourcesJson: string): number | undefined {
  try {
    const r = JSON.parse(resourcesJson) as { memory?: { limit?: unknown } } | null;
    const limit = r?.memory?.limit;
    return typeof limit === 'number' && Number.isSafeInteger(limit) && limit > 0 ? limit : undefined;
  } catch {
    return undefined;
  }
}

/**
 * MiB to hot-plug so that a container may have limitBytes in a VM of
 * currentMiB that may grow to maxMiB; 0 when the VM is big enough already.
 * Throws FailedPrecondition, naming the sizes, when it cannot grow that far.
 */
export function memoryToAdd(limitBytes: number, currentMiB: number, maxMiB: number): number {
  const needMiB = Math.ceil(limitBytes / MiB) + GUEST_OVERHEAD_MIB;
  const wantMiB = Math.ceil(needMiB / GROW_STEP_MIB) * GROW_STEP_MIB;
  if (wantMiB <= currentMiB) return 0;
  if (maxMiB <= currentMiB) {
    throw failedPrecondition(
      `memory limit ${limitBytes} bytes needs a VM of ${wantMiB} MiB; this VM has ${currentMiB} MiB and cannot grow (hypervisor.max_memory_mib = ${maxMiB})`,
    );
  }
  if (wantMiB > maxMiB) {
    throw failedPrecondition(`memory limit ${limitBytes} bytes needs a VM of ${wantMiB} MiB; this VM may grow to ${maxMiB} MiB (hypervisor.max_memory_mib)`);
  }
  return wantMiB - currentMiB;
}
