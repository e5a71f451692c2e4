// Update of a running container's resources: the guest applies them; a
// larger CPU quota than the VM has vCPUs, a cpuset of more CPUs than that, or
// a memory limit above what the guest has, first grows the VM (hot-plug,
// vm-resize.ts). A cpuset (cpu.cpus) is checked before any work, pins the
// VM's vCPU threads (vcpu-pinning.ts) and reaches the guest as guest vCPUs
// (cpuset.ts); if the guest then refuses the update, the pinning goes back.
import { failedPrecondition, invalidArgument, TernError } from '../common/errors';
import { guestCpuList, updateCpuset, withGuestCpus } from './cpuset';
import type { RunningSandbox } from './running-sandbox';
import { onlineHostCpus } from './thread-affinity';
import { cpusWanted } from './vm-cpus';
import { memoryLimitOf } from './vm-memory';

/** How long an update waits for the guest to online memory just hot-plugged. */
const MEMORY_ONLINE_TIMEOUT_MS = 10_000;
const isExhausted = (err: unknown): boolean => err instanceof TernError && err.code === 'ResourceExhausted';

/** Applies the OCI LinuxResources JSON to container `id`, growing the VM first where it must. */
export async function updateResources(pod: RunningSandbox, id: string, json: string, hostCpus: () => number[] = onlineHostCpus): Promise<void> {
  let resources: { cpu?: { cpus?: unknown } | null } | null;
  try {
    resources = JSON.parse(json) as typeof resources;
  } catch {
    throw invalidArgument('update: resources are not valid JSON');
  }
  const cpuset = updateCpuset(resources, hostCpus);
  const wantCpus = Math.max(cpusWanted(json) ?? 0, cpuset.kind === 'pin' ? cpuset.hostCpus.length : 0);
  if (wantCpus > 0) await pod.resizer.growCpusTo(wantCpus);
  if (cpuset.kind === 'unchanged') return applyInGuest(pod, id, json);

  const before = pod.pinning.of(id);
  await pod.pinning.set(id, cpuset.kind === 'pin' ? cpuset.hostCpus : undefined);
  // The guest gets its own vCPUs for the host set; "" (unpinned) stays "".
  const guestCpus = cpuset.kind === 'pin' ? guestCpuList(cpuset.hostCpus.length, pod.resizer.vcpuCount) : '';
  try {
    await applyInGuest(pod, id, JSON.stringify(withGuestCpus(resources ?? {}, guestCpus)));
  } catch (err) {
    await pod.pinning.set(id, before).catch(() => undefined);
    throw err;
  }
}

async function applyInGuest(pod: RunningSandbox, id: string, json: string): Promise<void> {
  try {
    await pod.agent.updateContainer(id, json);
  } catch (err) {
    // More memory than the guest has: grow the VM, then again until the guest has onlined the new memory.
    if (!isExhausted(err)) throw err;
    const limit = memoryLimitOf(json);
    if (limit === undefined) throw failedPrecondition((err as Error).message);
    await pod.resizer.growMemoryFor(limit);
    const deadline = Date.now() + MEMORY_ONLINE_TIMEOUT_MS;
    for (;;) {
      try {
        await pod.agent.updateContainer(id, json);
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
