// The cgroup v2 freezer against the host's real cgroup2 mount (a busy process
// stops getting CPU time while frozen), and the error paths on scratch files.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { frozenFromEvents, hasFreezer, isFrozen, setFrozen } from '../../../../src/agent/container/cgroup-freezer.js';
import { makeCgroupRoot, tempDir } from './fixtures.js';

const scratch = tempDir('tern-frz-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
};

describe('frozenFromEvents', () => {
  it('reads the frozen line of cgroup.events', () => {
    expect(frozenFromEvents('populated 1\nfrozen 1\n')).toBe(true);
    expect(frozenFromEvents('populated 0\nfrozen 0\n')).toBe(false);
    expect(frozenFromEvents('populated 1\n')).toBeUndefined();
  });
});

describe('setFrozen on scratch files', () => {
  it('fails with FailedPrecondition where there is no cgroup.freeze', async () => {
    const dir = path.join(scratch, 'nofreezer');
    mkdirSync(dir);
    expect(await hasFreezer(dir)).toBe(false);
    await expect(setFrozen(dir, true, 100)).rejects.toMatchObject({ code: 'FailedPrecondition' });
  });

  it('gives up at the deadline with DeadlineExceeded and thaws again', async () => {
    const dir = path.join(scratch, 'stuck');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'cgroup.freeze'), '0');
    writeFileSync(path.join(dir, 'cgroup.events'), 'populated 1\nfrozen 0\n'); // never changes: nothing behind it
    const t0 = Date.now();
    await expect(setFrozen(dir, true, 150)).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(readFileSync(path.join(dir, 'cgroup.freeze'), 'utf8')).toBe('0');
  });
});

describe('setFrozen on the real cgroup v2 mount', () => {
  it('freezes a busy process (no CPU time, wchan in the signal trap) and thaws it', async () => {
    const { root, cleanup } = makeCgroupRoot(scratch);
    const dir = path.join(root, `frz-${process.pid}`);
    mkdirSync(dir);
    const child = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
    const exited = new Promise((r) => child.on('exit', r));
    try {
      writeFileSync(path.join(dir, 'cgroup.procs'), String(child.pid));
      // this test needs the kernel's freezer: the hybrid host here has it in cgroup2
      expect(existsSync(path.join(dir, 'cgroup.freeze'))).toBe(true);
      expect(await isFrozen(dir)).toBe(false);
      await setFrozen(dir, true, 5000);
      expect(await isFrozen(dir)).toBe(true);
      const a = cpuTicks(child.pid!);
      await sleep(300);
      expect(cpuTicks(child.pid!)).toBe(a);
      expect(readFileSync(`/proc/${child.pid}/wchan`, 'utf8')).toMatch(/signal|freez/);
      await setFrozen(dir, false, 5000);
      expect(await isFrozen(dir)).toBe(false);
      const b = cpuTicks(child.pid!);
      await sleep(300);
      expect(cpuTicks(child.pid!)).toBeGreaterThan(b);
    } finally {
      child.kill('SIGKILL');
      await exited;
      rmdirSync(dir);
      cleanup();
    }
  });
});
