import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HostCgroup, hierarchies, parseProcCgroup } from '../../../src/shim/host-cgroup';

describe('host cgroup of a pod', () => {
  it('parses /proc/<pid>/cgroup for v1 and unified lines', () => {
    const m = parseProcCgroup('9:name=systemd:/\n4:memory:/a/b\n2:cpu,cpuacct:/x\n0::/u\n');
    expect(m.get('memory')).toBe('/a/b');
    expect(m.get('cpu')).toBe('/x');
    expect(m.get('cpuacct')).toBe('/x');
    expect(m.get('')).toBe('/u');
  });

  it('holds a real process in every hierarchy this host has, then is removed', async () => {
    const hs = hierarchies();
    expect(hs.length).toBeGreaterThan(0);
    const cg = new HostCgroup(`ut-${process.pid}`);
    cg.create();
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      cg.add(child.pid!);
      expect(cg.pids()).toEqual([child.pid]);
      const where = parseProcCgroup(readFileSync(`/proc/${child.pid}/cgroup`, 'utf8'));
      for (const h of hs) expect(where.get(h.key)).toMatch(new RegExp(`/tern/ut-${process.pid}$`));
      expect(cg.remove().length).toBeGreaterThan(0); // busy: refused, nothing forced
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    expect(cg.remove()).toEqual([]);
    for (const h of hs) expect(existsSync(join(h.mount, 'tern', `ut-${process.pid}`))).toBe(false);
  });
});

describe('leastCpu', () => {
  it('gives the group the smallest CPU share its hierarchy has (v2 cpu.weight 1, v1 cpu.shares 2), and names where it cannot', () => {
    const root = mkdtempSync(join(tmpdir(), 'tern-cg-'));
    try {
      const hs = [
        { mount: join(root, 'unified'), key: '' },
        { mount: join(root, 'cpu'), key: 'cpu' },
        { mount: join(root, 'memory'), key: 'memory' },
      ];
      const g = new HostCgroup('pool-0123456789ab', hs);
      expect(g.leastCpu()).toHaveLength(2); // not created yet: nothing to write into
      g.create();
      expect(g.leastCpu()).toEqual([]);
      expect(readFileSync(join(root, 'unified', 'tern', 'pool-0123456789ab', 'cpu.weight'), 'utf8')).toBe('1');
      expect(readFileSync(join(root, 'cpu', 'tern', 'pool-0123456789ab', 'cpu.shares'), 'utf8')).toBe('2');
      expect(existsSync(join(root, 'memory', 'tern', 'pool-0123456789ab', 'cpu.shares'))).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
