// Where a shim keeps things. The socket address follows containerd's rule
// (sha256 of "<containerd address>/<namespace>/<group id>" under
// /run/containerd/s); tern's own state for a sandbox lives under
// <stateDir>/sb/<short hash>/ (short keeps unix socket paths under 108 bytes),
// with sandbox.json saying which namespace/id it belongs to and shim.log the
// shim's own log.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const SOCKET_ROOT = '/run/containerd/s';
/** Shim sockets are root's alone; the first shim on a machine makes the directory. */
export const SOCKET_DIR_MODE = 0o700;

export function socketPath(containerdAddress: string, namespace: string, groupId: string): string {
  const h = createHash('sha256').update(`${containerdAddress}/${namespace}/${groupId}`).digest('hex');
  return join(SOCKET_ROOT, h);
}

/** A shim process's control socket in SOCKET_ROOT is this, then 16 hex digits (helpers/tern-shim-launch.c, shim-daemon.ts). */
export const CONTROL_SOCKET_PREFIX = 'tern-';

export function socketAddress(path: string): string {
  return `unix://${path}`;
}

export function sandboxDir(stateDir: string, namespace: string, sandboxId: string): string {
  const h = createHash('sha256').update(`${namespace}/${sandboxId}`).digest('hex').slice(0, 20);
  return join(stateDir, 'sb', h);
}

/** The shim's own log of its sandbox (rotated once to shim.log.1), in the sandbox directory. */
export function shimLogPath(sandboxDirectory: string): string {
  return join(sandboxDirectory, 'shim.log');
}

/** The helper that hands QEMU a tap from another network namespace (helpers/tern-tapfd.c), beside the shim's script. */
export const TAPFD_HELPER = 'tern-tapfd';

/** The library preloaded into a template clone's QEMU (helpers/tern-cow-guard.c), beside the shim's script. */
export const COW_GUARD_LIB = 'tern-cow-guard.so';

/** A helper built and installed beside the running script (dist/ or <prefix>/lib/tern). */
export function besideScript(name: string, script = process.argv[1] ?? ''): string {
  return join(dirname(realpathSync(script)), name);
}

/**
 * A sandbox's (or pooled VM's) directory lets others only pass through, to
 * its 9p share, which QEMU reaches as hypervisor.run_as; its VM directory
 * (QMP, agent and debug sockets, console log) is root's alone.
 */
export const OWNER_DIR_MODE = 0o711;
export const VM_DIR_MODE = 0o700;

/** Creates (or corrects) the owning directory and its VM directory with those modes. */
export function makeVmDirs(ownerDir: string, vmDir: string): void {
  for (const [dir, mode] of [
    [ownerDir, OWNER_DIR_MODE],
    [vmDir, VM_DIR_MODE],
  ] as const) {
    mkdirSync(dir, { recursive: true, mode });
    // mkdir's mode is masked by the umask, and a directory may exist already.
    chmodSync(dir, mode);
  }
}
