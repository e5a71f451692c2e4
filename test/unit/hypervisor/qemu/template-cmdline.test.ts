// The command lines of a template VM and of its clones: the same machine
// (only backends that follow the run directory and the 9p export differ,
// plus RAM sharing and the clone's -incoming), unlike a cold boot's.
import { describe, expect, it } from 'vitest';
import type { VmSpec } from '../../../../src/hypervisor/hypervisor.js';
import {
  buildQemuArgs,
  hotplugSlotCount,
  memoryFileArgs,
  qemuPaths,
  TEMPLATE_KERNEL_PARAM,
  TEMPLATE_NIC_SLOTS,
  vmgenidArgs,
} from '../../../../src/hypervisor/qemu/cmdline.js';
import { shellQuotePath } from '../../../../src/hypervisor/qemu/migration.js';

const MEMORY = '/run/tern/templates/0123456789abcdef01234567/memory';
const base: VmSpec = {
  id: 'pod-1',
  runDir: '/run/tern/templates/.build-x/vm',
  kernelPath: '/var/lib/tern/guest/vmlinux',
  initrdPath: '/var/lib/tern/guest/initrd.img',
  guestImagePath: '/var/lib/tern/guest/guest.erofs',
  vcpus: 2,
  memoryMiB: 512,
  accel: 'auto',
  kernelParams: ['tern.debug=1'],
  hotplugSlots: 3,
  writableSlotMiB: 1024,
  layerSlots: { count: 2, sizeMiB: 2048 },
  sharedDir: '/run/tern/templates/.build-x/share',
};
const templateSpec: VmSpec = { ...base, template: { role: 'template', memoryPath: MEMORY, statePath: '/run/tern/templates/.build-x/state' } };
const cloneSpec: VmSpec = {
  ...base,
  runDir: '/run/tern/sb/abc/vm',
  sharedDir: '/run/tern/sb/abc/shared',
  template: { role: 'clone', memoryPath: MEMORY, statePath: '/run/tern/templates/0123456789abcdef01234567/state' },
};
const argv = (s: VmSpec) => buildQemuArgs(s, qemuPaths(s.runDir), 'tcg');
const tplArgs = argv(templateSpec);
const cloneArgs = argv(cloneSpec);

/** The value following each occurrence of a flag. */
const valuesOf = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

describe('template layout', () => {
  it('template and clone differ only in RAM sharing, -incoming and the backends under runDir and the 9p export', () => {
    expect(cloneArgs.slice(-2)).toEqual(['-incoming', 'defer']);
    expect(tplArgs).not.toContain('-incoming');
    const clone = cloneArgs.slice(0, -2);
    expect(clone).toHaveLength(tplArgs.length);
    const differing = tplArgs.flatMap((a, i) => (a === clone[i] ? [] : [[a, clone[i]!]]));
    const tp = qemuPaths(templateSpec.runDir);
    const cp = qemuPaths(cloneSpec.runDir);
    expect(differing).toEqual([
      [`memory-backend-file,id=tern-mem,size=512M,mem-path=${MEMORY},share=on`, `memory-backend-file,id=tern-mem,size=512M,mem-path=${MEMORY},share=off`],
      // Only the template saves its state through `exec:` (migration.ts): the clone may not spawn.
      ['on,obsolete=deny,elevateprivileges=deny,spawn=allow,resourcecontrol=deny', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'],
      [`file,id=tern-console,path=${tp.consoleLog}`, `file,id=tern-console,path=${cp.consoleLog}`],
      [`socket,id=tern-qmp,path=${tp.qmpSocket},server=on,wait=off`, `socket,id=tern-qmp,path=${cp.qmpSocket},server=on,wait=off`],
      [`socket,id=tern-qmp-fd,path=${tp.qmpFdSocket},server=on,wait=off`, `socket,id=tern-qmp-fd,path=${cp.qmpFdSocket},server=on,wait=off`],
      [`socket,id=tern-agent,path=${tp.agentSocket},server=on,wait=off`, `socket,id=tern-agent,path=${cp.agentSocket},server=on,wait=off`],
      [
        `local,id=tern-shared-fs,path=${templateSpec.sharedDir},security_model=none,multidevs=remap`,
        `local,id=tern-shared-fs,path=${cloneSpec.sharedDir},security_model=none,multidevs=remap`,
      ],
      [tp.pidFile, cp.pidFile],
    ]);
  });

  it.each([
    ['template', tplArgs],
    ['clone', cloneArgs],
  ])('the %s has vmgenid, the template kernel parameter, the 9p device, no NIC and the extra root ports', (_role, args) => {
    expect(args.join(' ')).toContain(vmgenidArgs().join(' '));
    const append = valuesOf(args, '-append');
    expect(append).toHaveLength(1);
    expect(append[0]!.split(' ')).toEqual(expect.arrayContaining(['tern.debug=1', TEMPLATE_KERNEL_PARAM]));
    const devices = valuesOf(args, '-device');
    expect(devices.filter((d) => d.startsWith('virtio-9p-pci,'))).toEqual(['virtio-9p-pci,id=tern-shared-dev,fsdev=tern-shared-fs,mount_tag=tern-shared']);
    expect(devices.some((d) => d.startsWith('virtio-net'))).toBe(false);
    expect(args).not.toContain('-netdev');
    expect(devices.filter((d) => d.startsWith('pcie-root-port,'))).toHaveLength(3 + TEMPLATE_NIC_SLOTS);
    expect(valuesOf(args, '-machine')).toEqual(['q35', 'memory-backend=tern-mem']);
    expect(args.filter((a) => a === '-m')).toHaveLength(1);
  });

  it('keeps NICs out of the layout even when the spec has some (a clone hot-plugs them)', () => {
    const args = argv({ ...cloneSpec, nics: [{ id: 'net0', tap: 'tap0', mac: '02:00:00:00:00:01' }] });
    expect(args).toEqual(cloneArgs);
  });

  it('drops a clone to runAs, never the template (it stays root to write its state)', () => {
    const nobody = { uid: 65534, gid: 65534 };
    expect(argv({ ...cloneSpec, runAs: nobody }).join(' ')).toContain('elevateprivileges=allow,spawn=deny,resourcecontrol=deny -runas 65534:65534');
    const tpl = argv({ ...templateSpec, runAs: nobody });
    expect(tpl).not.toContain('-runas');
    expect(tpl).toContain('on,obsolete=deny,elevateprivileges=deny,spawn=allow,resourcecontrol=deny');
  });

  it('has the free-page-reporting balloon in template and clone alike, after the hot-plug root ports', () => {
    for (const args of [tplArgs, cloneArgs]) {
      const devices = valuesOf(args, '-device');
      const balloon = devices.indexOf('virtio-balloon-pci,id=tern-balloon,free-page-reporting=on,deflate-on-oom=on');
      expect(balloon).toBeGreaterThan(-1);
      const lastPort = devices.reduce((last, d, i) => (d.startsWith('pcie-root-port') ? i : last), -1);
      expect(balloon).toBeGreaterThan(lastPort);
    }
  });

  it('needs a shared directory', () => {
    const { sharedDir: _, ...noShare } = templateSpec;
    expect(() => argv(noShare)).toThrow(/sharedDir/);
    expect(() => argv({ ...cloneSpec, sharedDir: undefined })).toThrow(/sharedDir/);
  });

  it('counts the extra root ports only for template layouts', () => {
    expect(hotplugSlotCount(base)).toBe(3);
    expect(hotplugSlotCount(templateSpec)).toBe(3 + TEMPLATE_NIC_SLOTS);
    expect(hotplugSlotCount(cloneSpec)).toBe(3 + TEMPLATE_NIC_SLOTS);
    expect(hotplugSlotCount({ ...base, hotplugSlots: undefined, template: templateSpec.template })).toBe(4 + TEMPLATE_NIC_SLOTS);
  });

  it('escapes commas in the memory path', () => {
    expect(memoryFileArgs(256, '/t/a,b/memory', false)).toEqual([
      '-m',
      '256M',
      '-object',
      'memory-backend-file,id=tern-mem,size=256M,mem-path=/t/a,,b/memory,share=off',
      '-machine',
      'memory-backend=tern-mem',
    ]);
  });
});

describe('cold boot', () => {
  const cold = argv({ ...base, nics: [{ id: 'net0', tap: 'tap0', mac: '02:00:00:00:00:01' }] });

  it('has no vmgenid, no -incoming, no template parameter and anonymous RAM', () => {
    expect(cold.some((a) => a.startsWith('vmgenid'))).toBe(false);
    expect(cold).not.toContain('-incoming');
    expect(valuesOf(cold, '-append')[0]).not.toContain(TEMPLATE_KERNEL_PARAM);
    expect(cold.some((a) => a.includes('memory-backend'))).toBe(false);
    expect(valuesOf(cold, '-device').filter((d) => d.startsWith('pcie-root-port,'))).toHaveLength(3);
    expect(valuesOf(cold, '-device')).toContain('virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01');
  });

  it('has the 9p device only when asked for', () => {
    expect(valuesOf(cold, '-fsdev')).toHaveLength(1);
    const { sharedDir: _, ...noShare } = base;
    expect(argv(noShare)).not.toContain('-fsdev');
  });
});

describe('shellQuotePath', () => {
  it('single-quotes an absolute path, spaces and $ included', () => {
    expect(shellQuotePath('/run/tern/templates/k/state')).toBe("'/run/tern/templates/k/state'");
    expect(shellQuotePath('/a b/$x;rm -rf /')).toBe("'/a b/$x;rm -rf /'");
  });

  it.each(['state', './state', '', "/a'b", '/a\nb', '/a\0b'])('rejects %j', (p) => {
    expect(() => shellQuotePath(p)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});
