// The in-guest container engine. Flow: manager.ts receives the agent API calls;
// plan-from-spec.ts turns an OCI spec into a launch plan (plan.ts) and cgroup limits;
// cgroups.ts and rootfs.ts prepare the cgroup and the overlay rootfs;
// guest-process.ts runs guest-image/launcher/tern-launch with the plan and serves
// the process's state, exit and stdio (stream-buffer.ts). cgroup-freezer.ts,
// cgroup-update.ts and cgroup-stats.ts serve pause/resume, update and stats;
// oom-watcher.ts turns memory.events oom_kill increases into OOM events.
export { ContainerManager } from './manager.js';
export type { ContainerManagerOptions, CreateContainerRequest } from './manager.js';
export type { OciSpec, OciProcess } from './oci-types.js';
export type { LayerRef, ResolveLayer, ResolvedLayer } from './rootfs.js';
export { translateSpec, translateProcess } from './plan-from-spec.js';
export { renderPlan } from './plan.js';
export type { LaunchPlan } from './plan.js';
export { setFrozen, isFrozen, hasFreezer, frozenFromEvents } from './cgroup-freezer.js';
export { readCgroupStats, parseFlatKeyed, parseSingleValue, cpuStatFrom, memoryEventsFrom } from './cgroup-stats.js';
export type { StatsOptions } from './cgroup-stats.js';
export { updateFiles, parseResourcesJson } from './cgroup-update.js';
export type { UpdateContext, UpdatePlan } from './cgroup-update.js';
export { OomWatcher, oomKillCount } from './oom-watcher.js';
export type { OomWatcherOptions } from './oom-watcher.js';
