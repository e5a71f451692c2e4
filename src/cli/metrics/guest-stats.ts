// A container's guest cgroup statistics as `tern metrics` reports them, from
// the Any that the shim's Task.Stats answers: io.containerd.cgroups.v2.Metrics
// on a unified host, v1.Metrics otherwise (src/common/cgroup-metrics.ts),
// read as `ctr task metrics` reads them (memory usage, CPU usage in user and
// system time, pids, OOM kills). Working set is CRI's: usage - inactive_file.
import { CGROUPS_V1_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, workingSetBytes, type CgroupV1Metrics, type CgroupV2Metrics } from '../../common/cgroup-metrics';
import { invalidArgument } from '../../common/errors';
import { anyUnpack, type AnyMessage } from '../../common/proto';

export interface GuestStats {
  memoryUsageBytes: number;
  memoryWorkingSetBytes: number;
  /** Anonymous memory (v1: rss). */
  memoryRssBytes: number;
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  pids: number;
  oomKills: number;
}

const USEC = 1e-6;
const NSEC = 1e-9;

export function fromV2(m: CgroupV2Metrics): GuestStats {
  const mem = m.memory;
  return {
    memoryUsageBytes: mem?.usage ?? 0,
    memoryWorkingSetBytes: mem ? workingSetBytes(mem) : 0,
    memoryRssBytes: mem?.anon ?? 0,
    cpuUserSeconds: (m.cpu?.user_usec ?? 0) * USEC,
    cpuSystemSeconds: (m.cpu?.system_usec ?? 0) * USEC,
    pids: m.pids?.current ?? 0,
    oomKills: m.memory_events?.oom_kill ?? 0,
  };
}

/** Decoded v1 Metrics: any nested message may be absent (null). */
type V1Decoded = { [K in keyof CgroupV1Metrics]?: Partial<CgroupV1Metrics[K]> | null };

export function fromV1(m: V1Decoded): GuestStats {
  const usage = m.memory?.usage?.usage ?? 0;
  const inactiveFile = m.memory?.total_inactive_file ?? 0;
  return {
    memoryUsageBytes: usage,
    memoryWorkingSetBytes: workingSetBytes({ usage, inactive_file: inactiveFile }),
    memoryRssBytes: m.memory?.rss ?? 0,
    cpuUserSeconds: (m.cpu?.usage?.user ?? 0) * NSEC,
    cpuSystemSeconds: (m.cpu?.usage?.kernel ?? 0) * NSEC,
    pids: m.pids?.current ?? 0,
    oomKills: m.memory_oom_control?.oom_kill ?? 0,
  };
}

/** The stats in a Task.Stats answer; InvalidArgument for a type other than the cgroups Metrics. */
export function guestStatsFromAny(any: Partial<AnyMessage>): GuestStats {
  const unpacked = anyUnpack(any);
  if (unpacked?.typeName === CGROUPS_V2_METRICS_TYPE) return fromV2(unpacked.message as CgroupV2Metrics);
  if (unpacked?.typeName === CGROUPS_V1_METRICS_TYPE) return fromV1(unpacked.message as V1Decoded);
  throw invalidArgument(`stats of type ${JSON.stringify(any.type_url ?? '')}: not cgroups Metrics`);
}
