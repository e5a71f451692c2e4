// Reads a container's cgroup v2 statistics into io.containerd.cgroups.v2.Metrics
// shape: cpu.stat, memory.current/max/stat/events, memory.swap.*, pids.*.
// Parsers are pure; readCgroupStats only reads files (a missing file means the
// controller is not enabled, and its section is left out).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  emptyV2MemoryStat,
  V2_MEMORY_STAT_KEYS,
  type CgroupV2CpuStat,
  type CgroupV2MemoryEvents,
  type CgroupV2Metrics,
  type PidsStat,
} from '../../common/cgroup-metrics.js';

/** "key value" lines (cpu.stat, memory.stat, memory.events) -> key -> number; non-numeric values are skipped. */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2 || !/^\d+$/.test(parts[1]!)) continue;
    out.set(parts[0]!, Number(parts[1]));
  }
  return out;
}

/** A single-value file (memory.current, memory.max, pids.max): a number, 'max', or undefined if unreadable. */
export function parseSingleValue(text: string | undefined): number | 'max' | undefined {
  const t = text?.trim();
  if (t === 'max') return 'max';
  if (t === undefined || !/^\d+$/.test(t)) return undefined;
  return Number(t);
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

export interface StatsOptions {
  /** What memory.max "max" is reported as: the guest's total memory is the real ceiling. */
  guestMemoryBytes: number;
}

const CPU_KEYS = ['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec'] as const;
const EVENT_KEYS = ['low', 'high', 'max', 'oom', 'oom_kill'] as const;

export function cpuStatFrom(text: string): CgroupV2CpuStat {
  const kv = parseFlatKeyed(text);
  const cpu = {} as CgroupV2CpuStat;
  for (const k of CPU_KEYS) cpu[k] = kv.get(k) ?? 0;
  return cpu;
}

export function memoryEventsFrom(text: string): CgroupV2MemoryEvents {
  const kv = parseFlatKeyed(text);
  const ev = {} as CgroupV2MemoryEvents;
  for (const k of EVENT_KEYS) ev[k] = kv.get(k) ?? 0;
  return ev;
}

/** Read the statistics of the cgroup at `dir`. */
export async function readCgroupStats(dir: string, opts: StatsOptions): Promise<CgroupV2Metrics> {
  const read = (f: string) => readText(path.join(dir, f));
  const [cpuStat, memCurrent, memMax, memStat, memEvents, swapCurrent, swapMax, pidsCurrent, pidsMax] = await Promise.all(
    ['cpu.stat', 'memory.current', 'memory.max', 'memory.stat', 'memory.events', 'memory.swap.current', 'memory.swap.max', 'pids.current', 'pids.max'].map(
      read,
    ),
  );
  const metrics: CgroupV2Metrics = { hugetlb: [] };
  if (cpuStat !== undefined) metrics.cpu = cpuStatFrom(cpuStat);
  if (memCurrent !== undefined || memStat !== undefined) {
    const mem = emptyV2MemoryStat();
    const kv = parseFlatKeyed(memStat ?? '');
    for (const k of V2_MEMORY_STAT_KEYS) mem[k] = kv.get(k) ?? 0;
    const usage = parseSingleValue(memCurrent);
    mem.usage = typeof usage === 'number' ? usage : 0;
    const limit = parseSingleValue(memMax);
    mem.usage_limit = typeof limit === 'number' ? Math.min(limit, opts.guestMemoryBytes) : opts.guestMemoryBytes;
    const sw = parseSingleValue(swapCurrent);
    mem.swap_usage = typeof sw === 'number' ? sw : 0;
    const swl = parseSingleValue(swapMax);
    mem.swap_limit = typeof swl === 'number' ? swl : 0;
    metrics.memory = mem;
  }
  if (memEvents !== undefined) metrics.memory_events = memoryEventsFrom(memEvents);
  if (pidsCurrent !== undefined) {
    const cur = parseSingleValue(pidsCurrent);
    const max = parseSingleValue(pidsMax);
    const pids: PidsStat = { current: typeof cur === 'number' ? cur : 0, limit: typeof max === 'number' ? max : 0 };
    metrics.pids = pids;
  }
  return metrics;
}
