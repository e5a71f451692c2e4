// What every boot path of a sandbox works with: its identity and config, the
// hypervisor driver, the teardown ledger with how this live sandbox undoes
// each step, the VMs launched and not yet undone, the pod's host cgroup, the
// boot's clock and start record, and where pooled VMs and templates come from.
import type { TernConfig } from '../common/config';
import type { Logger } from '../common/logging';
import type { HypervisorDriver, Vm } from '../hypervisor/hypervisor';
import type { BootSources } from './boot-sources';
import type { Template } from './templates/store';
import type { HostCgroup } from './host-cgroup';
import type { StartRecorder } from './metrics-recorder';
import type { BootClock } from './running-sandbox';
import type { SandboxRecord } from './sandbox-record';
import type { TeardownLedger, Undoers } from './teardown-ledger';

/** The pod's cgroup on the host, as a boot uses it (host-cgroup.ts). */
export type PodCgroup = Pick<HostCgroup, 'name' | 'create' | 'add' | 'removeWithin'>;

/** What the first container of a pod decides about its VM. */
export interface BootOptions {
  /** The pod's network namespace (CRI); absent = no NIC, loopback only. */
  netnsPath?: string;
  /** The pod asked for the node's network (no namespace of its own): a host NIC and forwarded ports (host-network.ts). */
  hostNetwork?: boolean;
  vcpus?: number;
  memoryMiB?: number;
}

export interface BootEnv {
  readonly id: string;
  readonly dir: string;
  readonly cfg: TernConfig;
  readonly driver: HypervisorDriver;
  readonly log: Logger;
  readonly ledger: TeardownLedger;
  /** How this live sandbox undoes each ledger step (a boot path that fails undoes its own steps with them). */
  readonly undoers: () => Undoers;
  /** VMs launched or adopted and not yet undone, by run directory (a live one is stopped, not killed). */
  readonly liveVms: Map<string, Vm>;
  readonly cgroup: PodCgroup;
  readonly clock: BootClock;
  readonly start: StartRecorder;
  readonly sources: BootSources;
  /** Told which template the boot clones (undefined: none, or a pooled VM), as soon as it knows. */
  readonly templateChosen?: (template: Template | undefined) => void;
  /** Rewrites sandbox.json with these fields changed. */
  readonly updateRecord: (patch: Partial<SandboxRecord>) => Promise<void>;
}
