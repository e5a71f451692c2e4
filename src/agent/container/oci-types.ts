// The subset of the OCI runtime spec (config.json) the agent reads. Fields not
// listed here are either ignored on purpose or rejected by plan-from-spec.ts by name.

export interface OciUser {
  uid?: number;
  gid?: number;
  umask?: number;
  additionalGids?: number[];
  username?: string;
}

export interface OciRlimit {
  type: string;
  hard: number;
  soft: number;
}

export interface OciCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

export interface OciProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user?: OciUser;
  args?: string[];
  commandLine?: string;
  env?: string[];
  cwd?: string;
  capabilities?: OciCapabilities;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
  apparmorProfile?: string;
  selinuxLabel?: string;
}

export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciNamespace {
  type: string;
  path?: string;
}

export interface OciDevice {
  type?: string;
  path: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface OciResources {
  memory?: { limit?: number; reservation?: number; swap?: number; kernel?: number; kernelTCP?: number; swappiness?: number; disableOOMKiller?: boolean };
  cpu?: { shares?: number; quota?: number; period?: number; realtimeRuntime?: number; realtimePeriod?: number; cpus?: string; mems?: string };
  pids?: { limit?: number };
  devices?: unknown[];
  blockIO?: unknown;
  hugepageLimits?: unknown[];
  network?: unknown;
  unified?: Record<string, string>;
}

export interface OciLinux {
  namespaces?: OciNamespace[];
  resources?: OciResources;
  cgroupsPath?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  devices?: OciDevice[];
  sysctl?: Record<string, string>;
  rootfsPropagation?: string;
  seccomp?: unknown;
  uidMappings?: unknown[];
  gidMappings?: unknown[];
  mountLabel?: string;
  intelRdt?: unknown;
  personality?: unknown;
}

export interface OciSpec {
  ociVersion?: string;
  process?: OciProcess;
  root?: { path?: string; readonly?: boolean };
  hostname?: string;
  domainname?: string;
  mounts?: OciMount[];
  hooks?: Record<string, unknown[] | undefined>;
  annotations?: Record<string, string>;
  linux?: OciLinux;
}
