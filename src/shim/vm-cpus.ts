// Growing a pod's VM for a container's larger CPU quota (Task Update): a
// quota of Q per period P wants ceil(Q/P) vCPUs. The guest applies any quota
// (as runc does on any host), but without the vCPUs it cannot be used: the
// shim hot-plugs vCPUs up to hypervisor.max_vcpus and has the agent online
// them. Past the maximum the VM grows to it and the quota still applies.

/** vCPUs an OCI LinuxResources JSON's cpu quota/period asks for, if it sets a positive quota. */
export function cpusWanted(resourcesJson: string): number | undefined {
  try {
    const r = JSON.parse(resourcesJson) as { cpu?: { quota?: unknown; period?: unknown } } | null;
    const quota = r?.cpu?.quota;
    const period = r?.cpu?.period;
    if (typeof quota !== 'number' || !Number.isSafeInteger(quota) || quota <= 0) return undefined;
    const p = typeof period === 'number' && Number.isSafeInteger(period) && period > 0 ? period : 100_000;
    return Math.ceil(quota / p);
  } catch {
    return undefined;
  }
}
