// Task Update in the guest: which cgroup v2 files get which values, what is
// refused (memory above the guest total) and that a refusal writes nothing.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseResourcesJson, updateFiles } from '../../../../src/agent/container/cgroup-update.js';
import { Cgroup } from '../../../../src/agent/container/cgroups.js';
import { TernError } from '../../../../src/common/errors.js';
import { tempDir } from './fixtures.js';

const scratch = tempDir('tern-cgupd-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const GiB = 1024 ** 3;
const ctx = { guestMemoryBytes: 2 * GiB };

describe('updateFiles', () => {
  it('maps memory, cpu and pids limits to memory.max, cpu.weight, cpu.max and pids.max', () => {
    const plan = updateFiles({ memory: { limit: 256 * 1024 * 1024 }, cpu: { shares: 1024, quota: 50000, period: 100000 }, pids: { limit: 64 } }, ctx);
    expect(plan.files).toEqual({ 'memory.max': '268435456', 'cpu.weight': '39', 'cpu.max': '50000 100000', 'pids.max': '64' });
    expect(plan.warnings).toEqual([]);
  });

  it('-1 means unlimited; 0 and absent leave the value alone', () => {
    expect(updateFiles({ memory: { limit: -1 }, cpu: { quota: -1 }, pids: { limit: -1 } }, { ...ctx, currentCpuMax: '20000 50000\n' }).files).toEqual({
      'memory.max': 'max',
      'cpu.max': 'max 50000',
      'pids.max': 'max',
    });
    expect(updateFiles({ memory: { limit: 0 }, cpu: { shares: 0, quota: 0 }, pids: { limit: 0 } }, ctx).files).toEqual({});
    expect(updateFiles({}, ctx).files).toEqual({});
  });

  it('keeps the current quota when only the period changes, and the current period when only the quota does', () => {
    expect(updateFiles({ cpu: { period: 250000 } }, { ...ctx, currentCpuMax: '30000 100000\n' }).files).toEqual({ 'cpu.max': '30000 250000' });
    expect(updateFiles({ cpu: { quota: 10000 } }, { ...ctx, currentCpuMax: 'max 200000\n' }).files).toEqual({ 'cpu.max': '10000 200000' });
    expect(updateFiles({ cpu: { quota: 10000 } }, ctx).files).toEqual({ 'cpu.max': '10000 100000' });
  });

  it('refuses a memory limit above the guest total with ResourceExhausted naming both values', () => {
    let err: unknown;
    try {
      updateFiles({ memory: { limit: 3 * GiB }, pids: { limit: 5 } }, ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('ResourceExhausted');
    expect((err as Error).message).toBe(`memory limit ${3 * GiB} bytes exceeds the guest's total memory of ${2 * GiB} bytes`);
    // exactly the guest total is allowed
    expect(updateFiles({ memory: { limit: 2 * GiB } }, ctx).files).toEqual({ 'memory.max': String(2 * GiB) });
  });

  it('rejects non-integers and unsupported fields with InvalidArgument; warns about ignored ones', () => {
    expect(() => updateFiles({ memory: { limit: 1.5 } }, ctx)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => updateFiles({ cpu: { shares: 'x' as unknown as number } }, ctx)).toThrow(/cpu.shares: "x" is not an integer/);
    expect(() => updateFiles({ unified: { 'memory.high': '1' } }, ctx)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => updateFiles({ memory: { disableOOMKiller: true } }, ctx)).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(updateFiles({ cpu: { mems: '0' }, blockIO: {}, memory: { reservation: 5 } }, ctx).warnings).toEqual([
      'memory.reservation: ignored',
      'cpu.mems: ignored (the guest has one memory node)',
      'blockIO: ignored',
    ]);
  });

  it('pins to the guest CPUs named, and unpins with "" (written as a newline: the parent\'s CPUs)', () => {
    expect(updateFiles({ cpu: { cpus: '0-1' } }, ctx).files).toEqual({ 'cpuset.cpus': '0-1' });
    expect(updateFiles({ cpu: { cpus: '' } }, ctx).files).toEqual({ 'cpuset.cpus': '\n' });
    expect(updateFiles({ cpu: { shares: 1024 } }, ctx).files).not.toHaveProperty('cpuset.cpus');
  });

  it('parses the JSON containerd sends (and refuses what is not an object)', () => {
    const json = JSON.stringify({
      devices: [{ allow: false, access: 'rwm' }],
      memory: { limit: 1048576, swap: 1048576 },
      cpu: { shares: 2, quota: 20000, period: 100000 },
    });
    expect(updateFiles(parseResourcesJson(json), ctx).files).toEqual({ 'memory.max': '1048576', 'cpu.weight': '1', 'cpu.max': '20000 100000' });
    expect(() => parseResourcesJson('{')).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
    expect(() => parseResourcesJson('null')).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
  });
});

describe('Cgroup.writeLimits on a scratch hierarchy', () => {
  it('writes exactly the planned files of enabled controllers and names the skipped ones', async () => {
    const root = path.join(scratch, 'root');
    mkdirSync(root);
    writeFileSync(path.join(root, 'cgroup.controllers'), 'cpu memory\n');
    const cg = await Cgroup.create(root, 'u1', {});
    expect([...cg.controllers].sort()).toEqual(['cpu', 'memory']);
    const before = readdirSync(cg.path);
    const { files } = updateFiles({ memory: { limit: 64 * 1024 * 1024 }, cpu: { shares: 512, quota: 25000 }, pids: { limit: 10 } }, ctx);
    const warnings = await cg.writeLimits(files);
    expect(warnings).toEqual(['cgroup controller pids not available; pids.max=10 not applied']);
    expect(
      readdirSync(cg.path)
        .filter((f) => !before.includes(f))
        .sort(),
    ).toEqual(['cpu.max', 'cpu.weight', 'memory.max']);
    expect(readFileSync(path.join(cg.path, 'memory.max'), 'utf8')).toBe('67108864');
    expect(readFileSync(path.join(cg.path, 'cpu.weight'), 'utf8')).toBe('20');
    expect(readFileSync(path.join(cg.path, 'cpu.max'), 'utf8')).toBe('25000 100000');
    await cg.remove();
  });
});
