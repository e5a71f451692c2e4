// What a Create asks for, read and checked before any work: the bundle's
// spec as the guest will see it, the image layers, and (for a pod's first
// container) how its VM should be booted.
import type { TernConfig } from '../common/config';
import { failedPrecondition } from '../common/errors';
import type { BootOptions } from './boot-env';
import { readBundleSpec } from './bundle-spec';
import { prepareGuestSpec, vmSize, type GuestSpec } from './guest-spec';
import { lowerDirsFromMounts, type RootfsMount } from './layers';
import { rootfsLimitMiB } from './rootfs-limit';

export interface CreatePlan {
  guest: GuestSpec;
  /** The image's layer directories, lowest first. */
  lowerDirs: string[];
  /** How the VM boots, if this container is the one that boots it. */
  boot: BootOptions;
  /** The bundle's process asks for a terminal. */
  terminal: boolean;
  /**
   * Size of the container's writable layer (its own ext4 disk), MiB; none
   * when its root filesystem is read-only (it cannot write there: no disk,
   * no hot-plug; CRI's pause container is one).
   */
  rootfsMiB?: number;
}

export function planCreate(req: { id: string; bundle: string; rootfs: RootfsMount[] }, cfg: TernConfig): CreatePlan {
  const spec = readBundleSpec(req.bundle);
  if (spec.podWantsHostIpc) {
    // System V IPC and POSIX message queues are the guest kernel's: the host's cannot reach into the VM.
    throw failedPrecondition(
      `pod ${spec.groupId(req.id)}: hostIPC is not supported by tern: a pod in its own VM cannot share the node's IPC namespace (its shared memory, semaphores and message queues stay on the host); run this pod with runc`,
    );
  }
  const lowerDirs = lowerDirsFromMounts(req.rootfs, spec.rootPath);
  // Checked even for a read-only root: a bad annotation is an error either way.
  const limitMiB = rootfsLimitMiB(spec.annotations, cfg.runtime);
  const rootfsMiB = spec.readonlyRoot ? undefined : limitMiB;
  // Host paths the guest cannot see are copied in or rejected, before any work.
  const guest = prepareGuestSpec(spec.raw, req.id);
  // The pod's first container decides the VM: its network namespace and size.
  const boot: BootOptions = spec.joinsSandbox()
    ? {}
    : { netnsPath: spec.networkNamespacePath, hostNetwork: spec.wantsHostNetwork, ...vmSize(spec.annotations, cfg.hypervisor) };
  return { guest, lowerDirs, boot, terminal: spec.terminal, rootfsMiB };
}
