// Pure translation of an OCI runtime spec (or an exec's Process) into a launch
// plan plus cgroup limits. Nothing here touches the system except through the
// optional statSource/guestDevice callbacks. Unsupported fields are rejected by
// name with InvalidArgument; what ctr's and CRI's default specs carry but tern
// does not apply (AppArmor/SELinux labels, device cgroup rules) becomes a warning.
// Devices are created with mknod from the guest's own device numbers: a spec's
// linux.devices (e.g. every host device of a privileged container) names host
// devices, and inside a VM only the guest's devices exist.
import { invalidArgument } from '../../common/errors.js';
import type { CgroupLimits } from './cgroups.js';
import type { OciMount, OciProcess, OciSpec } from './oci-types.js';
import {
  noRootfsSteps,
  type LaunchPlan,
  type MountKind,
  type NamespaceName,
  type PlanCapabilities,
  type PlanDevice,
  type PlanMount,
  type PlanRlimit,
} from './plan.js';
import { compileSeccomp } from './seccomp.js';
import { checkSysctl } from './sysctl.js';

export type { OciSpec, OciProcess } from './oci-types.js';
export type { LaunchPlan } from './plan.js';

// mount(2) flags
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOSYMFOLLOW: 256,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  MOVE: 8192,
  REC: 16384,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
  LAZYTIME: 1 << 25,
} as const;

/** Options that set (true) or clear (false) a flag. */
const FLAG_OPTIONS: Record<string, [boolean, number]> = {
  defaults: [false, 0],
  ro: [true, MS.RDONLY],
  rw: [false, MS.RDONLY],
  nosuid: [true, MS.NOSUID],
  suid: [false, MS.NOSUID],
  nodev: [true, MS.NODEV],
  dev: [false, MS.NODEV],
  noexec: [true, MS.NOEXEC],
  exec: [false, MS.NOEXEC],
  sync: [true, MS.SYNCHRONOUS],
  async: [false, MS.SYNCHRONOUS],
  dirsync: [true, MS.DIRSYNC],
  mand: [true, MS.MANDLOCK],
  nomand: [false, MS.MANDLOCK],
  noatime: [true, MS.NOATIME],
  atime: [false, MS.NOATIME],
  nodiratime: [true, MS.NODIRATIME],
  diratime: [false, MS.NODIRATIME],
  relatime: [true, MS.RELATIME],
  norelatime: [false, MS.RELATIME],
  strictatime: [true, MS.STRICTATIME],
  nostrictatime: [false, MS.STRICTATIME],
  nosymfollow: [true, MS.NOSYMFOLLOW],
  lazytime: [true, MS.LAZYTIME],
  nolazytime: [false, MS.LAZYTIME],
};

const PROPAGATION_OPTIONS: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
};

const CAPABILITIES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
];

const OCI_NAMESPACES: Record<string, NamespaceName | 'network'> = {
  pid: 'pid',
  mount: 'mnt',
  uts: 'uts',
  ipc: 'ipc',
  cgroup: 'cgroup',
  network: 'network',
};

/** Devices every container gets (the numbers are fixed by the kernel's devices.txt). */
const DEFAULT_DEVICES: PlanDevice[] = [
  { path: '/dev/null', type: 'c', major: 1, minor: 3, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/zero', type: 'c', major: 1, minor: 5, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/full', type: 'c', major: 1, minor: 7, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/random', type: 'c', major: 1, minor: 8, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/urandom', type: 'c', major: 1, minor: 9, mode: 0o666, uid: 0, gid: 0 },
  { path: '/dev/tty', type: 'c', major: 5, minor: 0, mode: 0o666, uid: 0, gid: 0 },
];

/** A device node as the guest has it. */
export interface GuestDevice {
  type: 'c' | 'b' | 'p';
  major: number;
  minor: number;
}

const RLIM_INFINITY = (1n << 64n) - 1n;

export interface SpecContext {
  /** The prepared rootfs directory (overlay mount point). */
  rootfs: string;
  /** The container's cgroup directory and where the launcher returns after forking. */
  cgroup?: { path: string; returnTo: string };
  /** Terminal mode as requested by the shim (authoritative over process.terminal). */
  terminal: boolean;
  /** Tells whether a bind source is a file or a directory; defaults to 'dir'. */
  statSource?: (path: string) => 'file' | 'dir';
  /**
   * The guest's device node at a path (undefined when the guest has none).
   * Without it, linux.devices are created with the numbers the spec gives.
   */
  guestDevice?: (path: string) => GuestDevice | undefined;
}

export interface SpecTranslation {
  plan: LaunchPlan;
  limits: CgroupLimits;
  /** Things accepted but not applied, to be logged by the caller. */
  warnings: string[];
}

export interface ExecContext {
  /** Guest pid of the container's init, whose namespaces and root are joined. */
  initPid: number;
  /** The container's seccomp filter: exec'd processes get it too (as with runc). */
  seccomp?: LaunchPlan['seccomp'];
  cgroup?: { path: string; returnTo: string };
  terminal: boolean;
}

const isAbs = (p: string) => p.startsWith('/');

function toRlimitValue(n: number): bigint {
  if (!Number.isFinite(n) || n < 0 || n >= 2 ** 63) return RLIM_INFINITY;
  return BigInt(Math.trunc(n));
}

function capMask(names: string[] | undefined, field: string, warnings: string[]): bigint {
  let mask = 0n;
  for (const name of names ?? []) {
    const i = CAPABILITIES.indexOf(name.replace(/^CAP_/, ''));
    if (i < 0) warnings.push(`${field}: unknown capability ${name} ignored`);
    else mask |= 1n << BigInt(i);
  }
  return mask;
}

interface ProcessPart {
  uid: number;
  gid: number;
  additionalGids: number[];
  umask?: number;
  cwd: string;
  env: string[];
  args: string[];
  rlimits: PlanRlimit[];
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
  capabilities?: PlanCapabilities;
  winsize?: { rows: number; cols: number };
}

/** The parts of a plan that come from the OCI Process object (shared by create and exec). */
function processPart(p: OciProcess | undefined, field: string, terminal: boolean, warnings: string[]): ProcessPart {
  if (!p) throw invalidArgument(`${field}: missing`);
  if (!Array.isArray(p.args) || p.args.length === 0) {
    throw invalidArgument(p.commandLine ? `${field}.commandLine: not supported, use args` : `${field}.args: must not be empty`);
  }
  const user = p.user ?? {};
  if (user.username && user.uid === undefined) throw invalidArgument(`${field}.user.username: only numeric uid/gid are supported`);
  const cwd = p.cwd || '/';
  if (!isAbs(cwd)) throw invalidArgument(`${field}.cwd: must be absolute: ${cwd}`);
  const rlimits = (p.rlimits ?? []).map((r) => {
    const resource = RLIMITS[r.type];
    if (resource === undefined) throw invalidArgument(`${field}.rlimits: unknown type ${r.type}`);
    return { resource, soft: toRlimitValue(r.soft), hard: toRlimitValue(r.hard) };
  });
  if (p.apparmorProfile) warnings.push(`${field}.apparmorProfile: ignored (no AppArmor in the guest)`);
  if (p.selinuxLabel) warnings.push(`${field}.selinuxLabel: ignored (no SELinux in the guest)`);
  const c = p.capabilities;
  const capabilities = c
    ? {
        bounding: capMask(c.bounding, `${field}.capabilities.bounding`, warnings),
        effective: capMask(c.effective, `${field}.capabilities.effective`, warnings),
        permitted: capMask(c.permitted, `${field}.capabilities.permitted`, warnings),
        inheritable: capMask(c.inheritable, `${field}.capabilities.inheritable`, warnings),
        ambient: capMask(c.ambient, `${field}.capabilities.ambient`, warnings),
      }
    : undefined;
  const winsize = terminal && p.consoleSize && p.consoleSize.height > 0 ? { rows: p.consoleSize.height, cols: p.consoleSize.width } : undefined;
  return {
    uid: user.uid ?? 0,
    gid: user.gid ?? 0,
    additionalGids: user.additionalGids ?? [],
    umask: user.umask,
    cwd,
    env: p.env ?? [],
    args: p.args,
    rlimits,
    noNewPrivileges: p.noNewPrivileges === true,
    oomScoreAdj: p.oomScoreAdj,
    capabilities,
    winsize,
  };
}

/** Parse mount options into flags, propagation flags and data. */
export function parseMountOptions(options: string[]): { flags: number; propagation: number[]; bind: boolean; recursive: boolean; data: string[] } {
  let flags = 0;
  let bind = false;
  let recursive = false;
  const propagation: number[] = [];
  const data: string[] = [];
  for (const o of options) {
    if (o === 'bind' || o === 'rbind') {
      bind = true;
      recursive ||= o === 'rbind';
    } else if (o in FLAG_OPTIONS) {
      const [set, f] = FLAG_OPTIONS[o]!;
      flags = set ? flags | f : flags & ~f;
    } else if (o in PROPAGATION_OPTIONS) {
      propagation.push(PROPAGATION_OPTIONS[o]!);
    } else {
      data.push(o);
    }
  }
  return { flags, propagation, bind, recursive, data };
}

/** One OCI mount as one or more mount(2) calls. */
export function translateMount(m: OciMount, statSource?: (path: string) => 'file' | 'dir'): PlanMount[] {
  if (!m.destination) throw invalidArgument('mounts: a mount has no destination');
  const opts = parseMountOptions(m.options ?? []);
  const ops: PlanMount[] = [];
  // a relative destination is relative to the container's / (as runc takes it)
  const target = isAbs(m.destination) ? m.destination : `/${m.destination}`;
  if (opts.bind || m.type === 'bind') {
    const source = m.source ?? '';
    if (!isAbs(source)) throw invalidArgument(`mounts: bind source for ${target} must be an absolute guest path: ${source}`);
    const kind: MountKind = statSource ? statSource(source) : 'dir';
    ops.push({ kind, flags: MS.BIND | (opts.recursive ? MS.REC : 0), source, target, fstype: '', data: '' });
    // flags on a bind only take effect through a remount
    if (opts.flags !== 0) ops.push({ kind: 'none', flags: MS.BIND | MS.REMOUNT | opts.flags, source: '', target, fstype: '', data: '' });
  } else {
    if (!m.type) throw invalidArgument(`mounts: type missing for ${target}`);
    // a spec written for a cgroup v1 host asks for "cgroup"; the guest has cgroup v2 only
    const cgroup = m.type === 'cgroup' || m.type === 'cgroup2';
    ops.push({
      kind: 'dir',
      flags: opts.flags,
      source: cgroup ? 'cgroup2' : (m.source ?? m.type),
      target,
      fstype: cgroup ? 'cgroup2' : m.type,
      data: cgroup ? '' : opts.data.join(','),
    });
  }
  for (const p of opts.propagation) ops.push({ kind: 'none', flags: p, source: '', target, fstype: '', data: '' });
  return ops;
}

/** Translate a whole container spec for createContainer. */
export function translateSpec(spec: OciSpec, ctx: SpecContext): SpecTranslation {
  const warnings: string[] = [];
  const linux = spec.linux ?? {};
  const hooks = Object.entries(spec.hooks ?? {}).filter(([, v]) => Array.isArray(v) && v.length > 0);
  if (hooks.length > 0) throw invalidArgument(`hooks.${hooks[0]![0]}: OCI hooks are not supported`);
  if (linux.uidMappings?.length || linux.gidMappings?.length) throw invalidArgument('linux.uidMappings: user namespaces are not supported');
  if (linux.intelRdt) throw invalidArgument('linux.intelRdt: not supported');
  if (linux.personality) throw invalidArgument('linux.personality: not supported');
  if (linux.mountLabel) warnings.push('linux.mountLabel: ignored (no SELinux in the guest)');

  // namespaces: the network one is the VM's (the VM is the pod's network sandbox)
  const unshare: NamespaceName[] = [];
  const join: { type: NamespaceName; path: string }[] = [];
  for (const ns of linux.namespaces ?? []) {
    const name = OCI_NAMESPACES[ns.type];
    if (!name) throw invalidArgument(`linux.namespaces: ${ns.type} namespace is not supported`);
    if (name === 'network') {
      if (ns.path) warnings.push(`linux.namespaces: network path ${ns.path} ignored; the VM's network is shared`);
      continue;
    }
    if (ns.path) {
      if (name === 'mnt') throw invalidArgument('linux.namespaces: joining a mount namespace by path is not supported');
      join.push({ type: name, path: ns.path });
    } else if (!unshare.includes(name)) unshare.push(name);
  }
  // the rootfs is always built in a private mount namespace
  if (!unshare.includes('mnt')) unshare.push('mnt');
  const hasUts = unshare.includes('uts') || join.some((n) => n.type === 'uts');
  if (spec.hostname && !hasUts) throw invalidArgument('hostname: needs a uts namespace');
  if (spec.domainname && !hasUts) throw invalidArgument('domainname: needs a uts namespace');
  for (const field of ['maskedPaths', 'readonlyPaths'] as const) {
    for (const p of linux[field] ?? []) {
      if (typeof p !== 'string' || !isAbs(p)) throw invalidArgument(`linux.${field}: path must be absolute: ${String(p)}`);
    }
  }

  // mounts, then default devices and symlinks
  const mounts: PlanMount[] = [];
  for (const m of spec.mounts ?? []) mounts.push(...translateMount(m, ctx.statSource));
  const devices = translateDevices(linux.devices ?? [], ctx.guestDevice, warnings);
  const symlinks = [
    { target: '/proc/self/fd', link: '/dev/fd' },
    { target: '/proc/self/fd/0', link: '/dev/stdin' },
    { target: '/proc/self/fd/1', link: '/dev/stdout' },
    { target: '/proc/self/fd/2', link: '/dev/stderr' },
  ];
  if ((spec.mounts ?? []).some((m) => m.destination === '/dev/pts')) symlinks.push({ target: 'pts/ptmx', link: '/dev/ptmx' });

  let rootPropagation = MS.SLAVE | MS.REC;
  if (linux.rootfsPropagation) {
    const p = PROPAGATION_OPTIONS[linux.rootfsPropagation];
    if (p === undefined) throw invalidArgument(`linux.rootfsPropagation: unknown value ${linux.rootfsPropagation}`);
    rootPropagation = p;
  }

  const own = (t: NamespaceName) => unshare.includes(t) || join.some((n) => n.type === t);
  const sysctls = Object.entries(linux.sysctl ?? {}).map(([key, value]) => ({ path: checkSysctl(key, { ipc: own('ipc'), uts: own('uts') }), value }));

  const proc = processPart(spec.process, 'process', ctx.terminal, warnings);
  const plan: LaunchPlan = {
    mode: 'create',
    cgroup: ctx.cgroup,
    unshare,
    join,
    rootfs: ctx.rootfs,
    rootPropagation,
    readonlyRoot: spec.root?.readonly === true,
    mounts,
    devices,
    symlinks,
    console: ctx.terminal,
    maskedPaths: linux.maskedPaths ?? [],
    readonlyPaths: linux.readonlyPaths ?? [],
    sysctls,
    hostname: spec.hostname || undefined,
    domainname: spec.domainname || undefined,
    terminal: ctx.terminal,
    ...proc,
    seccomp: linux.seccomp === undefined || linux.seccomp === null ? undefined : compileSeccomp(linux.seccomp, warnings),
  };
  return { plan, limits: translateResources(spec, warnings), warnings };
}

const DEVICE_TYPES: Record<string, PlanDevice['type']> = { c: 'c', u: 'c', b: 'b', p: 'p' };

/**
 * linux.devices plus the default ones (the spec's entry wins for the same
 * path). With a guestDevice lookup, character and block devices take the
 * guest's numbers, and devices the guest does not have are left out with a
 * warning: a privileged container gets the guest's devices, not the host's.
 */
function translateDevices(list: NonNullable<OciSpec['linux']>['devices'] & object, guestDevice: SpecContext['guestDevice'], warnings: string[]): PlanDevice[] {
  const byPath = new Map<string, PlanDevice>(DEFAULT_DEVICES.map((d) => [d.path, d]));
  for (const d of list) {
    if (!d.path || !isAbs(d.path)) throw invalidArgument(`linux.devices: path must be absolute: ${d.path}`);
    const type = DEVICE_TYPES[d.type ?? ''];
    if (!type) throw invalidArgument(`linux.devices: ${d.path}: unknown type ${JSON.stringify(d.type)} (c, u, b or p)`);
    const mode = d.fileMode !== undefined ? d.fileMode & 0o7777 : 0o666;
    const owner = { mode, uid: d.uid ?? 0, gid: d.gid ?? 0 };
    if (type === 'p') {
      byPath.set(d.path, { path: d.path, type, major: 0, minor: 0, ...owner });
      continue;
    }
    if (guestDevice) {
      const g = guestDevice(d.path);
      if (!g || g.type !== type) {
        warnings.push(`linux.devices: ${d.path} is not a ${type === 'c' ? 'character' : 'block'} device in the guest; left out (the VM has its own devices)`);
        continue;
      }
      byPath.set(d.path, { path: d.path, type, major: g.major, minor: g.minor, ...owner });
      continue;
    }
    if (!Number.isInteger(d.major) || !Number.isInteger(d.minor) || d.major! < 0 || d.minor! < 0) {
      throw invalidArgument(`linux.devices: ${d.path}: major and minor numbers are required`);
    }
    byPath.set(d.path, { path: d.path, type, major: d.major!, minor: d.minor!, ...owner });
  }
  return [...byPath.values()];
}

/** linux.resources -> cgroup v2 limits (what cannot be applied becomes a warning). */
function translateResources(spec: OciSpec, warnings: string[]): CgroupLimits {
  const r = spec.linux?.resources;
  const limits: CgroupLimits = {};
  if (!r) return limits;
  if (r.memory) {
    const { limit, reservation, swap, kernel, kernelTCP, swappiness, disableOOMKiller } = r.memory;
    if (limit !== undefined && limit > 0) limits.memoryMax = limit;
    if (reservation) warnings.push('linux.resources.memory.reservation: ignored');
    if (swap !== undefined && swap !== limit && swap !== 0) warnings.push('linux.resources.memory.swap: ignored (no swap in the guest)');
    if (kernel || kernelTCP) warnings.push('linux.resources.memory.kernel: ignored');
    if (swappiness !== undefined && swappiness !== 0) warnings.push('linux.resources.memory.swappiness: ignored');
    if (disableOOMKiller) throw invalidArgument('linux.resources.memory.disableOOMKiller: not supported');
  }
  if (r.cpu) {
    const { shares, quota, period, realtimeRuntime, realtimePeriod, cpus, mems } = r.cpu;
    if (shares) limits.cpuShares = shares;
    if (quota !== undefined && quota !== 0) limits.cpuQuota = quota;
    if (period) limits.cpuPeriod = period;
    if (realtimeRuntime || realtimePeriod) throw invalidArgument('linux.resources.cpu.realtimeRuntime: not supported');
    // The host pinned the VM's vCPU threads; cpus here already names guest vCPUs (the shim translated it).
    if (cpus) limits.cpusetCpus = cpus;
    if (mems) warnings.push('linux.resources.cpu.mems: ignored (the guest has one memory node)');
  }
  if (r.pids?.limit !== undefined && r.pids.limit > 0) limits.pidsMax = r.pids.limit;
  if (r.blockIO) warnings.push('linux.resources.blockIO: ignored');
  if (r.hugepageLimits?.length) warnings.push('linux.resources.hugepageLimits: ignored');
  if (r.network) warnings.push('linux.resources.network: ignored');
  if (r.unified && Object.keys(r.unified).length > 0) throw invalidArgument('linux.resources.unified: not supported');
  // r.devices (device cgroup rules): accepted; the container only sees the devices bound into its /dev
  return limits;
}

/** Translate an exec's Process: join the init's namespaces and root. */
export function translateProcess(process: OciProcess, ctx: ExecContext): { plan: LaunchPlan; warnings: string[] } {
  const warnings: string[] = [];
  const proc = processPart(process, 'process', ctx.terminal, warnings);
  const base = `/proc/${ctx.initPid}`;
  const types: NamespaceName[] = ['pid', 'ipc', 'uts', 'cgroup', 'mnt'];
  const plan: LaunchPlan = {
    mode: 'exec',
    cgroup: ctx.cgroup,
    ...noRootfsSteps(),
    join: types.map((type) => ({ type, path: `${base}/ns/${type}` })),
    execRoot: `${base}/root`,
    terminal: ctx.terminal,
    ...proc,
    seccomp: ctx.seccomp,
  };
  return { plan, warnings };
}
