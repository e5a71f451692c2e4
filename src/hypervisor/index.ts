// Hypervisor drivers, picked by name. Flow: the shim calls createDriver(name),
// then driver.start(spec) checks the inputs, detects KVM or TCG (accel.ts),
// builds QEMU's argv from typed fragments (qemu/cmdline.ts), spawns QEMU and
// connects to its QMP socket (qemu/launch.ts, qemu/qmp.ts); the returned Vm
// (qemu/vm.ts) opens the agent channel, hot-plugs disks, pauses and stops.
// After a crash, driver.cleanupFromDisk(runDir) kills what vm.json describes.
import { invalidArgument } from '../common/errors.js';
import type { HypervisorDriver } from './hypervisor.js';
import type { LogSink } from '../common/log-sink.js';
import { QemuDriver } from './qemu/driver.js';

export type { HypervisorDriver, Vm, VmSpec, BlockDevice, VmExit, Accel, TemplateRole, HostNicSpec } from './hypervisor.js';
export type { LogSink } from '../common/log-sink.js';
export { detectAccel } from './accel.js';
export { HOST_NIC_NETWORK, TemplateRestoreError } from './hypervisor.js';
export { QemuDriver, resolveBinary } from './qemu/driver.js';

export interface DriverOptions {
  /** The tern-tapfd helper (a NIC whose tap is in another network namespace than the VM). */
  tapFdHelper?: string;
  /** The copy-on-write guard preloaded into a template clone's QEMU (helpers/tern-cow-guard.c). */
  cowGuard?: string;
}

const DRIVERS: Record<string, (logger: LogSink | undefined, opts: DriverOptions) => HypervisorDriver> = {
  qemu: (logger, opts) => new QemuDriver({ logger, tapFdHelper: opts.tapFdHelper, cowGuard: opts.cowGuard }),
};

export function createDriver(name: string, logger?: LogSink, opts: DriverOptions = {}): HypervisorDriver {
  const make = Object.hasOwn(DRIVERS, name) ? DRIVERS[name] : undefined;
  if (!make) throw invalidArgument(`unknown hypervisor ${JSON.stringify(name)} (known: ${Object.keys(DRIVERS).join(', ')})`);
  return make(logger, opts);
}
