// A container's statistics as the Task API's Stats returns them: the guest
// reads cgroup v2; containerd (CRI) expects the metrics type of the host's
// own cgroup mode, so a cgroup v1 host gets them mapped to v1.
import { existsSync } from 'node:fs';
import { CGROUPS_V1_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, type CgroupV2Metrics, v2ToV1Metrics } from '../common/cgroup-metrics';
import { anyPack, type AnyMessage } from '../common/proto';

const HOST_CGROUP_V2 = existsSync('/sys/fs/cgroup/cgroup.controllers');

export function metricsForHost(v2: CgroupV2Metrics): AnyMessage {
  if (HOST_CGROUP_V2) return anyPack(CGROUPS_V2_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, v2);
  return anyPack(CGROUPS_V1_METRICS_TYPE, CGROUPS_V1_METRICS_TYPE, v2ToV1Metrics(v2));
}
