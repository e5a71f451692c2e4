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
// its usage), so nothing of it is left behind. Its writable layer is a small
// ext4 of its own, put in the VM's writable slot as a container's is (so that
// path and ext4's mount are warmed too), made in the pooled VM's directory
// and removed after it; the slot is empty again when the VM is offered.
import { WARMUP_ID, warmupSpec } from '../../agent/warmup';
import type { Vm } from '../../hypervisor/hypervisor';
import type { RunAs } from '../../common/run-as';
import type { AgentClient } from '../agent-client';
import { makeScratchImage } from '../scratch-disks';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

const WARMUP_DISK = { id: 'warmup', serial: 'tern-warmup' };
const WARMUP_ROOTFS = { file: 'warmup-rootfs.img', mib: 16 };

/**
 * Runs the warm-up; resolves with its process's exit status. Whatever it
 * made is removed, also on failure. `slotMiB` is the VM's writable slot's
 * size (the warm-up disk must match it).
 */
export async function warmUpPooledVm(vm: Vm, agent: AgentClient, guestImage: string, dir: string, slotMiB: number, runAs?: RunAs): Promise<number> {
  const rootfsFile = join(dir, WARMUP_ROOTFS.file);
  await makeScratchImage(rootfsFile, slotMiB, WARMUP_ROOTFS.mib, runAs);
  let attached = false;
  let rwSerial: string | undefined;
  let outcome: { status: number } | { err: unknown };
  try {
    await vm.attachBlock({ id: WARMUP_DISK.id, path: guestImage, readOnly: true, serial: WARMUP_DISK.serial });
    attached = true;
    rwSerial = await vm.insertDisk(rootfsFile, false);
    if (rwSerial === undefined) throw new Error(`pooled VM ${vm.id}: no free writable slot for the warm-up container`);
    await agent.createContainer(
      WARMUP_ID,
      JSON.stringify(warmupSpec()),
      [{ serial: WARMUP_DISK.serial, fs_type: 'erofs' }],
      { terminal: false, stdin: false, stdout: true, stderr: true },
      [],
      { serial: rwSerial, fs_type: 'ext4' },
    );
    await agent.startContainer(WARMUP_ID);
    outcome = { status: (await agent.waitProcess(WARMUP_ID, '')).exit_status };
  } catch (err) {
    outcome = { err };
  }
  // Every cleanup step is tried; a cleanup failure after a failed run does not hide why the run failed.
  const cleanup: unknown[] = [];
  if (attached) await agent.removeContainer(WARMUP_ID).catch((e: unknown) => cleanup.push(e));
  if (rwSerial !== undefined) await vm.ejectDisk(rwSerial).catch((e: unknown) => cleanup.push(e));
  if (attached) await vm.detachBlock(WARMUP_DISK.id).catch((e: unknown) => cleanup.push(e));
  await rm(rootfsFile, { force: true }).catch((e: unknown) => cleanup.push(e));
  if ('err' in outcome) throw outcome.err;
  if (cleanup.length > 0) throw cleanup[0];
  return outcome.status;
}
