// How each ledger step is undone from what is on disk alone: what `delete`
// after a dead shim does, and what a live sandbox falls back to for a step it
// holds no live object for. Each is idempotent and quiet about what is gone.
import { procAlive, procStartTime } from '../common/proc';
import type { HypervisorDriver } from '../hypervisor/hypervisor';
import type { Logger } from '../common/logging';
import { HostCgroup } from './host-cgroup';
import { collectLayers, TEARDOWN_GC_LOCK_WAIT_MS } from './layer-gc';
import { releasePins } from './layer-pins';
import { teardownPodNetwork } from './network';
import { reapPooledOwnedBy } from './pool/owned';
import { reapStaleScratch, removeScratchDir } from './scratch-disks';
import type { Undoers } from './teardown-ledger';
import { removeSandboxDir } from './volumes';
import { templateStore } from './templates/factory';

/** Within how long a pod's host cgroup must empty before it is removed. */
export const HOST_CGROUP_REMOVE_MS = 5000;

export function diskUndoers(sandboxDir: string, driver: HypervisorDriver, log: Logger): Undoers {
  return {
    'layer-pins': async (s) => {
      await releasePins(s.pinsDir);
      // The cache's collection is not the sandbox's teardown: a failure is only logged.
      const r = await collectLayers({ layersDir: s.layersDir, maxBytes: s.maxMiB * 1024 * 1024, lockWaitMs: TEARDOWN_GC_LOCK_WAIT_MS, log }).catch(
        (err: Error) => log.warn({ err: err.message, layersDir: s.layersDir }, 'layer cache not collected'),
      );
      if (r && !r.ran) log.info({ layersDir: s.layersDir }, 'layer cache not collected: another collection is running');
    },
    'scratch-disks': async (s) => {
      await removeScratchDir(s.dir);
      // Others' leftovers (their state lost at a reboot): only logged, this sandbox's teardown is done.
      await reapStaleScratch(s.cacheDir).catch((err: Error) => log.warn({ err: err.message }, 'stale writable layers not reaped'));
    },
    'template-builds': async (s) => {
      // The shim process still runs (it serves other pods): a build in it is its own, not a dead shim's.
      if (s.shimStartTime !== undefined && procAlive(s.shimPid) && procStartTime(s.shimPid) === s.shimStartTime) return;
      await templateStore(s.templateDir, driver, log).reapBuildsOf(s.shimPid);
    },
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
