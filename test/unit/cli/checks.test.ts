// The pure host checks of `tern check`: verdicts and reasons from injected facts.
import { describe, expect, it } from 'vitest';
import {
  cgroupMode,
  checkAccelerator,
  checkCgroups,
  checkConfig,
  checkContainerd,
  checkCpuVirtualization,
  checkDevKvm,
  checkGuestFile,
  checkGuestManifest,
  checkMemory,
  checkQemu,
  checkQemuDevices,
  checkShim,
  checkVhostVsock,
  checksExitCode,
  containerdVersionOf,
  memAvailableKiB,
  qemuDevices,
  runChecks,
  checkQemuUser,
  type HostFacts,
} from '../../../src/cli/checks';

const INTEL = 'processor\t: 0\nflags\t\t: fpu vme vmx sse2\n';
const NO_VIRT = 'processor\t: 0\nflags\t\t: fpu vme hypervisor lm\n';
const DEVICE_HELP = [
  'Controller/Bridge/Hub devices:',
  'name "pcie-root-port", bus PCI, desc "PCI Express Root Port"',
  'name "virtio-serial-pci", bus PCI, alias "virtio-serial"',
  'name "virtserialport", bus virtio-serial-bus',
  'Storage devices:',
  'name "virtio-blk-pci", bus PCI, alias "virtio-blk"',
  'name "virtio-rng-pci", bus PCI, alias "virtio-rng"',
].join('\n');
const HYBRID = [
  '30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n');
const V2 = '30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
const V1 = '31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n';

function facts(over: Partial<HostFacts> = {}): HostFacts {
  return {
    configPath: '/etc/tern/config.toml',
    configFileRead: false,
    cpuinfo: NO_VIRT,
    pvmModule: true,
    devKvm: 'usable',
    vhostVsock: false,
    forcedAccel: 'auto',
    accel: { accel: 'tcg', reason: 'CPU has no vmx/svm flag (no hardware virtualization): using TCG' },
    qemuBinary: 'qemu-system-x86_64',
    qemuPath: '/usr/bin/qemu-system-x86_64',
    qemuVersion: { code: 0, stdout: 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)\nCopyright\n', stderr: '' },
    qemuDeviceHelp: { code: 0, stdout: DEVICE_HELP, stderr: '' },
    kernel: { path: '/g/vmlinuz', exists: true, size: 14_000_000 },
    initrd: { path: '/g/initrd.img', exists: true, size: 3_000_000 },
    image: { path: '/g/guest.erofs', exists: true, size: 100_000_000 },
    manifest: { path: '/g/manifest.json', text: '{"hash":"abc","kernel":{"release":"6.1.0-56-cloud-amd64"}}' },
    containerdVersion: { code: 0, stdout: 'containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n', stderr: '' },
    shimPath: '/usr/local/bin/containerd-shim-tern-v2',
    mountinfo: HYBRID,
    meminfo: 'MemTotal: 24000000 kB\nMemAvailable:   23924820 kB\n',
    vmMemoryMiB: 512,
    runAs: { setting: '' },
    ...over,
  };
}

describe('cpu virtualization and accelerator', () => {
  it('reports hardware virtualization, PVM, or none', () => {
    expect(checkCpuVirtualization(INTEL, false)).toMatchObject({ verdict: 'ok', reason: expect.stringContaining('vmx') });
    const pvm = checkCpuVirtualization(NO_VIRT, true);
    expect(pvm.verdict).toBe('warn');
    expect(pvm.reason).toMatch(/no vmx\/svm/);
    expect(pvm.reason).toMatch(/PVM/);
    expect(checkCpuVirtualization(NO_VIRT, false).reason).toMatch(/no vmx\/svm flag and no PVM/);
    expect(checkCpuVirtualization(null, false).verdict).toBe('warn');
  });

  it('names TCG and why, mentioning PVM when the decision did not', () => {
    const c = checkAccelerator(facts());
    expect(c.verdict).toBe('warn');
    expect(c.reason).toMatch(/^TCG/);
    expect(c.reason).toMatch(/no vmx\/svm/);
    expect(c.reason).toMatch(/kvm_pvm/);
  });

  it('accepts KVM with vmx and a usable /dev/kvm; fails forced KVM that cannot work', () => {
    const kvm = { accel: 'kvm' as const, reason: '/dev/kvm usable and CPU has vmx: using KVM' };
    expect(checkAccelerator(facts({ cpuinfo: INTEL, pvmModule: false, accel: kvm })).verdict).toBe('ok');
    const forced = { accel: 'kvm' as const, reason: 'kvm forced by configuration' };
    expect(checkAccelerator(facts({ forcedAccel: 'kvm', accel: forced })).verdict).toBe('fail');
    expect(checkAccelerator(facts({ forcedAccel: 'kvm', accel: forced, cpuinfo: INTEL, pvmModule: false, devKvm: 'absent' })).reason).toMatch(/missing/);
    expect(checkAccelerator(facts({ forcedAccel: 'tcg', accel: { accel: 'tcg', reason: 'tcg forced by configuration' } })).verdict).toBe('ok');
  });

  it('judges /dev/kvm and /dev/vhost-vsock', () => {
    expect(checkDevKvm('usable').verdict).toBe('ok');
    expect(checkDevKvm('present').verdict).toBe('warn');
    expect(checkDevKvm('absent').reason).toMatch(/missing/);
    expect(checkVhostVsock(false)).toMatchObject({ verdict: 'ok', reason: expect.stringContaining('virtio-serial') });
    expect(checkVhostVsock(true).verdict).toBe('ok');
  });
});

describe('qemu', () => {
  it('reads the version and fails when the binary is missing or broken', () => {
    expect(checkQemu('q', '/usr/bin/q', facts().qemuVersion)).toMatchObject({ verdict: 'ok', reason: '/usr/bin/q version 7.2.22' });
    expect(checkQemu('q', null, null)).toMatchObject({ verdict: 'fail', reason: 'q not found' });
    expect(checkQemu('q', '/usr/bin/q', { code: 1, stdout: '', stderr: 'boom\n' }).reason).toMatch(/exited 1: boom/);
  });

  it('lists devices and names the missing ones', () => {
    expect(qemuDevices(DEVICE_HELP)).toEqual(new Set(['pcie-root-port', 'virtio-serial-pci', 'virtserialport', 'virtio-blk-pci', 'virtio-rng-pci']));
    expect(checkQemuDevices({ code: 0, stdout: DEVICE_HELP, stderr: '' }).verdict).toBe('ok');
    const noRng = DEVICE_HELP.split('\n')
      .filter((l) => !l.includes('virtio-rng'))
      .join('\n');
    expect(checkQemuDevices({ code: 0, stdout: noRng, stderr: '' })).toMatchObject({ verdict: 'fail', reason: 'missing devices: virtio-rng-pci' });
    expect(checkQemuDevices(null).verdict).toBe('fail');
  });
});

describe('guest files', () => {
  it('fails on a missing or empty file', () => {
    expect(checkGuestFile('guest-kernel', { path: '/g/vmlinuz', exists: true, size: 1024 * 1024 }).verdict).toBe('ok');
    expect(checkGuestFile('guest-kernel', { path: '/g/vmlinuz', exists: false })).toMatchObject({
      verdict: 'fail',
      reason: expect.stringContaining('make guest-image'),
    });
    expect(checkGuestFile('guest-image', { path: '/g/x', exists: true, size: 0 }).verdict).toBe('fail');
  });

  it('reads the manifest; an unreadable one only warns', () => {
    expect(checkGuestManifest(facts().manifest).reason).toMatch(/hash abc, kernel 6\.1\.0-56-cloud-amd64/);
    expect(checkGuestManifest({ path: '/g/m', text: null, error: 'ENOENT' })).toMatchObject({ verdict: 'warn', reason: '/g/m not readable: ENOENT' });
    expect(checkGuestManifest({ path: '/g/m', text: '{' }).verdict).toBe('warn');
  });
});

describe('containerd and the shim', () => {
  it('parses versions and flags old ones', () => {
    expect(containerdVersionOf('containerd github.com/containerd/containerd v1.7.2 abc\n')).toBe('1.7.2');
    expect(checkContainerd(facts().containerdVersion)).toMatchObject({ verdict: 'ok', reason: 'containerd 1.6.20~ds1' });
    expect(checkContainerd({ code: 0, stdout: 'containerd github.com/containerd/containerd 1.5.9 x', stderr: '' }).verdict).toBe('warn');
    expect(checkContainerd(null).verdict).toBe('fail');
  });

  it('fails when the shim binary is not found', () => {
    expect(checkShim('/usr/local/bin/containerd-shim-tern-v2').verdict).toBe('ok');
    expect(checkShim(null)).toMatchObject({ verdict: 'fail', reason: expect.stringContaining('containerd-shim-tern-v2') });
  });
});

describe('cgroups and memory', () => {
  it('tells v1, hybrid and v2 apart', () => {
    expect(cgroupMode(HYBRID)).toBe('hybrid');
    expect(cgroupMode(V2)).toBe('v2');
    expect(cgroupMode(V1)).toBe('v1');
    expect(cgroupMode('')).toBe('unknown');
    expect(checkCgroups(HYBRID).reason).toMatch(/^hybrid/);
    expect(checkCgroups('').verdict).toBe('warn');
  });

  it('compares MemAvailable with the VM memory', () => {
    expect(memAvailableKiB('MemTotal: 1 kB\nMemAvailable:   2048 kB\n')).toBe(2048);
    expect(checkMemory('MemAvailable: 4194304 kB\n', 512)).toMatchObject({ verdict: 'ok', reason: expect.stringContaining('about 8 VMs') });
    expect(checkMemory('MemAvailable: 819200 kB\n', 512).verdict).toBe('warn');
    expect(checkMemory('MemAvailable: 262144 kB\n', 512)).toMatchObject({ verdict: 'fail', reason: expect.stringContaining('does not fit') });
    expect(checkMemory('nothing', 512).verdict).toBe('warn');
  });
});

describe('QEMU user', () => {
  it('says whether QEMU stays root, whom it drops to, or why the setting does not resolve', () => {
    expect(checkQemuUser({ setting: '' })).toMatchObject({ verdict: 'ok', reason: expect.stringContaining('stays root') });
    expect(checkQemuUser({ setting: 'nobody', uid: 65534, gid: 65534 })).toMatchObject({
      verdict: 'ok',
      reason: 'QEMU drops to nobody (uid 65534, gid 65534) once the machine is built',
    });
    expect(checkQemuUser({ setting: 'x', error: 'hypervisor.run_as "x": no such user' })).toMatchObject({
      verdict: 'fail',
      reason: 'hypervisor.run_as "x": no such user',
    });
  });
});

describe('runChecks', () => {
  it('passes on a healthy TCG host with warnings only', () => {
    const results = runChecks(facts());
    expect(results.map((c) => c.name)).toEqual([
      'config',
      'cpu-virtualization',
      'accelerator',
      'dev-kvm',
      'vhost-vsock',
      'qemu',
      'qemu-devices',
      'qemu-user',
      'guest-kernel',
      'guest-initrd',
      'guest-image',
      'guest-manifest',
      'containerd',
      'shim',
      'cgroups',
      'memory',
    ]);
    expect(results.filter((c) => c.verdict === 'fail')).toEqual([]);
    expect(checksExitCode(results)).toBe(0);
  });

  it('exits 1 when anything that breaks a start fails', () => {
    expect(checksExitCode(runChecks(facts({ shimPath: null })))).toBe(1);
    expect(checksExitCode(runChecks(facts({ image: { path: '/g/guest.erofs', exists: false } })))).toBe(1);
    expect(checksExitCode(runChecks(facts({ qemuPath: null, qemuVersion: null, qemuDeviceHelp: null })))).toBe(1);
    expect(checksExitCode(runChecks(facts({ runAs: { setting: 'qemu-user', error: 'hypervisor.run_as "qemu-user": no such user in /etc/passwd' } })))).toBe(1);
    const bad = runChecks(facts({ configError: '/x.toml: unknown key hypervisor.vcpu' }));
    expect(bad[0]).toMatchObject({ name: 'config', verdict: 'fail', reason: expect.stringContaining('hypervisor.vcpu') });
    expect(checkConfig('/etc/tern/config.toml', true, undefined).reason).toMatch(/is valid/);
  });
});
