// Removing a pooled VM's directory together with its VM: used by the pool
// (its own VMs, and those a dead predecessor left), by a sandbox that took a
// VM, and by `delete` after that sandbox's shim died.
import type { Logger } from '../../common/logging';
import type { HypervisorDriver } from '../../hypervisor/hypervisor';
import { removeSandboxDir } from '../volumes';
import { pooledDirsOwnedBy, pooledPaths } from './protocol';

/** Kills the VM recorded in a pooled directory (checked to be that VM) and removes the directory, its tmpfs included. */
export async function removePooledVmDir(dir: string, driver: HypervisorDriver, log: Logger): Promise<void> {
  await driver.cleanupFromDisk(pooledPaths(dir).vmDir).catch((err: Error) => log.error({ err: err.message, dir }, 'stopping a pooled VM failed'));
  await removeSandboxDir(dir, log);
}

/** Removes every pooled VM a sandbox directory owns (taken from the pool), including one whose take it never saw answered. */
export async function reapPooledOwnedBy(poolDir: string, sandboxDir: string, driver: HypervisorDriver, log: Logger): Promise<void> {
  for (const dir of pooledDirsOwnedBy(poolDir, sandboxDir)) {
    await removePooledVmDir(dir, driver, log).catch((err: Error) => log.error({ err: err.message, dir }, 'removing a pooled VM failed'));
  }
}
