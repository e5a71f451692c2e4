// Which sysctls a container may set: only those of a kernel namespace it has
// of its own (runc's rule). Inside the VM the network namespace is the pod's
// (the guest's), so net.* is allowed as for a pod; anything global to the
// guest kernel (vm.*, kernel.* outside IPC/UTS) would reach every container
// of the pod and is refused, naming the key.
import { invalidArgument } from '../../common/errors.js';

const IPC_KEYS = new Set([
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

export interface SysctlNamespaces {
  /** The container has an IPC namespace of its own (new or joined by path). */
  ipc: boolean;
  /** The container has a UTS namespace of its own. */
  uts: boolean;
}

/** The /proc/sys path (relative) for a key, after checking it is allowed. */
export function checkSysctl(key: string, ns: SysctlNamespaces): string {
  if (!/^[A-Za-z0-9_.\-/]+$/.test(key) || key.includes('..')) throw invalidArgument(`linux.sysctl: bad key ${key}`);
  const dotted = key.replace(/\//g, '.');
  if (IPC_KEYS.has(dotted) || dotted.startsWith('fs.mqueue.')) {
    if (!ns.ipc) throw invalidArgument(`linux.sysctl: ${key} needs an ipc namespace of the container's own`);
  } else if (dotted === 'kernel.hostname' || dotted === 'kernel.domainname') {
    if (!ns.uts) throw invalidArgument(`linux.sysctl: ${key} needs a uts namespace of the container's own`);
  } else if (!dotted.startsWith('net.')) {
    throw invalidArgument(`linux.sysctl: ${key} is not in a separate kernel namespace (it would change the guest kernel for the whole pod)`);
  }
  return dotted.replace(/\./g, '/');
}
