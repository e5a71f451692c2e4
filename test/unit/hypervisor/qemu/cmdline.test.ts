// The QEMU argv fragments and the full command line for a given VmSpec; the
// shared-directory (virtio-9p) fragment is also checked against a real QEMU.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { VmSpec } from '../../../../src/hypervisor/hypervisor.js';
import {
  accelArgs,
  agentChannelArgs,
  memoryHotplugParams,
  memorySize,
  buildQemuArgs,
  diskSlotArgs,
  diskSlots,
  cpuArgs,
  guestDiskArgs,
  hotplugPortArgs,
  hotplugPortIds,
  kernelArgs,
  memoryArgs,
  optValue,
  qemuPaths,
  qmpArgs,
  serialConsoleArgs,
  sharedDirArgs,
} from '../../../../src/hypervisor/qemu/cmdline.js';

const spec: VmSpec = {
  id: 'pod-1',
  runDir: '/run/tern/pod-1',
  kernelPath: '/var/lib/tern/guest/vmlinuz',
  initrdPath: '/var/lib/tern/guest/initrd.img',
  guestImagePath: '/var/lib/tern/guest/guest.erofs',
  vcpus: 2,
  memoryMiB: 512,
  accel: 'auto',
  kernelParams: ['tern.debug=1'],
  hotplugSlots: 2,
};

describe('fragments', () => {
  it('escapes commas in option values', () => {
    expect(optValue('/a,b,,c')).toBe('/a,,b,,,,c');
    expect(serialConsoleArgs('/r/x,y/console.log')).toEqual(['-chardev', 'file,id=tern-console,path=/r/x,,y/console.log', '-serial', 'chardev:tern-console']);
  });

  it('selects accelerator and cpu model together', () => {
    expect(accelArgs('kvm')).toEqual(['-accel', 'kvm']);
    expect(accelArgs('tcg')).toEqual(['-accel', 'tcg,thread=multi']);
    expect(accelArgs('tcg', 64)).toEqual(['-accel', 'tcg,thread=multi,tb-size=64']);
    expect(accelArgs('kvm', 64)).toEqual(['-accel', 'kvm']);
    expect(cpuArgs('kvm', 4)).toEqual(['-cpu', 'host', '-smp', '4']);
    expect(cpuArgs('tcg', 1)).toEqual(['-cpu', 'max,-erms', '-smp', '1']);
  });

  it('sizes memory, optionally shared through a memfd backend', () => {
    expect(memoryArgs(256)).toEqual(['-m', '256M']);
    expect(memoryArgs(256, 'shared')).toEqual([
      '-m',
      '256M',
      '-object',
      'memory-backend-memfd,id=tern-mem,size=256M,share=on',
      '-machine',
      'memory-backend=tern-mem',
    ]);
  });

  it('boots the kernel with the default command line first and never reboots', () => {
    expect(kernelArgs('/k', '/i', ['a=1'])).toEqual(['-kernel', '/k', '-initrd', '/i', '-append', 'console=ttyS0 quiet panic=-1 reboot=t a=1', '-no-reboot']);
  });

  it('binds the tern.agent virtio-serial port to a listening socket', () => {
    expect(agentChannelArgs('/r/agent.sock')).toEqual([
      '-device',
      'virtio-serial-pci,id=tern-vser',
      '-chardev',
      'socket,id=tern-agent,path=/r/agent.sock,server=on,wait=off',
      '-device',
      'virtserialport,bus=tern-vser.0,chardev=tern-agent,name=tern.agent',
    ]);
  });

  it('leaves room for hot-plugged DIMMs only when the maximum is above the boot size', () => {
    expect(memorySize(512)).toBe('512M');
    expect(memorySize(512, 512)).toBe('512M');
    expect(memorySize(512, 4096)).toBe('512M,slots=8,maxmem=4096M');
    expect(memoryHotplugParams({ memoryMiB: 512, maxMemoryMiB: 4096 })).toEqual(['memhp_default_state=online']);
    expect(memoryHotplugParams({ memoryMiB: 512 })).toEqual([]);
  });

  it('leaves room for hot-plugged vCPUs only when the maximum is above the boot count', () => {
    expect(cpuArgs('tcg', 1)).toEqual(['-cpu', 'max,-erms', '-smp', '1']);
    expect(cpuArgs('tcg', 1, 1)).toEqual(['-cpu', 'max,-erms', '-smp', '1']);
    expect(cpuArgs('kvm', 1, 4)).toEqual(['-cpu', 'host', '-smp', '1,maxcpus=4']);
    expect(cpuArgs('tcg', 1, 2, 'qemu64')).toEqual(['-cpu', 'qemu64', '-smp', '1,maxcpus=2']);
    // The model is TCG's only: KVM always gives the guest the host's CPU.
    expect(cpuArgs('kvm', 1, 0, 'qemu64')).toEqual(['-cpu', 'host', '-smp', '1']);
  });

  it('adds the tern.debug port on the same bus only when asked', () => {
    expect(agentChannelArgs('/r/agent.sock', '/r/debug.sock').slice(6)).toEqual([
      '-chardev',
      'socket,id=tern-debug,path=/r/debug.sock,server=on,wait=off',
      '-device',
      'virtserialport,bus=tern-vser.0,chardev=tern-debug,name=tern.debug',
    ]);
  });

  it('attaches the guest image read-only with serial tern-guest', () => {
    expect(guestDiskArgs('/g.img')).toEqual([
      '-blockdev',
      'driver=file,node-name=tern-guest-file,filename=/g.img,read-only=on',
      '-blockdev',
      'driver=raw,node-name=tern-guest,file=tern-guest-file,read-only=on',
      '-device',
      'virtio-blk-pci,id=tern-guest-disk,drive=tern-guest,serial=tern-guest',
    ]);
  });

  it('creates numbered root ports with distinct chassis', () => {
    expect(hotplugPortIds(3)).toEqual(['tern-rp0', 'tern-rp1', 'tern-rp2']);
    expect(hotplugPortArgs(2)).toEqual([
      '-device',
      'pcie-root-port,id=tern-rp0,bus=pcie.0,chassis=1',
      '-device',
      'pcie-root-port,id=tern-rp1,bus=pcie.0,chassis=2',
    ]);
    expect(hotplugPortArgs(0)).toEqual([]);
  });

  it('serves QMP on a unix socket', () => {
    expect(qmpArgs('/r/qmp.sock')).toEqual(['-chardev', 'socket,id=tern-qmp,path=/r/qmp.sock,server=on,wait=off', '-mon', 'chardev=tern-qmp,mode=control']);
  });
});

describe('buildQemuArgs', () => {
  it('builds the exact TCG command line for a spec', () => {
    expect(buildQemuArgs(spec, qemuPaths(spec.runDir), 'tcg')).toEqual([
      '-name',
      'tern-pod-1,debug-threads=on',
      '-machine',
      'q35',
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max,-erms',
      '-smp',
      '2',
      '-m',
      '512M',
      '-nodefaults',
      '-no-user-config',
      '-nographic',
      '-display',
      'none',
      '-sandbox',
      'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
      '-kernel',
      '/var/lib/tern/guest/vmlinuz',
      '-initrd',
      '/var/lib/tern/guest/initrd.img',
      '-append',
      'console=ttyS0 quiet panic=-1 reboot=t tern.debug=1',
      '-no-reboot',
      '-chardev',
      'file,id=tern-console,path=/run/tern/pod-1/console.log',
      '-serial',
      'chardev:tern-console',
      '-chardev',
      'socket,id=tern-qmp,path=/run/tern/pod-1/qmp.sock,server=on,wait=off',
      '-mon',
      'chardev=tern-qmp,mode=control',
      '-device',
      'virtio-serial-pci,id=tern-vser',
      '-chardev',
      'socket,id=tern-agent,path=/run/tern/pod-1/agent.sock,server=on,wait=off',
      '-device',
      'virtserialport,bus=tern-vser.0,chardev=tern-agent,name=tern.agent',
      '-blockdev',
      'driver=file,node-name=tern-guest-file,filename=/var/lib/tern/guest/guest.erofs,read-only=on',
      '-blockdev',
      'driver=raw,node-name=tern-guest,file=tern-guest-file,read-only=on',
      '-device',
      'virtio-blk-pci,id=tern-guest-disk,drive=tern-guest,serial=tern-guest',
      '-object',
      'rng-random,id=tern-rng,filename=/dev/urandom',
      '-device',
      'virtio-rng-pci,rng=tern-rng',
      '-device',
      'pcie-root-port,id=tern-rp0,bus=pcie.0,chassis=1',
      '-device',
      'pcie-root-port,id=tern-rp1,bus=pcie.0,chassis=2',
      '-device',
      'virtio-balloon-pci,id=tern-balloon,free-page-reporting=on,deflate-on-oom=on',
      '-pidfile',
      '/run/tern/pod-1/qemu.pid',
    ]);
  });

  it('gives a VM with a writable slot a disk from boot with a null backend of that size, after the guest image', () => {
    const args = buildQemuArgs({ ...spec, writableSlotMiB: 64 }, qemuPaths(spec.runDir), 'tcg');
    const at = args.indexOf('driver=null-co,node-name=tern-rw-null,size=67108864,read-zeroes=on');
    expect(at).toBeGreaterThan(args.indexOf('virtio-blk-pci,id=tern-guest-disk,drive=tern-guest,serial=tern-guest'));
    expect(args.slice(at - 1, at + 5)).toEqual([
      '-blockdev',
      'driver=null-co,node-name=tern-rw-null,size=67108864,read-zeroes=on',
      '-blockdev',
      'driver=raw,node-name=tern-rw,file=tern-rw-null,discard=unmap',
      '-device',
      'virtio-blk-pci,id=tern-rw-dev,drive=tern-rw,serial=tern-rw-slot',
    ]);
    expect(diskSlotArgs(diskSlots({ writableSlotMiB: 0 }))).toEqual([]);
    expect(diskSlotArgs(diskSlots({}))).toEqual([]);
  });

  it("puts a boot file in the writable slot when given one (a template's premounted disk), with the null backend kept for ejecting", () => {
    const args = buildQemuArgs({ ...spec, writableSlotMiB: 64, writableSlotFile: '/t/a,b/writable.img' }, qemuPaths(spec.runDir), 'tcg');
    const at = args.indexOf('driver=null-co,node-name=tern-rw-null,size=67108864,read-zeroes=on');
    expect(args.slice(at - 1, at + 7)).toEqual([
      '-blockdev',
      'driver=null-co,node-name=tern-rw-null,size=67108864,read-zeroes=on',
      '-blockdev',
      'driver=file,node-name=tern-rw-boot,filename=/t/a,,b/writable.img,discard=unmap',
      '-blockdev',
      'driver=raw,node-name=tern-rw,file=tern-rw-boot,discard=unmap',
      '-device',
      'virtio-blk-pci,id=tern-rw-dev,drive=tern-rw,serial=tern-rw-slot',
    ]);
    // Without a writable slot, a boot file changes nothing.
    expect(diskSlots({ writableSlotMiB: 0, writableSlotFile: '/t/writable.img' })).toEqual([]);
  });

  it('gives a VM read-only layer slots after the writable one: null backends of that size, read-only to the guest', () => {
    const args = buildQemuArgs({ ...spec, writableSlotMiB: 64, layerSlots: { count: 2, sizeMiB: 32 } }, qemuPaths(spec.runDir), 'tcg');
    const at = args.indexOf('driver=null-co,node-name=tern-ro0-null,size=33554432,read-zeroes=on,read-only=on');
    expect(at).toBeGreaterThan(args.indexOf('virtio-blk-pci,id=tern-rw-dev,drive=tern-rw,serial=tern-rw-slot'));
    expect(args.slice(at - 1, at + 11)).toEqual([
      '-blockdev',
      'driver=null-co,node-name=tern-ro0-null,size=33554432,read-zeroes=on,read-only=on',
      '-blockdev',
      'driver=raw,node-name=tern-ro0,file=tern-ro0-null,read-only=on',
      '-device',
      'virtio-blk-pci,id=tern-ro0-dev,drive=tern-ro0,serial=tern-ro-slot0',
      '-blockdev',
      'driver=null-co,node-name=tern-ro1-null,size=33554432,read-zeroes=on,read-only=on',
      '-blockdev',
      'driver=raw,node-name=tern-ro1,file=tern-ro1-null,read-only=on',
      '-device',
      'virtio-blk-pci,id=tern-ro1-dev,drive=tern-ro1,serial=tern-ro-slot1',
    ]);
    // No size or no count: no layer slots.
    expect(diskSlots({ layerSlots: { count: 0, sizeMiB: 32 } })).toEqual([]);
    expect(diskSlots({ layerSlots: { count: 3, sizeMiB: 0 } })).toEqual([]);
  });

  it('uses -accel kvm and -cpu host under KVM, default hot-plug slots, and never -daemonize', () => {
    const args = buildQemuArgs({ ...spec, hotplugSlots: undefined, kernelParams: undefined }, qemuPaths(spec.runDir), 'kvm');
    expect(args.join(' ')).toContain('-accel kvm -cpu host -smp 2');
    expect(args.filter((a) => a.startsWith('pcie-root-port'))).toHaveLength(4);
    expect(args).not.toContain('-daemonize');
    expect(args[args.indexOf('-append') + 1]).toBe('console=ttyS0 quiet panic=-1 reboot=t');
  });
});

describe('shared directory (virtio-9p)', () => {
  it('exports the directory with security_model=none and tag tern-shared, escaping commas', () => {
    expect(sharedDirArgs(undefined)).toEqual([]);
    expect(sharedDirArgs('/run/tern/sb/a,b/shared')).toEqual([
      '-fsdev',
      'local,id=tern-shared-fs,path=/run/tern/sb/a,,b/shared,security_model=none,multidevs=remap',
      '-device',
      'virtio-9p-pci,id=tern-shared-dev,fsdev=tern-shared-fs,mount_tag=tern-shared',
    ]);
  });

  it('is part of the command line only when the spec has a shared directory, before the hot-plug ports', () => {
    expect(buildQemuArgs(spec, qemuPaths(spec.runDir), 'tcg')).not.toContain('-fsdev');
    const args = buildQemuArgs({ ...spec, sharedDir: '/run/tern/sb/x/shared' }, qemuPaths(spec.runDir), 'tcg');
    const fsdev = args.indexOf('-fsdev');
    expect(args[fsdev + 1]).toBe('local,id=tern-shared-fs,path=/run/tern/sb/x/shared,security_model=none,multidevs=remap');
    expect(fsdev).toBeLessThan(args.indexOf('pcie-root-port,id=tern-rp0,bus=pcie.0,chassis=1'));
  });

  it('is accepted by the installed QEMU, which shows the 9p device with its tag', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-9p-'));
    try {
      const qemu = spawn(
        'qemu-system-x86_64',
        ['-S', '-machine', 'q35', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-monitor', 'stdio', ...sharedDirArgs(dir)],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let out = '';
      qemu.stdout.on('data', (d: Buffer) => (out += d.toString()));
      qemu.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => qemu.once('exit', (code) => resolve(code)));
      const timer = setTimeout(() => qemu.kill('SIGKILL'), 20_000);
      qemu.stdin.write('info qtree\nquit\n');
      const code = await exited;
      clearTimeout(timer);
      expect(code, out).toBe(0);
      expect(out).toMatch(/dev: virtio-9p-pci, id "tern-shared-dev"/);
      expect(out).toMatch(/mount_tag = "tern-shared"/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
