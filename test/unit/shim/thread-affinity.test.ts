// Real threads of this host: a child process's affinity is set with taskset and read back from /proc.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatCpuList } from '../../../src/shim/cpu-list';
import { onlineHostCpus, setThreadAffinity, threadAffinity } from '../../../src/shim/thread-affinity';

const tmp = mkdtempSync(join(tmpdir(), 'tern-affinity-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('thread affinity', () => {
  it("reads the host's online CPUs", () => {
    expect(onlineHostCpus()).toHaveLength(cpus().length);
    const f = join(tmp, 'online');
    writeFileSync(f, '0-2,4\n');
    expect(onlineHostCpus(f)).toEqual([0, 1, 2, 4]);
  });

  it('reads Cpus_allowed_list from a status file', () => {
    mkdirSync(join(tmp, '42'));
    writeFileSync(join(tmp, '42', 'status'), 'Name:\tqemu\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n');
    expect(threadAffinity(42, tmp)).toEqual([0, 1]);
  });

  it("sets a real thread's affinity with taskset, and says so when the thread is gone", async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pid = child.pid!;
      const all = onlineHostCpus();
      const last = all[all.length - 1]!;
      await setThreadAffinity(pid, [last]);
      expect(threadAffinity(pid)).toEqual([last]);
      await setThreadAffinity(pid, all);
      expect(formatCpuList(threadAffinity(pid))).toBe(formatCpuList(all));
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) => child.once('exit', r));
    await expect(setThreadAffinity(child.pid!, [0])).rejects.toThrow(/taskset -p -c 0/);
  });
});
