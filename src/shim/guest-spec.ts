// Host paths in a container's spec cannot be seen by the guest. Before the
// spec goes to the agent, its bind mounts are rewritten:
// - small host files (CRI's /etc/hosts, /etc/resolv.conf, /etc/hostname,
//   termination-log) are copied into the guest with the request and bound
//   from there;
// - the pod's /dev/shm (a host tmpfs) becomes a tmpfs inside the guest;
// - host directories (and files over the copy limit) become host volumes: the
//   shim binds each one into the sandbox's shared directory (virtio-9p, see
//   volumes.ts) and the spec binds the guest's view of it instead;
// - anything else (sockets, devices outside /dev) is rejected with
//   InvalidArgument naming the mount, never silently dropped.
// A container's pinned host CPUs (linux.resources.cpu.cpus) are checked here
// and kept aside; the spec the guest gets names guest vCPUs instead, once the
// VM's size is known (specWithGuestCpus, cpuset.ts).
// Sizing a pod's VM from the CRI sandbox annotations also lives here.
import { readFileSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { failedPrecondition, invalidArgument } from '../common/errors';
import { specCpuset, withGuestCpus } from './cpuset';
import { onlineHostCpus } from './thread-affinity';

export const MAX_COPIED_FILE = 1 << 20;
const GUEST_FILES = '/run/tern-agent/files';
/** Where the guest mounts the sandbox's shared directory (guest-image/init/init.sh). */
export const GUEST_SHARED_DIR = '/run/tern-agent/shared';

export interface GuestFile {
  path: string;
  data: Buffer;
  mode: number;
}

/** A host path a container binds, served to the guest through the shared directory. */
export interface HostVolume {
  /** Host path to bind (a directory, or a file over MAX_COPIED_FILE). */
  source: string;
  /** Path under the shared directory, on the host and in the guest: "<containerId>/<n>". */
  name: string;
  kind: 'dir' | 'file';
  /** The spec asks for a read-only mount ("ro", the last of ro/rw wins). */
  readOnly: boolean;
  /** rbind: the host source's submounts come too. */
  recursive: boolean;
}

export interface GuestSpec {
  specJson: string;
  files: GuestFile[];
  volumes: HostVolume[];
  /** The host CPUs the container is pinned to (checked against the host's), if its spec pins it. */
  hostCpus?: number[];
}

interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

function isBind(m: Mount): boolean {
  return m.type === 'bind' || m.type === 'rbind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

/** A host path the guest has too (devices and kernel filesystems are the guest's own). */
function guestHasItself(source: string): boolean {
  return source.startsWith('/dev/') || source === '/dev' || source.startsWith('/proc') || source.startsWith('/sys');
}

function isReadOnly(options: readonly string[]): boolean {
  let ro = false;
  for (const o of options) {
    if (o === 'ro') ro = true;
    else if (o === 'rw') ro = false;
  }
  return ro;
}

/** Container ids become a path component on the host and in the guest. */
function checkContainerId(id: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) {
    throw invalidArgument(`container id ${JSON.stringify(id)} cannot name a volume directory (want [A-Za-z0-9][A-Za-z0-9_.-]*)`);
  }
}

function kindOf(st: { isFile(): boolean; isDirectory(): boolean; isSocket(): boolean; isFIFO(): boolean }): string {
  if (st.isSocket()) return 'a socket';
  if (st.isFIFO()) return 'a FIFO';
  return 'a device or special file';
}

export function prepareGuestSpec(specJson: string, containerId: string, hostCpus: () => number[] = onlineHostCpus): GuestSpec {
  const spec = JSON.parse(specJson) as { mounts?: Mount[]; linux?: { resources?: { cpu?: { cpus?: unknown } } } };
  const pinned = specCpuset(spec, hostCpus);
  const files: GuestFile[] = [];
  const volumes: HostVolume[] = [];
  const mounts: Mount[] = [];
  for (const m of spec.mounts ?? []) {
    if (!isBind(m) || !m.source || guestHasItself(m.source)) {
      mounts.push(m);
      continue;
    }
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(m.source);
    } catch (err) {
      throw invalidArgument(`mounts: source ${m.source} for ${m.destination}: ${(err as Error).message}`);
    }
    if (m.destination === '/dev/shm' && st.isDirectory()) {
      // The pod's shared memory: a tmpfs of the same default size in the guest.
      mounts.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
      continue;
    }
    if (st.isFile() && st.size <= MAX_COPIED_FILE) {
      const path = `${GUEST_FILES}/${containerId}/${files.length}`;
      files.push({ path, data: readFileSync(m.source), mode: st.mode & 0o7777 });
      mounts.push({ ...m, source: path });
      continue;
    }
    if (st.isFile() || st.isDirectory()) {
      checkContainerId(containerId);
      const options = m.options ?? [];
      const name = `${containerId}/${volumes.length}`;
      volumes.push({
        source: m.source,
        name,
        kind: st.isDirectory() ? 'dir' : 'file',
        readOnly: isReadOnly(options),
        recursive: m.type === 'rbind' || options.includes('rbind'),
      });
      mounts.push({ ...m, source: `${GUEST_SHARED_DIR}/${name}` });
      continue;
    }
    throw invalidArgument(`mounts: host path ${m.source} for ${m.destination} is ${kindOf(st)}; only directories and regular files can be shared into the VM`);
  }
  if (spec.mounts) spec.mounts = mounts;
  return { specJson: JSON.stringify(spec), files, volumes, ...(pinned ? { hostCpus: pinned } : {}) };
}

/** `specJson` with linux.resources.cpu.cpus set to `guestCpus` (the guest's view of the container's pinning). */
export function specWithGuestCpus(specJson: string, guestCpus: string): string {
  const spec = JSON.parse(specJson) as { linux?: { resources?: { cpu?: { cpus?: unknown } } } };
  const linux = spec.linux ?? {};
  return JSON.stringify({ ...spec, linux: { ...linux, resources: withGuestCpus(linux.resources ?? {}, guestCpus) } });
}

export const ANN_SANDBOX_CPU_QUOTA = 'io.kubernetes.cri.sandbox-cpu-quota';
export const ANN_SANDBOX_CPU_PERIOD = 'io.kubernetes.cri.sandbox-cpu-period';
export const ANN_SANDBOX_MEMORY = 'io.kubernetes.cri.sandbox-memory';

/**
 * VM size for a pod: the configured base plus what the pod's limits ask
 * for (Kata's model: base VM + the sum of the containers' limits), never more
 * vCPUs than the host has.
 */
export function vmSize(
  annotations: Record<string, string>,
  base: { vcpus: number; memoryMiB: number },
  hostCpus = cpus().length,
  hostMemoryBytes = totalmem(),
): { vcpus: number; memoryMiB: number } {
  const num = (k: string) => {
    const v = annotations[k];
    if (v === undefined || v === '') return 0;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw invalidArgument(`annotation ${k}=${JSON.stringify(v)} is not a non-negative number`);
    return n;
  };
  const quota = num(ANN_SANDBOX_CPU_QUOTA);
  const period = num(ANN_SANDBOX_CPU_PERIOD);
  const mem = num(ANN_SANDBOX_MEMORY);
  const wantCpus = quota > 0 && period > 0 ? Math.ceil(quota / period) : 0;
  const memoryMiB = base.memoryMiB + Math.ceil(mem / (1024 * 1024));
  const hostMiB = Math.floor(hostMemoryBytes / (1024 * 1024));
  if (memoryMiB > hostMiB) {
    throw failedPrecondition(
      `pod VM needs ${memoryMiB} MiB of memory (${ANN_SANDBOX_MEMORY} plus the ${base.memoryMiB} MiB base); the host has ${hostMiB} MiB`,
    );
  }
  return { vcpus: Math.max(1, Math.min(hostCpus, Math.max(base.vcpus, wantCpus))), memoryMiB };
}
