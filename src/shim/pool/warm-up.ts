// A pooled VM's warm-up: one throwaway container through the real start path,
// run by the pool after the VM adopted its identity and before it is offered.
// Under TCG a fresh QEMU process has an empty translation cache, so a pooled
// VM that has only adopted its identity would still translate the whole
// container path (disk hot-plug, the agent's create, the launcher) on the
// start that takes it: about 0.4 s of QEMU CPU more than this path leaves. Run
// here, that work happens while the VM waits in the pool.
// The container's only layer is the guest image itself, hot-plugged a second
// time as a read-only disk (as an image layer is) and unplugged afterwards;
// its spec and process are the template's warm-up ones (a helper that prints
// its usage), so nothing of it is left behind.
import { WARMUP_ID, warmupSpec } from '../../agent/warmup';
import type { Vm } from '../../hypervisor/hypervisor';
import type { AgentClient } from '../agent-client';

const WARMUP_DISK = { id: 'warmup', serial: 'tern-warmup' };

/** Runs the warm-up; resolves with its process's exit status. Whatever it made is removed, also on failure. */
export async function warmUpPooledVm(vm: Vm, agent: AgentClient, guestImage: string): Promise<number> {
  await vm.attachBlock({ id: WARMUP_DISK.id, path: guestImage, readOnly: true, serial: WARMUP_DISK.serial });
  let outcome: { status: number } | { err: unknown };
  try {
    await agent.createContainer(WARMUP_ID, JSON.stringify(warmupSpec()), [{ serial: WARMUP_DISK.serial, fs_type: 'erofs' }], {
      terminal: false,
      stdin: false,
      stdout: true,
      stderr: true,
    });
    await agent.startContainer(WARMUP_ID);
    outcome = { status: (await agent.waitProcess(WARMUP_ID, '')).exit_status };
  } catch (err) {
    outcome = { err };
  }
  // Both cleanup steps are tried; a cleanup failure after a failed run does not hide why the run failed.
  const cleanup: unknown[] = [];
  await agent.removeContainer(WARMUP_ID).catch((e: unknown) => cleanup.push(e));
  await vm.detachBlock(WARMUP_DISK.id).catch((e: unknown) => cleanup.push(e));
  if ('err' in outcome) throw outcome.err;
  if (cleanup.length > 0) throw cleanup[0];
  return outcome.status;
}
