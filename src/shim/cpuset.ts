// A container's pinned CPUs (OCI linux.resources.cpu.cpus; CRI's
// cpuset_cpus, which the kubelet's static CPU manager sets) name host CPUs.
// The host side pins the VM's vCPU threads to them (vcpu-pinning.ts); the
// guest cannot use host CPU numbers, so the spec it receives names guest
// vCPUs instead: a set of k host CPUs becomes guest CPUs 0..k-1, at most the
// VM's vCPUs. Only the count carries over: every vCPU thread may run on
// every CPU of the pod's pinned set, so no vCPU stands for one host CPU.
import { invalidArgument } from '../common/errors';
import { formatCpuList, parseCpuList } from './cpu-list';

/** What one resources document says about pinning. */
export type CpusetRequest = { kind: 'unchanged' } | { kind: 'unpin' } | { kind: 'pin'; hostCpus: number[] };

/**
 * Reads and checks `cpus` (the value under `key`, as the document had it):
 * absent -> unchanged, "" -> unpin, a list -> pin to those host CPUs, each of
 * which must be one of `hostCpus` (the host's online CPUs, read only when a
 * list is given). Throws InvalidArgument naming the key and the value.
 */
export function readCpuset(cpus: unknown, key: string, hostCpus: () => number[]): CpusetRequest {
  if (cpus === undefined || cpus === null) return { kind: 'unchanged' };
  if (typeof cpus !== 'string') throw invalidArgument(`${key} ${JSON.stringify(cpus)}: not a string (want a CPU list such as "0-3,5")`);
  if (cpus.trim() === '') return { kind: 'unpin' };
  let wanted: number[];
  try {
    wanted = parseCpuList(cpus);
  } catch (err) {
    throw invalidArgument(`${key} ${JSON.stringify(cpus)}: ${(err as Error).message}`);
  }
  const host = hostCpus();
  const online = new Set(host);
  const missing = wanted.filter((c) => !online.has(c));
  if (missing.length > 0) {
    const which = missing.length === 1 ? `host CPU ${missing[0]} does not exist` : `host CPUs ${formatCpuList(missing)} do not exist`;
    throw invalidArgument(`${key} ${JSON.stringify(cpus)}: ${which} (this host's online CPUs are ${formatCpuList(host)})`);
  }
  return { kind: 'pin', hostCpus: wanted };
}

/** The guest CPU list for a container pinned to `hostCount` host CPUs in a VM of `vcpus` vCPUs: "0-(n-1)", n = min(hostCount, vcpus). */
export function guestCpuList(hostCount: number, vcpus: number): string {
  const n = Math.max(1, Math.min(hostCount, vcpus));
  return formatCpuList(Array.from({ length: n }, (_, i) => i));
}

interface WithCpu {
  cpu?: { cpus?: unknown } | null;
}

/** The pinning an OCI spec asks for at create (linux.resources.cpu.cpus); an empty or absent list pins nothing. */
export function specCpuset(spec: { linux?: { resources?: WithCpu | null } | null }, hostCpus: () => number[]): number[] | undefined {
  const req = readCpuset(spec.linux?.resources?.cpu?.cpus, 'linux.resources.cpu.cpus', hostCpus);
  return req.kind === 'pin' ? req.hostCpus : undefined;
}

/** The pinning a Task Update's LinuxResources JSON asks for (cpu.cpus). */
export function updateCpuset(resources: WithCpu | null, hostCpus: () => number[]): CpusetRequest {
  return readCpuset(resources?.cpu?.cpus, 'cpu.cpus', hostCpus);
}

/** `resources` (a LinuxResources object) with cpu.cpus set to `guestCpus`; a new object, the input is left alone. */
export function withGuestCpus<T extends WithCpu>(resources: T, guestCpus: string): T {
  return { ...resources, cpu: { ...(resources.cpu ?? {}), cpus: guestCpus } };
}
