// How each ledger step is undone from what is on disk alone: what `delete`
// after a dead shim does, and what a live sandbox falls back to for a step it
// holds no live object for. Each is idempotent and quiet about what is gone.
import type { HypervisorDriver } from '../hypervisor/hypervisor';
import type { Logger } from '../common/logging';
import { HostCgroup } from './host-cgroup';
import { teardownPodNetwork } from './network';
import { reapPooledOwnedBy } from './pool/owned';
import type { Undoers } from './teardown-ledger';
import { removeSandboxDir } from './volumes';
import { templateStore } from './templates/factory';

/** Within how long a pod's host cgroup must empty before it is removed. */
export const HOST_CGROUP_REMOVE_MS = 5000;

export function diskUndoers(sandboxDir: string, driver: HypervisorDriver, log: Logger): Undoers {
  return {
    'template-builds': (s) => templateStore(s.templateDir, driver, log).reapBuildsOf(s.shimPid),
    'pooled-vms': (s) => reapPooledOwnedBy(s.poolDir, sandboxDir, driver, log),
    'host-cgroup': async (s) => {
      const left = await new HostCgroup(s.name).removeWithin(HOST_CGROUP_REMOVE_MS);
      if (left.length > 0) log.error({ left }, 'pod host cgroup not removed');
    },
    'shared-dir': (s) => removeSandboxDir(s.path, log),
    'pod-network': (s) => teardownPodNetwork(s.network),
    vm: (s) => driver.cleanupFromDisk(s.runDir),
  };
}
