// The launch plan: what tern-launch executes, as a typed object, and its file
// form (one directive per line, values separated by tabs and escaped; the format is
// described in guest-image/launcher/README.md). Every decision is made before
// a plan is rendered; the launcher only performs it.
import { invalidArgument } from '../../common/errors.js';

export type NamespaceName = 'pid' | 'mnt' | 'uts' | 'ipc' | 'cgroup';

/** How the mount target is prepared: created as a directory, as an empty file, or left alone. */
export type MountKind = 'dir' | 'file' | 'none';

export interface PlanMount {
  kind: MountKind;
  /** mount(2) flags, numeric (MS_*). */
  flags: number;
  /** '' passes NULL. */
  source: string;
  /** Absolute path inside the container. */
  target: string;
  /** '' passes NULL. */
  fstype: string;
  /** Filesystem data options ('' passes NULL). */
  data: string;
}

/** A device node created in the container's /dev (mknod), like runc does outside user namespaces. */
export interface PlanDevice {
  path: string;
  /** c: character, b: block, p: FIFO */
  type: 'c' | 'b' | 'p';
  major: number;
  minor: number;
  /** permission bits */
  mode: number;
  uid: number;
  gid: number;
}

/** A seccomp filter compiled to classic BPF (see seccomp.ts). */
export interface PlanSeccomp {
  /** SECCOMP_FILTER_FLAG_* bits for seccomp(2). */
  flags: number;
  /** struct sock_filter array, 8 bytes per instruction. */
  program: Buffer;
}

export interface PlanRlimit {
  resource: number;
  soft: bigint;
  hard: bigint;
}

/** Capability sets as 64-bit masks. */
export interface PlanCapabilities {
  bounding: bigint;
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
  ambient: bigint;
}

export interface LaunchPlan {
  mode: 'create' | 'exec';
  /** Cgroup directory to join before forking, and where the launcher returns afterwards ('' = stay). */
  cgroup?: { path: string; returnTo: string };
  unshare: NamespaceName[];
  join: { type: NamespaceName; path: string }[];
  /** create mode: the prepared rootfs directory. */
  rootfs?: string;
  /** exec mode: the directory to chroot into (/proc/<pid>/root). */
  execRoot?: string;
  /** Propagation flags applied to / in the new mount namespace. */
  rootPropagation: number;
  readonlyRoot: boolean;
  mounts: PlanMount[];
  /** Device nodes made after the mounts (create mode). */
  devices: PlanDevice[];
  symlinks: { target: string; link: string }[];
  /** Bind the pty slave onto /dev/console (terminal mode). */
  console: boolean;
  maskedPaths: string[];
  readonlyPaths: string[];
  /** Paths relative to /proc/sys, written in the container's namespaces. */
  sysctls: { path: string; value: string }[];
  hostname?: string;
  domainname?: string;
  rlimits: PlanRlimit[];
  oomScoreAdj?: number;
  uid: number;
  gid: number;
  additionalGids: number[];
  umask?: number;
  cwd: string;
  env: string[];
  args: string[];
  terminal: boolean;
  winsize?: { rows: number; cols: number };
  noNewPrivileges: boolean;
  capabilities?: PlanCapabilities;
  seccomp?: PlanSeccomp;
}

/** The plan's rootfs-building steps, all empty: for a process that joins an existing root (an exec, the guest's debug shell). */
export function noRootfsSteps(): Pick<
  LaunchPlan,
  'unshare' | 'rootPropagation' | 'readonlyRoot' | 'mounts' | 'devices' | 'symlinks' | 'console' | 'maskedPaths' | 'readonlyPaths' | 'sysctls'
> {
  return {
    unshare: [],
    rootPropagation: 0,
    readonlyRoot: false,
    mounts: [],
    devices: [],
    symlinks: [],
    console: false,
    maskedPaths: [],
    readonlyPaths: [],
    sysctls: [],
  };
}

/** A field of the plan file: backslash, tab and newline are escaped (\\ \t \n); NUL cannot be carried. */
function value(v: string | number | bigint, what: string): string {
  const s = String(v);
  if (s.includes('\0')) throw invalidArgument(`${what}: value must not contain NUL: ${JSON.stringify(s)}`);
  return s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
}

const hex = (n: bigint) => n.toString(16);

/** Render the plan file. Throws InvalidArgument when a value cannot be carried by the format (NUL). */
export function renderPlan(plan: LaunchPlan): string {
  const lines: string[] = [];
  const put = (what: string, ...vals: (string | number | bigint)[]) => {
    lines.push([what, ...vals.map((v) => value(v, what))].join('\t'));
  };
  put('version', 1);
  put('mode', plan.mode);
  if (plan.cgroup) put('cgroup', plan.cgroup.path, plan.cgroup.returnTo);
  for (const ns of plan.join) put('setns', ns.type, ns.path);
  for (const ns of plan.unshare) put('unshare', ns);
  if (plan.rootfs !== undefined) put('root', plan.rootfs);
  if (plan.execRoot !== undefined) put('exec_root', plan.execRoot);
  if (plan.mode === 'create') put('propagation', plan.rootPropagation);
  for (const m of plan.mounts) put('mount', m.kind, m.flags >>> 0, m.source, m.target, m.fstype, m.data);
  for (const d of plan.devices) put('device', d.path, d.type, d.major, d.minor, d.mode.toString(8).padStart(4, '0'), d.uid, d.gid);
  for (const s of plan.symlinks) put('symlink', s.target, s.link);
  if (plan.console) put('console');
  for (const p of plan.maskedPaths) put('mask', p);
  for (const p of plan.readonlyPaths) put('readonly_path', p);
  if (plan.readonlyRoot) put('readonly_root');
  for (const s of plan.sysctls) put('sysctl', s.path, s.value);
  if (plan.hostname !== undefined) put('hostname', plan.hostname);
  if (plan.domainname !== undefined) put('domainname', plan.domainname);
  for (const r of plan.rlimits) put('rlimit', r.resource, r.soft, r.hard);
  if (plan.oomScoreAdj !== undefined) put('oom_score_adj', plan.oomScoreAdj);
  put('user', plan.uid, plan.gid);
  if (plan.additionalGids.length > 0) put('groups', ...plan.additionalGids);
  if (plan.umask !== undefined) put('umask', plan.umask.toString(8).padStart(4, '0'));
  put('cwd', plan.cwd);
  for (const e of plan.env) put('env', e);
  for (const a of plan.args) put('arg', a);
  if (plan.terminal) put('terminal');
  if (plan.winsize) put('winsize', plan.winsize.rows, plan.winsize.cols);
  if (plan.noNewPrivileges) put('no_new_privs');
  const c = plan.capabilities;
  if (c) put('caps', hex(c.bounding), hex(c.effective), hex(c.permitted), hex(c.inheritable), hex(c.ambient));
  if (plan.seccomp) put('seccomp', plan.seccomp.flags, plan.seccomp.program.toString('hex'));
  return `${lines.join('\n')}\n`;
}
