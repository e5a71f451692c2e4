// What the QEMU VM object needs of its QEMU process, whether tern launched it
// (launch.ts QemuProcess) or took it over from a warm pool (adopted-process.ts):
// its own file, so that vm.ts and launch.ts do not import each other.
import type { VmExit } from '../hypervisor.js';

/** What the VM needs of its QEMU process, whether our child or adopted from another process. */
export interface QemuProcessHandle {
  readonly pid: number;
  readonly exited: Promise<VmExit>;
  readonly hasExited: boolean;
  outputTail(): string;
  /** Resolves true if the process exited within `ms`. */
  waitExit(ms: number): Promise<boolean>;
  /** SIGKILL and wait (bounded) for the exit. */
  kill(): Promise<void>;
  /** Another process owns it now: it no longer keeps this one alive. */
  release(): void;
}
