// Task.Stats answers as `tern metrics` reads them: cgroup v2 Metrics (unified
// hosts) and v1 Metrics (the shim's mapping of the guest's v2 stats), both
// through the real protobuf codecs.
import { describe, expect, it } from 'vitest';
import { fromV2, guestStatsFromAny } from '../../../../src/cli/metrics/guest-stats';
import {
  CGROUPS_V1_METRICS_TYPE,
  CGROUPS_V2_METRICS_TYPE,
  emptyV2MemoryStat,
  v2ToV1Metrics,
  type CgroupV2Metrics,
} from '../../../../src/common/cgroup-metrics';
import { anyPack } from '../../../../src/common/proto';

const v2: CgroupV2Metrics = {
  pids: { current: 4, limit: 0 },
  cpu: { usage_usec: 2_500_000, user_usec: 2_000_000, system_usec: 500_000, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 },
  memory: { ...emptyV2MemoryStat(), usage: 10_000_000, inactive_file: 3_000_000, anon: 6_000_000, file: 4_000_000, usage_limit: 512 * 1024 * 1024 },
  memory_events: { low: 0, high: 0, max: 0, oom: 1, oom_kill: 1 },
};

const expected = {
  memoryUsageBytes: 10_000_000,
  memoryWorkingSetBytes: 7_000_000,
  memoryRssBytes: 6_000_000,
  cpuUserSeconds: 2,
  cpuSystemSeconds: 0.5,
  pids: 4,
  oomKills: 1,
};

describe('guestStatsFromAny', () => {
  it('reads cgroup v2 Metrics', () => {
    expect(guestStatsFromAny(anyPack(CGROUPS_V2_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, v2))).toEqual(expected);
  });

  it('reads the v1 Metrics a shim answers on a v1 host the same way', () => {
    const s = guestStatsFromAny(anyPack(CGROUPS_V1_METRICS_TYPE, CGROUPS_V1_METRICS_TYPE, v2ToV1Metrics(v2)));
    expect(s).toEqual({ ...expected, cpuUserSeconds: expect.closeTo(2, 9), cpuSystemSeconds: expect.closeTo(0.5, 9) });
  });

  it('gives zeros for absent parts and refuses other types', () => {
    expect(fromV2({})).toEqual({
      memoryUsageBytes: 0,
      memoryWorkingSetBytes: 0,
      memoryRssBytes: 0,
      cpuUserSeconds: 0,
      cpuSystemSeconds: 0,
      pids: 0,
      oomKills: 0,
    });
    expect(guestStatsFromAny(anyPack(CGROUPS_V2_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, {})).memoryUsageBytes).toBe(0);
    expect(() => guestStatsFromAny({ type_url: 'google.protobuf.Empty', value: new Uint8Array(0) })).toThrow(/not cgroups Metrics/);
    expect(() => guestStatsFromAny({})).toThrow(/not cgroups Metrics/);
  });
});
