// QmpClient against a real QEMU (paused, no guest): in-flight commands, events,
// waitEvent deadlines and cancellation, the single-client rule, socket close.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { accelArgs, baseArgs, machineArgs, pidFileArgs, qemuPaths, qmpArgs } from '../../../../src/hypervisor/qemu/cmdline.js';
import { launchQemu } from '../../../../src/hypervisor/qemu/launch.js';
import { QmpClient } from '../../../../src/hypervisor/qemu/qmp.js';
import type { QemuVm } from '../../../../src/hypervisor/qemu/vm.js';

let runDir: string;
let vm: QemuVm;

beforeEach(async () => {
  runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-qmp-'));
  const p = qemuPaths(runDir);
  vm = await launchQemu([...machineArgs('q35'), ...accelArgs('tcg'), ...baseArgs(), '-S', ...qmpArgs(p.qmpSocket), ...pidFileArgs(p.pidFile)], runDir, {
    binary: '/usr/bin/qemu-system-x86_64',
    id: 'qmp-test',
  });
});

afterEach(async () => {
  await vm.cleanup();
  fs.rmSync(runDir, { recursive: true, force: true });
});

describe('QmpClient', () => {
  it('answers many commands in flight, each with its own reply', async () => {
    const [status, version, commands, name] = await Promise.all([
      vm.qmp.execute('query-status'),
      vm.qmp.execute('query-version'),
      vm.qmp.execute('query-commands'),
      vm.qmp.execute('query-name'),
    ]);
    expect(status).toMatchObject({ status: 'prelaunch' });
    expect(version).toMatchObject({ qemu: { major: expect.any(Number) } });
    expect((commands as { name: string }[]).map((c) => c.name)).toContain('device_add');
    expect(name).toEqual({});
  });

  it('emits events and waitEvent resolves with their data', async () => {
    const seen: string[] = [];
    vm.qmp.on('event', (name) => seen.push(name));
    const resumed = vm.qmp.waitEvent('RESUME', 5_000);
    await vm.resume();
    await resumed;
    const stopped = vm.qmp.waitEvent('STOP', 5_000);
    await vm.pause();
    await stopped;
    expect(seen).toEqual(['RESUME', 'STOP']);
  });

  it('waitEvent honours its deadline, its matcher and cancellation', async () => {
    await expect(vm.qmp.waitEvent('DEVICE_DELETED', 100)).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    const ac = new AbortController();
    const waiting = vm.qmp.waitEvent('RESUME', 5_000, (d) => d !== undefined, ac.signal);
    await vm.resume(); // RESUME has no data: the matcher refuses it
    ac.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'Canceled' });
  });

  it('a second client gets no greeting while the first is connected', async () => {
    await expect(QmpClient.connect(qemuPaths(runDir).qmpSocket, 300)).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    // The first connection is unaffected.
    expect(await vm.qmp.execute('query-status')).toMatchObject({ running: false });
  });

  it('rejects pending commands and waiters with Unavailable when QEMU goes away', async () => {
    const waiter = vm.qmp.waitEvent('NEVER', 10_000);
    const closed = new Promise<void>((r) => vm.qmp.once('close', () => r()));
    process.kill(vm.pid, 'SIGKILL');
    await expect(waiter).rejects.toMatchObject({ code: 'Unavailable' });
    await closed;
    expect(vm.qmp.closed).toBe(true);
    await expect(vm.qmp.execute('query-status')).rejects.toMatchObject({ code: 'Unavailable' });
  });

  it('connect to a missing socket fails with Unavailable', async () => {
    await expect(QmpClient.connect(path.join(runDir, 'none.sock'), 1_000)).rejects.toMatchObject({ code: 'Unavailable' });
  });
});
