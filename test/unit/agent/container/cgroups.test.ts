// Cgroup v2 handling: limit conversion, controller enabling on a scratch
// hierarchy, and a real cgroup with a real process (kill, wait, rmdir).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cgroup, cpuWeightFromShares, limitFiles, ownCgroupDir } from '../../../../src/agent/container/cgroups.js';
import { makeCgroupRoot, tempDir } from './fixtures.js';

const scratch = tempDir('tern-cg-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('limit conversion', () => {
  it('converts shares to weight like runc', () => {
    expect(cpuWeightFromShares(2)).toBe(1);
    expect(cpuWeightFromShares(1024)).toBe(39);
    expect(cpuWeightFromShares(262144)).toBe(10000);
  });
  it('writes cpu.max as "quota period" or "max period"', () => {
    expect(limitFiles({ memoryMax: 1048576, cpuQuota: 50000, cpuPeriod: 100000, cpuShares: 512, pidsMax: 20 })).toEqual({
      'memory.max': '1048576',
      'cpu.max': '50000 100000',
      'cpu.weight': '20',
      'pids.max': '20',
    });
    expect(limitFiles({ cpuPeriod: 200000 })).toEqual({ 'cpu.max': 'max 200000' });
    expect(limitFiles({ cpuQuota: -1 })).toEqual({ 'cpu.max': 'max 100000' });
  });
});

describe('Cgroup on a scratch hierarchy', () => {
  it('enables available controllers only and writes the limits', async () => {
    const root = path.join(scratch, 'fake');
    mkdirSync(root);
    writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory\n');
    const warnings: string[] = [];
    const log = { warn: (_o: object, m: string) => void warnings.push(m), debug: () => undefined };
    const cg = await Cgroup.create(root, 'c1', { memoryMax: 4096, cpuQuota: 1000, pidsMax: 5 }, log);
    expect(cg.path).toBe(path.join(root, 'tern', 'c1'));
    expect(readFileSync(path.join(cg.path, 'memory.max'), 'utf8')).toBe('4096');
    expect(readFileSync(path.join(cg.path, 'cpu.max'), 'utf8')).toBe('1000 100000');
    expect(existsSync(path.join(cg.path, 'pids.max'))).toBe(false);
    expect(warnings).toEqual(['cgroup controller pids not available; limit not applied']);
    expect(await cg.pids()).toEqual([]);
    await cg.remove();
    expect(existsSync(cg.path)).toBe(false);
  });
});

describe('Cgroup cpuset (enabled only for a pinned container)', () => {
  const scratchRoot = (name: string) => {
    const root = path.join(scratch, name);
    mkdirSync(root);
    writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    return root;
  };
  const enabledIn = (root: string) => readFileSync(path.join(root, 'tern', 'cgroup.subtree_control'), 'utf8');

  it('an unpinned container does not turn the cpuset controller on', async () => {
    const root = scratchRoot('unpinned');
    const cg = await Cgroup.create(root, 'c1', { pidsMax: 5 });
    expect([...cg.controllers].sort()).toEqual(['cpu', 'memory', 'pids']);
    expect(enabledIn(root)).toBe('+pids');
    await cg.remove();
  });

  it("controllers already on for tern's children (a clone inherits them) are not written again", async () => {
    const root = path.join(scratch, 'inherited');
    mkdirSync(path.join(root, 'tern'), { recursive: true });
    writeFileSync(path.join(root, 'tern', 'cgroup.subtree_control'), 'cpu memory pids\n');
    const cg = await Cgroup.create(root, 'c1', { pidsMax: 5 });
    expect([...cg.controllers].sort()).toEqual(['cpu', 'memory', 'pids']);
    expect(existsSync(path.join(root, 'cgroup.subtree_control'))).toBe(false);
    expect(enabledIn(root)).toBe('cpu memory pids\n');
    expect(readFileSync(path.join(cg.path, 'pids.max'), 'utf8')).toBe('5');
    await cg.remove();
  });

  it('a pinned container turns it on and gets its cpuset.cpus', async () => {
    const root = scratchRoot('pinned');
    const cg = await Cgroup.create(root, 'c1', { cpusetCpus: '0' });
    expect(cg.controllers.has('cpuset')).toBe(true);
    expect(enabledIn(root)).toBe('+cpuset');
    expect(readFileSync(path.join(cg.path, 'cpuset.cpus'), 'utf8')).toBe('0');
    await cg.remove();
  });

  it('an update that pins a container made unpinned turns it on first', async () => {
    const root = scratchRoot('later');
    const cg = await Cgroup.create(root, 'c1', {});
    expect(cg.controllers.has('cpuset')).toBe(false);
    expect(await cg.writeLimits({ 'cpuset.cpus': '0-1' })).toEqual([]);
    expect(cg.controllers.has('cpuset')).toBe(true);
    expect(readFileSync(path.join(cg.path, 'cpuset.cpus'), 'utf8')).toBe('0-1');
    await cg.remove();
  });
});

describe('Cgroup on the real cgroup v2 mount', () => {
  it('lists, kills and removes a process tree', async () => {
    const { root, cleanup } = makeCgroupRoot(scratch);
    try {
      const cg = await Cgroup.create(root, `t${process.pid}`, {});
      const child = spawn('sleep', ['100'], { stdio: 'ignore' });
      const exited = new Promise((r) => child.on('exit', (_c, s) => r(s)));
      writeFileSync(path.join(cg.path, 'cgroup.procs'), String(child.pid));
      expect(await cg.pids()).toEqual(root.startsWith('/sys/fs/cgroup') ? [child.pid] : []);
      if (!root.startsWith('/sys/fs/cgroup')) child.kill('SIGKILL');
      await cg.remove();
      expect(await exited).toBe('SIGKILL');
      expect(existsSync(cg.path)).toBe(false);
      if (root.startsWith('/sys/fs/cgroup')) expect(await ownCgroupDir(root)).toMatch(/^\/sys\/fs\/cgroup/);
    } finally {
      cleanup();
    }
  });
});
