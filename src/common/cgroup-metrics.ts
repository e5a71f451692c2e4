// Container statistics in the shapes of containerd's io.containerd.cgroups.v2.Metrics
// (what the guest agent reads from cgroup v2) and io.containerd.cgroups.v1.Metrics
// (what CRI expects from a shim on a cgroup v1 host), with field names as in the
// .proto files under proto/containerd/cgroups/, plus a pure v2 -> v1 mapping.
// Counters are plain numbers (exact up to 2^53, far beyond real byte/usec counts).

export const CGROUPS_V1_METRICS_TYPE = 'io.containerd.cgroups.v1.Metrics';
export const CGROUPS_V2_METRICS_TYPE = 'io.containerd.cgroups.v2.Metrics';

export interface PidsStat {
  current: number;
  /** 0 = no limit */
  limit: number;
}

export interface CgroupV2CpuStat {
  usage_usec: number;
  user_usec: number;
  system_usec: number;
  nr_periods: number;
  nr_throttled: number;
  throttled_usec: number;
}

/** memory.stat keys as io.containerd.cgroups.v2.MemoryStat has them, plus the usage/limit files. */
export const V2_MEMORY_STAT_KEYS = [
  'anon',
  'file',
  'kernel_stack',
  'slab',
  'sock',
  'shmem',
  'file_mapped',
  'file_dirty',
  'file_writeback',
  'anon_thp',
  'inactive_anon',
  'active_anon',
  'inactive_file',
  'active_file',
  'unevictable',
  'slab_reclaimable',
  'slab_unreclaimable',
  'pgfault',
  'pgmajfault',
  'workingset_refault',
  'workingset_activate',
  'workingset_nodereclaim',
  'pgrefill',
  'pgscan',
  'pgsteal',
  'pgactivate',
  'pgdeactivate',
  'pglazyfree',
  'pglazyfreed',
  'thp_fault_alloc',
  'thp_collapse_alloc',
] as const;
export type V2MemoryStatKey = (typeof V2_MEMORY_STAT_KEYS)[number];

export type CgroupV2MemoryStat = Record<V2MemoryStatKey, number> & {
  /** memory.current */
  usage: number;
  /** memory.max in bytes */
  usage_limit: number;
  /** memory.swap.current / memory.swap.max (0 where the guest has no swap) */
  swap_usage: number;
  swap_limit: number;
};

export interface CgroupV2MemoryEvents {
  low: number;
  high: number;
  max: number;
  oom: number;
  oom_kill: number;
}

export interface CgroupV2HugeTlbStat {
  current: number;
  max: number;
  pagesize: string;
}

/** io.containerd.cgroups.v2.Metrics (rdma and io are left out: the agent does not fill them). */
export interface CgroupV2Metrics {
  pids?: PidsStat | null;
  cpu?: CgroupV2CpuStat | null;
  memory?: CgroupV2MemoryStat | null;
  hugetlb?: CgroupV2HugeTlbStat[];
  memory_events?: CgroupV2MemoryEvents | null;
}

export interface CgroupV1MemoryEntry {
  limit: number;
  usage: number;
  max: number;
  failcnt: number;
}

export interface CgroupV1MemoryStat {
  cache: number;
  rss: number;
  rss_huge: number;
  mapped_file: number;
  dirty: number;
  writeback: number;
  pg_pg_in: number;
  pg_pg_out: number;
  pg_fault: number;
  pg_maj_fault: number;
  inactive_anon: number;
  active_anon: number;
  inactive_file: number;
  active_file: number;
  unevictable: number;
  hierarchical_memory_limit: number;
  hierarchical_swap_limit: number;
  total_cache: number;
  total_rss: number;
  total_rss_huge: number;
  total_mapped_file: number;
  total_dirty: number;
  total_writeback: number;
  total_pg_pg_in: number;
  total_pg_pg_out: number;
  total_pg_fault: number;
  total_pg_maj_fault: number;
  total_inactive_anon: number;
  total_active_anon: number;
  total_inactive_file: number;
  total_active_file: number;
  total_unevictable: number;
  usage: CgroupV1MemoryEntry;
  swap: CgroupV1MemoryEntry;
  kernel: CgroupV1MemoryEntry;
  kernel_tcp: CgroupV1MemoryEntry;
}

/** io.containerd.cgroups.v1.Metrics, the parts a v2 source can fill. */
export interface CgroupV1Metrics {
  hugetlb: { usage: number; max: number; failcnt: number; pagesize: string }[];
  pids: PidsStat;
  cpu: {
    /** nanoseconds */
    usage: { total: number; kernel: number; user: number; per_cpu: number[] };
    throttling: { periods: number; throttled_periods: number; throttled_time: number };
  };
  memory: CgroupV1MemoryStat;
  memory_oom_control: { oom_kill_disable: number; under_oom: number; oom_kill: number };
}

const NS_PER_USEC = 1000;

/** A v2 MemoryStat with every field 0. */
export function emptyV2MemoryStat(): CgroupV2MemoryStat {
  const m = { usage: 0, usage_limit: 0, swap_usage: 0, swap_limit: 0 } as CgroupV2MemoryStat;
  for (const k of V2_MEMORY_STAT_KEYS) m[k] = 0;
  return m;
}

/**
 * Map cgroup v2 statistics to the cgroup v1 Metrics shape. memory.stat in v2
 * is hierarchical, so the v1 `total_*` fields equal their local counterparts;
 * cache = file, rss = anon, kernel = kernel_stack + slab, kernel_tcp = sock,
 * usage.failcnt = memory.events max; v1 has no per-cpu data here (empty).
 */
export function v2ToV1Metrics(m: CgroupV2Metrics): CgroupV1Metrics {
  const cpu = m.cpu ?? { usage_usec: 0, user_usec: 0, system_usec: 0, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 };
  const mem = { ...emptyV2MemoryStat(), ...(m.memory ?? {}) };
  const ev = m.memory_events ?? { low: 0, high: 0, max: 0, oom: 0, oom_kill: 0 };
  const pids = m.pids ?? { current: 0, limit: 0 };
  const entry = (usage: number, limit: number, failcnt = 0): CgroupV1MemoryEntry => ({ limit, usage, max: 0, failcnt });
  return {
    hugetlb: (m.hugetlb ?? []).map((h) => ({ usage: h.current, max: h.max, failcnt: 0, pagesize: h.pagesize })),
    pids: { current: pids.current, limit: pids.limit },
    cpu: {
      usage: {
        total: cpu.usage_usec * NS_PER_USEC,
        kernel: cpu.system_usec * NS_PER_USEC,
        user: cpu.user_usec * NS_PER_USEC,
        per_cpu: [],
      },
      throttling: { periods: cpu.nr_periods, throttled_periods: cpu.nr_throttled, throttled_time: cpu.throttled_usec * NS_PER_USEC },
    },
    memory: {
      cache: mem.file,
      rss: mem.anon,
      rss_huge: mem.anon_thp,
      mapped_file: mem.file_mapped,
      dirty: mem.file_dirty,
      writeback: mem.file_writeback,
      pg_pg_in: 0,
      pg_pg_out: 0,
      pg_fault: mem.pgfault,
      pg_maj_fault: mem.pgmajfault,
      inactive_anon: mem.inactive_anon,
      active_anon: mem.active_anon,
      inactive_file: mem.inactive_file,
      active_file: mem.active_file,
      unevictable: mem.unevictable,
      hierarchical_memory_limit: mem.usage_limit,
      hierarchical_swap_limit: mem.swap_limit,
      total_cache: mem.file,
      total_rss: mem.anon,
      total_rss_huge: mem.anon_thp,
      total_mapped_file: mem.file_mapped,
      total_dirty: mem.file_dirty,
      total_writeback: mem.file_writeback,
      total_pg_pg_in: 0,
      total_pg_pg_out: 0,
      total_pg_fault: mem.pgfault,
      total_pg_maj_fault: mem.pgmajfault,
      total_inactive_anon: mem.inactive_anon,
      total_active_anon: mem.active_anon,
      total_inactive_file: mem.inactive_file,
      total_active_file: mem.active_file,
      total_unevictable: mem.unevictable,
      usage: entry(mem.usage, mem.usage_limit, ev.max),
      swap: entry(mem.swap_usage, mem.swap_limit),
      kernel: entry(mem.kernel_stack + mem.slab, 0),
      kernel_tcp: entry(mem.sock, 0),
    },
    memory_oom_control: { oom_kill_disable: 0, under_oom: 0, oom_kill: ev.oom_kill },
  };
}

/** What CRI derives from memory stats: working set = usage - inactive_file (never negative). */
export function workingSetBytes(m: Pick<CgroupV2MemoryStat, 'usage' | 'inactive_file'>): number {
  return m.inactive_file < m.usage ? m.usage - m.inactive_file : 0;
}
