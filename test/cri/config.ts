// Builders of PodSandboxConfig and ContainerConfig with kubelet-like defaults:
// the io.kubernetes.* labels, a /var/log/pods/<ns>_<name>_<uid> log directory,
// cluster DNS search paths, a per-pod cgroup parent under /kubepods, pod-shared
// network and IPC namespaces with a per-container PID namespace, best-effort
// resources. Everything can be overridden.
import { randomUUID } from 'node:crypto';
import type {
  ContainerConfig,
  DNSConfig,
  KeyValue,
  LinuxContainerResources,
  LinuxContainerSecurityContext,
  LinuxSandboxSecurityContext,
  Mount,
  NamespaceOption,
  PodSandboxConfig,
  PortMapping,
  StringMap,
} from './types';

/** Kubelet's default: network and IPC shared by the pod, one PID namespace per container. */
export const DEFAULT_NAMESPACE_OPTIONS: NamespaceOption = { network: 'POD', pid: 'CONTAINER', ipc: 'POD' };

/** What kubelet gives a best-effort pod: the minimum CPU shares and the default CFS period. */
export const BEST_EFFORT_RESOURCES: LinuxContainerResources = { cpu_period: 100_000, cpu_shares: 2 };

export interface PodConfigInput {
  name: string;
  /** Kubernetes namespace; default "default". */
  namespace?: string;
  /** Default: a random UUID. */
  uid?: string;
  attempt?: number;
  /** Default: the pod name. */
  hostname?: string;
  /** Default: /var/log/pods/<namespace>_<name>_<uid>. */
  logDirectory?: string;
  /** Default: no servers, the cluster.local search paths, ndots:5. */
  dns?: DNSConfig;
  portMappings?: PortMapping[];
  /** Merged over the io.kubernetes.pod.* labels. */
  labels?: StringMap;
  annotations?: StringMap;
  /** Default: /kubepods/besteffort/pod<uid> (kubelet's cgroupfs layout). */
  cgroupParent?: string;
  namespaceOptions?: NamespaceOption;
  securityContext?: Omit<LinuxSandboxSecurityContext, 'namespace_options'>;
  sysctls?: StringMap;
  /** Default: BEST_EFFORT_RESOURCES. */
  resources?: LinuxContainerResources;
  overhead?: LinuxContainerResources;
}

export function podConfig(input: PodConfigInput): PodSandboxConfig {
  const namespace = input.namespace ?? 'default';
  const uid = input.uid ?? randomUUID();
  const name = input.name;
  return {
    metadata: { name, uid, namespace, attempt: input.attempt ?? 0 },
    hostname: input.hostname ?? name,
    log_directory: input.logDirectory ?? `/var/log/pods/${namespace}_${name}_${uid}`,
    dns_config: input.dns ?? {
      servers: [],
      searches: [`${namespace}.svc.cluster.local`, 'svc.cluster.local', 'cluster.local'],
      options: ['ndots:5'],
    },
    port_mappings: input.portMappings ?? [],
    labels: {
      'io.kubernetes.pod.name': name,
      'io.kubernetes.pod.namespace': namespace,
      'io.kubernetes.pod.uid': uid,
      ...input.labels,
    },
    annotations: { 'kubernetes.io/config.source': 'api', ...input.annotations },
    linux: {
      cgroup_parent: input.cgroupParent ?? `/kubepods/besteffort/pod${uid}`,
      security_context: {
        ...input.securityContext,
        namespace_options: input.namespaceOptions ?? DEFAULT_NAMESPACE_OPTIONS,
      },
      sysctls: input.sysctls ?? {},
      resources: input.resources ?? BEST_EFFORT_RESOURCES,
      ...(input.overhead ? { overhead: input.overhead } : {}),
    },
  };
}

export interface ContainerConfigInput {
  name: string;
  /** Image reference or id, as the runtime knows it. */
  image: string;
  /** Overrides the image's entrypoint. */
  command?: string[];
  /** Overrides the image's cmd. */
  args?: string[];
  workingDir?: string;
  env?: StringMap;
  mounts?: Mount[];
  attempt?: number;
  /** Merged over the io.kubernetes.* labels (pod labels when `pod` is given). */
  labels?: StringMap;
  annotations?: StringMap;
  /** Relative to the pod's log directory; default <name>/<attempt>.log. */
  logPath?: string;
  tty?: boolean;
  stdin?: boolean;
  stdinOnce?: boolean;
  /** Default: BEST_EFFORT_RESOURCES. */
  resources?: LinuxContainerResources;
  securityContext?: Omit<LinuxContainerSecurityContext, 'namespace_options'>;
  namespaceOptions?: NamespaceOption;
  /** The pod's config, to copy its identity labels from. */
  pod?: PodSandboxConfig;
}

export function containerConfig(input: ContainerConfigInput): ContainerConfig {
  const attempt = input.attempt ?? 0;
  const podLabels: StringMap = {};
  if (input.pod) {
    podLabels['io.kubernetes.pod.name'] = input.pod.metadata.name;
    podLabels['io.kubernetes.pod.namespace'] = input.pod.metadata.namespace;
    podLabels['io.kubernetes.pod.uid'] = input.pod.metadata.uid;
  }
  const envs: KeyValue[] = Object.entries(input.env ?? {}).map(([key, value]) => ({ key, value }));
  return {
    metadata: { name: input.name, attempt },
    image: { image: input.image },
    command: input.command ?? [],
    args: input.args ?? [],
    working_dir: input.workingDir ?? '',
    envs,
    mounts: input.mounts ?? [],
    labels: { ...podLabels, 'io.kubernetes.container.name': input.name, ...input.labels },
    annotations: { 'io.kubernetes.container.restartCount': String(attempt), ...input.annotations },
    log_path: input.logPath ?? `${input.name}/${attempt}.log`,
    stdin: input.stdin ?? false,
    stdin_once: input.stdinOnce ?? false,
    tty: input.tty ?? false,
    linux: {
      resources: input.resources ?? BEST_EFFORT_RESOURCES,
      security_context: {
        ...input.securityContext,
        namespace_options: input.namespaceOptions ?? DEFAULT_NAMESPACE_OPTIONS,
      },
    },
  };
}
