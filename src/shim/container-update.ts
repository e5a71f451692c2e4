// Update of a running container's resources: the guest applies them; a
// larger CPU quota than the VM has vCPUs, or a memory limit above what the
// guest has, first grows the VM (hot-plug, vm-resize.ts).
import { failedPrecondition, TernError } from '../common/errors';
import type { RunningSandbox } from './running-sandbox';
import { cpusWanted } from './vm-cpus';
import { memoryLimitOf } from './vm-memory';

/** How long an update waits for the guest to online memory just hot-plugged. */
const MEMORY_ONLINE_TIMEOUT_MS = 10_000;
const isExhausted = (err: unknown): boolean => err instanceof TernError && err.code === 'ResourceExhausted';

/** Applies the OCI LinuxResources JSON to container `id`, growing the VM first where it must. */
export async function updateResources(pod: RunningSandbox, id: string, json: string): Promise<void> {
  const wantCpus = cpusWanted(json);
  if (wantCpus !== undefined) await pod.resizer.growCpusTo(wantCpus);
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
