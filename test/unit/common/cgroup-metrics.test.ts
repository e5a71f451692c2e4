// v2 -> v1 metrics mapping, and both Metrics messages on the wire with
// containerd/cgroups' field numbers (checked byte by byte).
import { describe, expect, it } from 'vitest';
import {
  CGROUPS_V1_METRICS_TYPE,
  CGROUPS_V2_METRICS_TYPE,
  emptyV2MemoryStat,
  v2ToV1Metrics,
  workingSetBytes,
  type CgroupV2Metrics,
} from '../../../src/common/cgroup-metrics';
import { anyPack, anyUnpack, decode, encode, protoRoot } from '../../../src/common/proto';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const v2: CgroupV2Metrics = {
  pids: { current: 3, limit: 100 },
  cpu: { usage_usec: 1500, user_usec: 1000, system_usec: 500, nr_periods: 10, nr_throttled: 2, throttled_usec: 70 },
  memory: {
    ...emptyV2MemoryStat(),
    anon: 4096,
    file: 8192,
    anon_thp: 2048,
    file_mapped: 100,
    file_dirty: 200,
    file_writeback: 300,
    inactive_anon: 11,
    active_anon: 12,
    inactive_file: 6000,
    active_file: 14,
    unevictable: 15,
    kernel_stack: 16384,
    slab: 32768,
    sock: 512,
    pgfault: 77,
    pgmajfault: 7,
    usage: 20000,
    usage_limit: 1 << 30,
    swap_usage: 0,
    swap_limit: 0,
  },
  memory_events: { low: 0, high: 1, max: 4, oom: 2, oom_kill: 1 },
  hugetlb: [{ current: 2097152, max: 4194304, pagesize: '2MB' }],
};

describe('v2ToV1Metrics', () => {
  it('maps cpu to nanoseconds, memory to the v1 names, pids and oom_kill', () => {
    const v1 = v2ToV1Metrics(v2);
    expect(v1.cpu).toEqual({
      usage: { total: 1_500_000, kernel: 500_000, user: 1_000_000, per_cpu: [] },
      throttling: { periods: 10, throttled_periods: 2, throttled_time: 70_000 },
    });
    expect(v1.pids).toEqual({ current: 3, limit: 100 });
    expect(v1.memory.usage).toEqual({ usage: 20000, limit: 1 << 30, max: 0, failcnt: 4 });
    expect(v1.memory).toMatchObject({
      cache: 8192,
      rss: 4096,
      rss_huge: 2048,
      mapped_file: 100,
      dirty: 200,
      writeback: 300,
      pg_fault: 77,
      pg_maj_fault: 7,
      inactive_file: 6000,
      total_inactive_file: 6000,
      total_rss: 4096,
      total_cache: 8192,
      total_pg_fault: 77,
      total_pg_maj_fault: 7,
      hierarchical_memory_limit: 1 << 30,
      active_file: 14,
      total_active_file: 14,
      inactive_anon: 11,
      active_anon: 12,
      unevictable: 15,
    });
    expect(v1.memory.kernel).toEqual({ usage: 16384 + 32768, limit: 0, max: 0, failcnt: 0 });
    expect(v1.memory.kernel_tcp.usage).toBe(512);
    expect(v1.memory_oom_control).toEqual({ oom_kill_disable: 0, under_oom: 0, oom_kill: 1 });
    expect(v1.hugetlb).toEqual([{ usage: 2097152, max: 4194304, failcnt: 0, pagesize: '2MB' }]);
    // what CRI computes from either shape agrees
    expect(workingSetBytes(v2.memory!)).toBe(14000);
    expect(v1.memory.usage.usage - v1.memory.total_inactive_file).toBe(14000);
  });

  it('fills zeros for sections a v2 source did not have (e.g. decoded null sub-messages)', () => {
    const v1 = v2ToV1Metrics({ pids: null, cpu: null, memory: null, memory_events: null });
    expect(v1.cpu.usage.total).toBe(0);
    expect(v1.memory.usage).toEqual({ usage: 0, limit: 0, max: 0, failcnt: 0 });
    expect(v1.pids).toEqual({ current: 0, limit: 0 });
    expect(v1.hugetlb).toEqual([]);
  });

  it('workingSetBytes never goes negative', () => {
    expect(workingSetBytes({ usage: 10, inactive_file: 20 })).toBe(0);
  });
});

describe('Metrics on the wire', () => {
  it('v2: pids=1, cpu=2, memory=4 (usage=32, usage_limit=33, inactive_file=13), memory_events=8', () => {
    expect(hex(encode(CGROUPS_V2_METRICS_TYPE, { pids: { current: 3, limit: 5 } }))).toBe('0a0408031005');
    expect(hex(encode(CGROUPS_V2_METRICS_TYPE, { cpu: { usage_usec: 1, throttled_usec: 2 } }))).toBe('120408013002');
    // field 32 varint: tag 0x100 -> 80 02; field 33: 88 02; field 13: 68
    expect(hex(encode(CGROUPS_V2_METRICS_TYPE, { memory: { usage: 5, usage_limit: 6, inactive_file: 7 } }))).toBe('22086807800205880206');
    expect(hex(encode(CGROUPS_V2_METRICS_TYPE, { memory_events: { oom_kill: 1 } }))).toBe('42022801');
    const round = decode<CgroupV2Metrics>(CGROUPS_V2_METRICS_TYPE, encode(CGROUPS_V2_METRICS_TYPE, v2));
    expect(round.cpu).toEqual(v2.cpu);
    expect(round.memory).toEqual(v2.memory);
    expect(round.hugetlb).toEqual(v2.hugetlb);
  });

  it('v1: pids=2, cpu=3{usage=1{total=1}}, memory=4{rss=2, total_inactive_file=30, usage=33}, memory_oom_control=9', () => {
    expect(hex(encode(CGROUPS_V1_METRICS_TYPE, { pids: { current: 1 } }))).toBe('12020801');
    expect(hex(encode(CGROUPS_V1_METRICS_TYPE, { cpu: { usage: { total: 9 } } }))).toBe('1a040a020809');
    // rss=2 -> 10 03; total_inactive_file=30 -> f0 01 04; usage=33 (bytes) -> 8a 02 02 10 05
    expect(hex(encode(CGROUPS_V1_METRICS_TYPE, { memory: { rss: 3, total_inactive_file: 4, usage: { usage: 5 } } }))).toBe('220a1003f001048a02021005');
    expect(hex(encode(CGROUPS_V1_METRICS_TYPE, { memory_oom_control: { oom_kill: 1 } }))).toBe('4a021801');
    const v1 = v2ToV1Metrics(v2);
    const any = anyPack(CGROUPS_V1_METRICS_TYPE, CGROUPS_V1_METRICS_TYPE, v1);
    const back = anyUnpack<typeof v1>(any);
    expect(back?.typeName).toBe('io.containerd.cgroups.v1.Metrics');
    expect(back?.message.memory.usage).toEqual(v1.memory.usage);
    expect(back?.message.cpu.usage.total).toBe(1_500_000);
  });

  it('the agent answers StatsContainer with the v2 Metrics as field 1', () => {
    const bytes = encode('tern.agent.v1.StatsContainerResponse', { metrics_v2: { pids: { current: 3, limit: 5 } } });
    expect(hex(bytes)).toBe('0a060a0408031005');
    const agent = protoRoot().lookupService('tern.agent.v1.Agent');
    const methods = Object.fromEntries(Object.values(agent.methods).map((m) => [m.name, `${m.requestType} -> ${m.responseType}`]));
    expect(methods).toMatchObject({
      PauseContainer: 'PauseContainerRequest -> Empty',
      ResumeContainer: 'ResumeContainerRequest -> Empty',
      UpdateContainer: 'UpdateContainerRequest -> Empty',
      StatsContainer: 'StatsContainerRequest -> StatsContainerResponse',
      GetOOMEvent: 'GetOOMEventRequest -> OOMEvent',
    });
    expect(hex(encode('tern.agent.v1.UpdateContainerRequest', { container_id: 'c', resources_json: '{}' }))).toBe('0a01631202' + '7b7d');
  });
});
