// The host checks of `tern check`, as pure functions over facts gathered
// elsewhere (host-facts.ts): cpuinfo text, file existence, command outputs.
// Each returns a verdict (ok / warn / fail) and a one-line reason; fail means
// something that would break a VM start.
import type { AccelDecision } from '../hypervisor/accel';
import { virtFlags } from '../hypervisor/accel';

export type Verdict = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  name: string;
  verdict: Verdict;
  reason: string;
}

/** Outcome of running a command: null when it could not be started (not found). */
export interface CommandOutput {
  code: number;
  stdout: string;
  stderr: string;
}

export interface FileFact {
  path: string;
  exists: boolean;
  /** Size in bytes when it exists. */
  size?: number;
}

export interface HostFacts {
  /** Config loading error (the other checks then use the defaults). */
  configError?: string;
  configPath: string;
  /** Whether the config file was read (a missing default file means all defaults). */
  configFileRead: boolean;
  cpuinfo: string | null;
  pvmModule: boolean;
  devKvm: 'usable' | 'present' | 'absent';
  vhostVsock: boolean;
  forcedAccel: 'auto' | 'kvm' | 'tcg';
  accel: AccelDecision;
  qemuBinary: string;
  /** Where the QEMU binary resolved to, or null. */
  qemuPath: string | null;
  qemuVersion: CommandOutput | null;
  qemuDeviceHelp: CommandOutput | null;
  kernel: FileFact;
  initrd: FileFact;
  image: FileFact;
  manifest: { path: string; text: string | null; error?: string };
  containerdVersion: CommandOutput | null;
  shimPath: string | null;
  mountinfo: string | null;
  meminfo: string | null;
  vmMemoryMiB: number;
  /** hypervisor.run_as: the setting, and what it resolved to or why it did not. */
  runAs: { setting: string; uid?: number; gid?: number; error?: string };
}

export const REQUIRED_QEMU_DEVICES = ['virtio-blk-pci', 'virtio-serial-pci', 'virtserialport', 'pcie-root-port', 'virtio-rng-pci'];
export const SHIM_BINARY = 'containerd-shim-tern-v2';

const r = (name: string, verdict: Verdict, reason: string): CheckResult => ({ name, verdict, reason });

export function checkConfig(configPath: string, fileRead: boolean, error: string | undefined): CheckResult {
  if (error) return r('config', 'fail', `${error} (defaults used for the checks below)`);
  return r('config', 'ok', fileRead ? `${configPath} is valid` : `${configPath} not present: defaults`);
}

export function checkCpuVirtualization(cpuinfo: string | null, pvmModule: boolean): CheckResult {
  if (cpuinfo === null) return r('cpu-virtualization', 'warn', 'cannot read /proc/cpuinfo');
  const flags = virtFlags(cpuinfo);
  if (flags.length > 0 && !pvmModule) return r('cpu-virtualization', 'ok', `CPU has ${flags.join('+')} (hardware virtualization)`);
  if (flags.length > 0) return r('cpu-virtualization', 'warn', `CPU has ${flags.join('+')}, but the kvm_pvm module is loaded (KVM here is PVM)`);
  if (pvmModule) {
    return r('cpu-virtualization', 'warn', 'no vmx/svm flag; kvm_pvm module present: KVM here is PVM, which only boots PVM-built guest kernels');
  }
  return r('cpu-virtualization', 'warn', 'no vmx/svm flag and no PVM: no hardware virtualization, VMs run under TCG');
}

export function checkAccelerator(f: Pick<HostFacts, 'accel' | 'forcedAccel' | 'devKvm' | 'cpuinfo' | 'pvmModule'>): CheckResult {
  const { accel, reason } = f.accel;
  const label = accel.toUpperCase();
  const pvmNote = f.pvmModule && !/pvm/i.test(reason) ? '; /sys/module/kvm_pvm present: KVM here is PVM, which hangs stock guest kernels' : '';
  if (accel === 'kvm') {
    if (f.devKvm !== 'usable')
      return r('accelerator', 'fail', `${label}: ${reason}, but /dev/kvm is ${f.devKvm === 'absent' ? 'missing' : 'not read-writable'}`);
    const flags = f.cpuinfo === null ? [] : virtFlags(f.cpuinfo);
    if (f.forcedAccel === 'kvm' && (flags.length === 0 || f.pvmModule)) {
      return r(
        'accelerator',
        'fail',
        `${label}: ${reason}, but ${flags.length === 0 ? 'the CPU has no vmx/svm' : 'KVM here is PVM'}: a stock guest kernel hangs`,
      );
    }
    return r('accelerator', 'ok', `${label}: ${reason}`);
  }
  if (f.forcedAccel === 'tcg') return r('accelerator', 'ok', `${label}: ${reason}`);
  return r('accelerator', 'warn', `${label} (software emulation, slower): ${reason}${pvmNote}`);
}

export function checkDevKvm(devKvm: HostFacts['devKvm']): CheckResult {
  if (devKvm === 'usable') return r('dev-kvm', 'ok', '/dev/kvm is present and read-writable');
  if (devKvm === 'present') return r('dev-kvm', 'warn', '/dev/kvm exists but is not read-writable: KVM cannot be used');
  return r('dev-kvm', 'warn', '/dev/kvm is missing: KVM cannot be used');
}

export function checkVhostVsock(present: boolean): CheckResult {
  if (present) return r('vhost-vsock', 'ok', '/dev/vhost-vsock present');
  return r('vhost-vsock', 'ok', '/dev/vhost-vsock absent: the agent channel uses virtio-serial');
}

export function qemuVersionOf(out: string): string | null {
  return /QEMU emulator version (\S+)/.exec(out)?.[1] ?? null;
}

export function checkQemu(binary: string, path: string | null, version: CommandOutput | null): CheckResult {
  if (path === null || version === null) return r('qemu', 'fail', `${binary} not found`);
  if (version.code !== 0) return r('qemu', 'fail', `${path} --version exited ${version.code}: ${firstLine(version.stderr)}`);
  const v = qemuVersionOf(version.stdout);
  if (!v) return r('qemu', 'warn', `${path}: unrecognised version output: ${firstLine(version.stdout)}`);
  return r('qemu', 'ok', `${path} version ${v}`);
}

/** Device names listed by `qemu -device help` (lines like `name "virtio-blk-pci", bus PCI`). */
export function qemuDevices(help: string): Set<string> {
  const out = new Set<string>();
  for (const m of help.matchAll(/^name "([^"]+)"/gm)) out.add(m[1]!);
  return out;
}

export function checkQemuDevices(help: CommandOutput | null): CheckResult {
  if (help === null) return r('qemu-devices', 'fail', 'QEMU not found');
  if (help.code !== 0) return r('qemu-devices', 'fail', `-device help exited ${help.code}: ${firstLine(help.stderr)}`);
  const have = qemuDevices(help.stdout);
  const missing = REQUIRED_QEMU_DEVICES.filter((d) => !have.has(d));
  if (missing.length > 0) return r('qemu-devices', 'fail', `missing devices: ${missing.join(', ')}`);
  return r('qemu-devices', 'ok', `has ${REQUIRED_QEMU_DEVICES.join(', ')}`);
}

export function checkGuestFile(name: string, f: FileFact): CheckResult {
  if (!f.exists) return r(name, 'fail', `${f.path} is missing (run \`make guest-image\`)`);
  if (f.size === 0) return r(name, 'fail', `${f.path} is empty`);
  return r(name, 'ok', `${f.path}${f.size !== undefined ? ` (${mib(f.size)})` : ''}`);
}

export function checkGuestManifest(m: HostFacts['manifest']): CheckResult {
  if (m.text === null) return r('guest-manifest', 'warn', `${m.path} not readable${m.error ? `: ${m.error}` : ''}`);
  let doc: unknown;
  try {
    doc = JSON.parse(m.text);
  } catch (err) {
    return r('guest-manifest', 'warn', `${m.path} is not JSON: ${(err as Error).message}`);
  }
  const o = (typeof doc === 'object' && doc !== null ? doc : {}) as { hash?: unknown; kernel?: { release?: unknown } };
  const parts = [typeof o.hash === 'string' ? `hash ${o.hash}` : null, typeof o.kernel?.release === 'string' ? `kernel ${o.kernel.release}` : null].filter(
    Boolean,
  );
  return r('guest-manifest', 'ok', `${m.path}${parts.length ? ` (${parts.join(', ')})` : ''}`);
}

/** The version word of `containerd --version` ("containerd github.com/containerd/containerd 1.6.20~ds1 ..."). */
export function containerdVersionOf(out: string): string | null {
  const m = /^containerd\s+\S+\s+v?(\d+\.\d+(?:\.\d+)?\S*)/m.exec(out);
  return m?.[1] ?? null;
}

export function checkContainerd(out: CommandOutput | null): CheckResult {
  if (out === null) return r('containerd', 'fail', 'containerd not found on PATH');
  if (out.code !== 0) return r('containerd', 'fail', `containerd --version exited ${out.code}: ${firstLine(out.stderr)}`);
  const v = containerdVersionOf(out.stdout);
  if (!v) return r('containerd', 'warn', `unrecognised version output: ${firstLine(out.stdout)}`);
  const [major, minor] = v.split('.').map((x) => Number.parseInt(x, 10));
  if (major! < 1 || (major === 1 && minor! < 6)) return r('containerd', 'warn', `containerd ${v}: tern targets 1.6 or later`);
  return r('containerd', 'ok', `containerd ${v}`);
}

export function checkShim(path: string | null): CheckResult {
  if (path === null) {
    return r('shim', 'fail', `${SHIM_BINARY} (runtime io.containerd.tern.v2) is not on PATH nor beside containerd (run \`make install\`)`);
  }
  return r('shim', 'ok', `io.containerd.tern.v2 -> ${path}`);
}

export type CgroupMode = 'v1' | 'hybrid' | 'v2' | 'unknown';

/** cgroup mode from /proc/self/mountinfo text: cgroup2 at /sys/fs/cgroup is v2; v1 controllers plus a cgroup2 mount is hybrid. */
export function cgroupMode(mountinfo: string): CgroupMode {
  let v1 = false;
  let v2Root = false;
  let v2Elsewhere = false;
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    const point = fields[4];
    const sep = fields.indexOf('-');
    if (!point || sep < 0) continue;
    const fstype = fields[sep + 1];
    if (point !== '/sys/fs/cgroup' && !point.startsWith('/sys/fs/cgroup/')) continue;
    if (fstype === 'cgroup2') {
      if (point === '/sys/fs/cgroup') v2Root = true;
      else v2Elsewhere = true;
    } else if (fstype === 'cgroup') v1 = true;
  }
  if (v2Root) return 'v2';
  if (v1 && v2Elsewhere) return 'hybrid';
  if (v1) return 'v1';
  return 'unknown';
}

export function checkCgroups(mountinfo: string | null): CheckResult {
  if (mountinfo === null) return r('cgroups', 'warn', 'cannot read /proc/self/mountinfo');
  const mode = cgroupMode(mountinfo);
  const why: Record<CgroupMode, string> = {
    v2: 'v2 (unified hierarchy at /sys/fs/cgroup)',
    hybrid: 'hybrid (v1 controllers plus cgroup2 at a sub-mount)',
    v1: 'v1 (legacy controllers only)',
    unknown: 'no cgroup filesystem mounted under /sys/fs/cgroup',
  };
  return r('cgroups', mode === 'unknown' ? 'warn' : 'ok', why[mode]);
}

/** MemAvailable from /proc/meminfo, in KiB. */
export function memAvailableKiB(meminfo: string): number | null {
  const m = /^MemAvailable:\s+(\d+)\s*kB/m.exec(meminfo);
  return m ? Number(m[1]) : null;
}

export function checkMemory(meminfo: string | null, vmMemoryMiB: number): CheckResult {
  const kib = meminfo === null ? null : memAvailableKiB(meminfo);
  if (kib === null) return r('memory', 'warn', 'MemAvailable not found in /proc/meminfo');
  const availMiB = Math.floor(kib / 1024);
  const fit = Math.floor(availMiB / vmMemoryMiB);
  const text = `${availMiB} MiB available, VM memory ${vmMemoryMiB} MiB`;
  if (fit < 1) return r('memory', 'fail', `${text}: one VM does not fit`);
  if (fit < 2) return r('memory', 'warn', `${text}: room for one VM only`);
  return r('memory', 'ok', `${text}: room for about ${fit} VMs`);
}

export function checkQemuUser(runAs: HostFacts['runAs']): CheckResult {
  if (runAs.error) return r('qemu-user', 'fail', runAs.error);
  if (runAs.setting === '') return r('qemu-user', 'ok', 'QEMU stays root (hypervisor.run_as is empty; set a user for QEMU to drop to)');
  return r('qemu-user', 'ok', `QEMU drops to ${runAs.setting} (uid ${runAs.uid}, gid ${runAs.gid}) once the machine is built`);
}

export function runChecks(f: HostFacts): CheckResult[] {
  return [
    checkConfig(f.configPath, f.configFileRead, f.configError),
    checkCpuVirtualization(f.cpuinfo, f.pvmModule),
    checkAccelerator(f),
    checkDevKvm(f.devKvm),
    checkVhostVsock(f.vhostVsock),
    checkQemu(f.qemuBinary, f.qemuPath, f.qemuVersion),
    checkQemuDevices(f.qemuDeviceHelp),
    checkQemuUser(f.runAs),
    checkGuestFile('guest-kernel', f.kernel),
    checkGuestFile('guest-initrd', f.initrd),
    checkGuestFile('guest-image', f.image),
    checkGuestManifest(f.manifest),
    checkContainerd(f.containerdVersion),
    checkShim(f.shimPath),
    checkCgroups(f.mountinfo),
    checkMemory(f.meminfo, f.vmMemoryMiB),
  ];
}

/** 1 when any check failed, else 0. */
export function checksExitCode(results: readonly CheckResult[]): number {
  return results.some((c) => c.verdict === 'fail') ? 1 : 0;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
