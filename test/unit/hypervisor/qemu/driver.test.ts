// QemuDriver, launchQemu and QemuVm against the real qemu-system-x86_64. The VM
// is started paused (-S) with no kernel, so no guest image is needed: QMP,
// block hot-plug, stop and crash cleanup are exercised for real.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TernError } from '../../../../src/common/errors.js';
import { createDriver } from '../../../../src/hypervisor/index.js';
import {
  accelArgs,
  agentChannelArgs,
  baseArgs,
  hotplugPortArgs,
  hotplugPortIds,
  machineArgs,
  pidFileArgs,
  qemuPaths,
  qmpArgs,
} from '../../../../src/hypervisor/qemu/cmdline.js';
import { QemuDriver } from '../../../../src/hypervisor/qemu/driver.js';
import { launchQemu } from '../../../../src/hypervisor/qemu/launch.js';
import { QmpError } from '../../../../src/hypervisor/qemu/qmp.js';
import type { QemuVm } from '../../../../src/hypervisor/qemu/vm.js';
import { procAlive } from '../../../../src/hypervisor/qemu/vm-state.js';

const QEMU = '/usr/bin/qemu-system-x86_64';

let runDir: string;
const vms: QemuVm[] = [];
const strayPids: number[] = [];
const children: ChildProcess[] = [];

function pausedArgs(dir: string, ports = 2): string[] {
  const p = qemuPaths(dir);
  return [
    ...machineArgs('q35'),
    ...accelArgs('tcg'),
    ...baseArgs(),
    '-S',
    ...qmpArgs(p.qmpSocket),
    ...agentChannelArgs(p.agentSocket),
    ...hotplugPortArgs(ports),
    ...pidFileArgs(p.pidFile),
  ];
}

async function launchPaused(ports = 2): Promise<QemuVm> {
  const vm = await launchQemu(pausedArgs(runDir, ports), runDir, {
    binary: QEMU,
    id: 'test',
    accel: 'tcg',
    hotplugPorts: hotplugPortIds(ports),
    unplugTimeoutMs: 500,
  });
  vms.push(vm);
  return vm;
}

/** Pids of processes whose command line mentions dir. */
function processesUsing(dir: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes(dir) && procAlive(Number(entry))) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

beforeEach(() => {
  runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-hv-'));
});

afterEach(async () => {
  for (const vm of vms.splice(0)) await vm.cleanup().catch(() => vm.waitExit());
  for (const pid of strayPids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
    }
  }
  expect(processesUsing(runDir)).toEqual([]);
  fs.rmSync(runDir, { recursive: true, force: true });
});

describe('launchQemu + QemuVm (real QEMU, paused, no guest)', () => {
  it('talks QMP, hot-plugs a raw disk, stops and leaves nothing behind', async () => {
    const vm = await launchPaused(2);
    expect(vm.pid).toBeGreaterThan(1);
    expect(fs.readFileSync(path.join(runDir, 'qemu.pid'), 'utf8').trim()).toBe(String(vm.pid));
    const state = JSON.parse(fs.readFileSync(path.join(runDir, 'vm.json'), 'utf8'));
    expect(state.pid).toBe(vm.pid);
    expect(state.files).toContain(path.join(runDir, 'qmp.sock'));

    expect(await vm.qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
    await vm.resume();
    expect(await vm.qmp.execute('query-status')).toMatchObject({ status: 'running', running: true });
    await vm.pause();
    expect(await vm.qmp.execute('query-status')).toMatchObject({ status: 'paused', running: false });

    // QMP errors carry QEMU's class and description.
    const err = await vm.qmp.execute('no-such-command').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect((err as QmpError).qmpClass).toBe('CommandNotFound');
    expect((err as QmpError).code).toBe('NotImplemented');

    const disk = path.join(runDir, 'disk.raw');
    expect(spawnSync('truncate', ['-s', '1M', disk]).status).toBe(0);
    await vm.attachBlock({ id: 'vol1', path: disk, readOnly: true, serial: 'tern-vol1' });
    expect(vm.freeHotplugPorts).toEqual(['tern-rp1']);
    const blocks = (await vm.qmp.execute('query-named-block-nodes')) as { 'node-name': string; ro: boolean; file: string }[];
    const node = blocks.find((b) => b['node-name'] === 'vol1-blk');
    expect(node).toMatchObject({ ro: true, file: disk });
    expect(await vm.qmp.execute('qom-get', { path: '/machine/peripheral/vol1', property: 'serial' })).toBe('tern-vol1');
    expect(await vm.qmp.execute('qom-get', { path: '/machine/peripheral/vol1', property: 'drive' })).toBe('vol1-blk');

    await expect(vm.attachBlock({ id: 'vol1', path: disk, readOnly: true, serial: 'x' })).rejects.toMatchObject({
      code: 'AlreadyExists',
    });
    await expect(vm.attachBlock({ id: 'vol2', path: path.join(runDir, 'absent.raw'), readOnly: true, serial: 'x' })).rejects.toMatchObject({
      code: 'FailedPrecondition',
    });
    await expect(vm.detachBlock('nope')).rejects.toMatchObject({ code: 'NotFound' });

    // No guest runs, so nobody answers the PCIe unplug request: detach must give up at
    // its deadline, keep the device tracked, and not resend device_del on a retry.
    const t0 = Date.now();
    await expect(vm.detachBlock('vol1')).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    expect(Date.now() - t0).toBeLessThan(5_000);
    await expect(vm.detachBlock('vol1')).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    expect(vm.freeHotplugPorts).toEqual(['tern-rp1']);
    expect(await vm.qmp.execute('qom-get', { path: '/machine/peripheral/vol1', property: 'serial' })).toBe('tern-vol1');

    const pid = vm.pid;
    await vm.stop();
    await vm.stop(); // idempotent
    const exit = await vm.waitExit();
    expect(exit.code).toBe(0);
    expect(procAlive(pid)).toBe(false);
    await vm.cleanup();
    await vm.cleanup();
    for (const f of ['qmp.sock', 'qemu.pid', 'vm.json', 'agent.sock']) {
      expect(fs.existsSync(path.join(runDir, f))).toBe(false);
    }
    await expect(vm.pause()).rejects.toMatchObject({ code: 'FailedPrecondition' });
  });

  it('runs out of hot-plug slots with ResourceExhausted', async () => {
    const vm = await launchPaused(1);
    const disk = path.join(runDir, 'a.raw');
    spawnSync('truncate', ['-s', '1M', disk]);
    await vm.attachBlock({ id: 'a', path: disk, readOnly: false, serial: 'a' });
    await expect(vm.attachBlock({ id: 'b', path: disk, readOnly: true, serial: 'b' })).rejects.toMatchObject({
      code: 'ResourceExhausted',
    });
  });

  it('connects to the agent channel socket', async () => {
    const vm = await launchPaused();
    const a = await vm.connectAgent();
    expect(a.writable).toBe(true);
    a.write('ping\n');
    a.destroy();
    // The chardev accepts a new connection after the first went away.
    const b = await vm.connectAgent();
    b.destroy();
  });

  it('stop falls back to SIGKILL when QEMU does not answer quit in time', async () => {
    const vm = await launchPaused();
    process.kill(vm.pid, 'SIGSTOP'); // frozen: QMP quit gets no answer
    const t0 = Date.now();
    await vm.stop(300);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect((await vm.waitExit()).signal).toBe('SIGKILL');
  });

  it('reports QEMU exiting at startup with its stderr', async () => {
    const err = await launchQemu([...pausedArgs(runDir), '-no-such-option'], runDir, { binary: QEMU }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TernError);
    expect((err as Error).message).toContain('exited during startup');
    expect((err as Error).message).toContain('-no-such-option');
    expect(fs.existsSync(path.join(runDir, 'vm.json'))).toBe(false);
    expect(fs.existsSync(path.join(runDir, 'qemu.pid'))).toBe(false);
  });

  it('a SIGKILLed QEMU resolves waitExit with the signal', async () => {
    const vm = await launchPaused();
    process.kill(vm.pid, 'SIGKILL');
    const exit = await vm.waitExit();
    expect(exit.signal).toBe('SIGKILL');
    await expect(vm.qmp.execute('query-status')).rejects.toMatchObject({ code: 'Unavailable' });
  });
});

describe('QemuDriver', () => {
  function spec(overrides: Partial<Parameters<QemuDriver['start']>[0]> = {}) {
    return {
      id: 'pod1',
      runDir,
      kernelPath: path.join(runDir, 'vmlinuz'),
      initrdPath: path.join(runDir, 'initrd'),
      guestImagePath: path.join(runDir, 'guest.img'),
      vcpus: 1,
      memoryMiB: 128,
      accel: 'tcg' as const,
      binary: QEMU,
      ...overrides,
    };
  }

  it('createDriver knows qemu and rejects unknown names', () => {
    expect(createDriver('qemu').name).toBe('qemu');
    expect(() => createDriver('firecracker')).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => createDriver('toString')).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
  });

  it('names the missing kernel with FailedPrecondition', async () => {
    const s = spec();
    fs.writeFileSync(s.initrdPath, '');
    fs.writeFileSync(s.guestImagePath, '');
    const err = await new QemuDriver().start(s).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'FailedPrecondition' });
    expect((err as Error).message).toContain(s.kernelPath);
  });

  it('refuses a clone without its copy-on-write guard, before QEMU runs', async () => {
    const s = spec();
    for (const f of [s.kernelPath, s.initrdPath, s.guestImagePath]) fs.writeFileSync(f, '');
    const memoryPath = path.join(runDir, 'memory');
    const statePath = path.join(runDir, 'state');
    fs.writeFileSync(memoryPath, '');
    fs.writeFileSync(statePath, '');
    const shared = fs.mkdtempSync(path.join(runDir, 'share-'));
    const clone = { ...s, sharedDir: shared, template: { role: 'clone' as const, memoryPath, statePath } };
    const err = await new QemuDriver().start(clone).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'FailedPrecondition' });
    expect((err as Error).message).toContain('copy-on-write guard');
    const missing = await new QemuDriver({ cowGuard: path.join(runDir, 'no-guard.so') }).start(clone).catch((e: unknown) => e);
    expect(missing).toMatchObject({ code: 'FailedPrecondition' });
    expect((missing as Error).message).toContain('no-guard.so');
  });

  it('names a missing qemu binary with FailedPrecondition', async () => {
    const s = spec({ binary: path.join(runDir, 'no-qemu') });
    const err = await new QemuDriver().start(s).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'FailedPrecondition' });
    expect((err as Error).message).toContain(s.binary);
  });

  it('reports QEMU refusing the kernel with its stderr, and cleans up', async () => {
    const s = spec();
    fs.writeFileSync(s.kernelPath, 'not a kernel\n'.repeat(100));
    fs.writeFileSync(s.initrdPath, 'x');
    spawnSync('truncate', ['-s', '1M', s.guestImagePath]);
    const logs: string[] = [];
    const logger = {
      info: (o: object, m: string) => logs.push(`${m} ${JSON.stringify(o)}`),
      warn: () => {},
      error: () => {},
      debug: () => {},
    };
    const err = await new QemuDriver({ logger }).start(s).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TernError);
    expect((err as Error).message).toMatch(/exited during startup \(exit code 1.*linux kernel too old to load a ram disk/s);
    expect(logs.some((l) => l.includes('tcg forced by configuration'))).toBe(true);
    expect(fs.existsSync(path.join(runDir, 'vm.json'))).toBe(false);
  });

  it('cleanupFromDisk kills a QEMU left running by a dead process', async () => {
    const p = qemuPaths(runDir);
    // -daemonize detaches it from us, like a VM whose shim died.
    // (-daemonize calls setsid, which QEMU's own seccomp filter denies: this stray runs without it.)
    const args = pausedArgs(runDir);
    args.splice(args.indexOf('-sandbox'), 2);
    const r = spawnSync(QEMU, [...args, '-daemonize'], { timeout: 10_000 });
    expect(r.status).toBe(0);
    const pid = Number(fs.readFileSync(p.pidFile, 'utf8').trim());
    strayPids.push(pid);
    expect(procAlive(pid)).toBe(true);

    await new QemuDriver().cleanupFromDisk(runDir);
    expect(procAlive(pid)).toBe(false);
    expect(fs.existsSync(p.pidFile)).toBe(false);
    expect(fs.existsSync(p.qmpSocket)).toBe(false);
  });

  it('cleanupFromDisk never kills an unrelated process that reused the pid', async () => {
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    children.push(sleeper);
    await new Promise((r) => sleeper.once('spawn', r));
    fs.writeFileSync(qemuPaths(runDir).pidFile, `${sleeper.pid}\n`);
    await new QemuDriver().cleanupFromDisk(runDir);
    await sleep(100);
    expect(procAlive(sleeper.pid!)).toBe(true);
    expect(fs.existsSync(qemuPaths(runDir).pidFile)).toBe(false);
  });

  it('cleanupFromDisk kills a VM started by the driver whose owner went away', async () => {
    const vm = await launchPaused();
    const pid = vm.pid;
    await new QemuDriver().cleanupFromDisk(runDir);
    await vm.waitExit();
    expect(procAlive(pid)).toBe(false);
    expect(fs.existsSync(path.join(runDir, 'vm.json'))).toBe(false);
  });
});
