// The sandbox's shared directory (virtio-9p, tag tern-shared): the host binds
// a container's host volumes into it, and the guest mounts it at
// SHARED_MOUNT. A cold-booted VM has it mounted by init before the agent
// starts. A clone of a template has the device but not the mount (a mounted
// export blocks saving the template): the agent mounts it when the first
// container that names a path under it is created, so a clone whose
// containers have no host volume never does the 9p handshake or holds its
// buffers (with the other changes of its release: 4.6 MiB less idle PSS per
// pod under TCG; the identity step was ~45 ms shorter, though much of that
// came back in the create, which now translates the shared kernel code).
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export const SHARED_TAG = 'tern-shared';
export const SHARED_MOUNT = '/run/tern-agent/shared';
/** The 9p mount's options (init.sh mounts a cold boot's with the same). No cache: the host's files may change under it. */
export const SHARED_MOUNT_OPTIONS = 'trans=virtio,version=9p2000.L,msize=262144,cache=none';

/** Does a container spec bind anything from the shared directory? */
export function usesSharedDir(spec: { mounts?: ReadonlyArray<{ source?: string }> }): boolean {
  return (spec.mounts ?? []).some((m) => m.source !== undefined && m.source.startsWith(`${SHARED_MOUNT}/`));
}

/** Is `dir` a mount point (a different device than its parent)? False when it does not exist. */
export function isMountPoint(dir: string): boolean {
  try {
    return statSync(dir).dev !== statSync(dirname(dir)).dev;
  } catch {
    return false;
  }
}

/**
 * Mounts the shared directory once, on demand. Concurrent callers share one
 * mount; a failed mount is not remembered, so the next container tries again.
 */
export class SharedDirMount {
  private mounted: boolean;
  private pending: Promise<void> | undefined;

  /** `mount` does the mount (the privileged helper); `mountedNow` says whether it is already there. */
  constructor(
    private readonly mount: () => Promise<void>,
    mountedNow: boolean,
  ) {
    this.mounted = mountedNow;
  }

  get isMounted(): boolean {
    return this.mounted;
  }

  /** Something else mounted it (AdoptIdentity with mount_shared). */
  markMounted(): void {
    this.mounted = true;
  }

  /** Resolves once the share is mounted: true if this call (or one it joined) mounted it now. */
  async ensure(): Promise<boolean> {
    if (this.mounted) return false;
    if (!this.pending) {
      this.pending = this.mount().then(
        () => {
          this.mounted = true;
          this.pending = undefined;
        },
        (err: unknown) => {
          this.pending = undefined;
          throw err;
        },
      );
    }
    await this.pending;
    return true;
  }
}

/** The mount at `dir` through the agent's privileged helper (tern-vmfork's mount request). */
export function helperSharedDirMount(request: (fields: string[]) => Promise<void>, dir = SHARED_MOUNT): () => Promise<void> {
  return async () => {
    mkdirSync(dir, { recursive: true });
    await request(['mount', SHARED_TAG, dir, '9p', 'rw', SHARED_MOUNT_OPTIONS]);
  };
}
