// Task Update in the guest: OCI LinuxResources (as containerd sends it) ->
// the cgroup v2 files to rewrite (memory.max, cpu.max, cpu.weight, pids.max).
// Pure: fields left out (or 0) stay as they are; -1 means unlimited ("max").
// A memory limit above the guest's total memory is refused (ResourceExhausted)
// so the caller can grow the VM first.
import { invalidArgument, TernError } from '../../common/errors.js';
import { cpuWeightFromShares } from './cgroups.js';
import type { OciResources } from './oci-types.js';

export interface UpdateContext {
  /** MemTotal of the guest in bytes. */
  guestMemoryBytes: number;
  /** Current content of cpu.max ("<quota|max> <period>"), to keep the half not being changed. */
  currentCpuMax?: string;
}

export interface UpdatePlan {
  /** file -> value, in write order */
  files: Record<string, string>;
  warnings: string[];
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

function checkInt(name: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isInt(v)) throw invalidArgument(`${name}: ${JSON.stringify(v)} is not an integer`);
  return v;
}

/** Parse the resources JSON of an update (an object, not null). */
export function parseResourcesJson(json: string): OciResources {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw invalidArgument('resources_json is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalidArgument('resources_json must be a JSON object (OCI LinuxResources)');
  return value as OciResources;
}

/** The cgroup v2 files to write for an update. Throws before anything is written. */
export function updateFiles(r: OciResources, ctx: UpdateContext): UpdatePlan {
  const files: Record<string, string> = {};
  const warnings: string[] = [];

  if (r.memory) {
    const limit = checkInt('memory.limit', r.memory.limit);
    if (limit !== undefined && limit > 0) {
      if (limit > ctx.guestMemoryBytes) {
        throw new TernError('ResourceExhausted', `memory limit ${limit} bytes exceeds the guest's total memory of ${ctx.guestMemoryBytes} bytes`);
      }
      files['memory.max'] = String(limit);
    } else if (limit !== undefined && limit < 0) {
      files['memory.max'] = 'max';
    }
    if (r.memory.reservation) warnings.push('memory.reservation: ignored');
    const swap = checkInt('memory.swap', r.memory.swap);
    if (swap !== undefined && swap !== 0 && swap !== limit && swap !== -1) warnings.push('memory.swap: ignored (no swap in the guest)');
    if (r.memory.kernel || r.memory.kernelTCP) warnings.push('memory.kernel: ignored');
    if (r.memory.disableOOMKiller) throw invalidArgument('memory.disableOOMKiller: not supported');
  }

  if (r.cpu) {
    const shares = checkInt('cpu.shares', r.cpu.shares);
    const quota = checkInt('cpu.quota', r.cpu.quota);
    const period = checkInt('cpu.period', r.cpu.period);
    if (shares !== undefined && shares < 0) throw invalidArgument(`cpu.shares: ${shares} is negative`);
    if (period !== undefined && period < 0) throw invalidArgument(`cpu.period: ${period} is negative`);
    if (shares) files['cpu.weight'] = String(cpuWeightFromShares(shares));
    if ((quota !== undefined && quota !== 0) || period) {
      const [curQuota, curPeriod] = (ctx.currentCpuMax ?? '').trim().split(/\s+/);
      const q = quota === undefined || quota === 0 ? curQuota || 'max' : quota > 0 ? String(quota) : 'max';
      const p = period ? String(period) : curPeriod || '100000';
      files['cpu.max'] = `${q} ${p}`;
    }
    if (r.cpu.realtimeRuntime || r.cpu.realtimePeriod) throw invalidArgument('cpu.realtimeRuntime/realtimePeriod: not supported');
    // Guest vCPUs (the shim translated the host list); "" unpins: the parent's CPUs again.
    if (typeof r.cpu.cpus === 'string') files['cpuset.cpus'] = r.cpu.cpus === '' ? '\n' : r.cpu.cpus;
    if (r.cpu.mems) warnings.push('cpu.mems: ignored (the guest has one memory node)');
  }

  if (r.pids) {
    const limit = checkInt('pids.limit', r.pids.limit);
    if (limit !== undefined && limit > 0) files['pids.max'] = String(limit);
    else if (limit !== undefined && limit < 0) files['pids.max'] = 'max';
  }

  if (r.blockIO) warnings.push('blockIO: ignored');
  if (r.hugepageLimits?.length) warnings.push('hugepageLimits: ignored');
  if (r.network) warnings.push('network: ignored');
  if (r.unified && Object.keys(r.unified).length > 0) throw invalidArgument('unified: not supported');
  return { files, warnings };
}
