// The in-guest container engine. Flow: manager.ts receives the agent API calls;
// spec.ts turns an OCI spec into a launch plan (plan.ts) and cgroup limits;
// cgroups.ts and rootfs.ts prepare the cgroup and the overlay rootfs;
// process.ts runs guest-image/launcher/tern-launch with the plan and serves
// the process's state, exit and stdio (stream-buffer.ts).
export { ContainerManager } from './manager.js';
export type { ContainerManagerOptions, CreateContainerRequest } from './manager.js';
export type { OciSpec, OciProcess } from './oci-types.js';
export type { LayerRef, ResolveLayer, ResolvedLayer } from './rootfs.js';
export { translateSpec, translateProcess } from './spec.js';
export { renderPlan } from './plan.js';
export type { LaunchPlan } from './plan.js';
