// Container statistics from cgroup v2 files: exact values from known file
// contents in a scratch tree, and a real cgroup's cpu.stat on the host.
import { spawn } from 'node:child_process';
import { mkdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cpuStatFrom, parseFlatKeyed, parseSingleValue, readCgroupStats } from '../../../../src/agent/container/cgroup-stats.js';
import { makeCgroupRoot, tempDir } from './fixtures.js';

const scratch = tempDir('tern-cgstats-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const GiB = 1024 ** 3;

function plant(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [f, v] of Object.entries(files)) writeFileSync(path.join(dir, f), v);
}

// as a 6.1 kernel writes them
const CPU_STAT =
  'usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\ncore_sched.force_idle_usec 0\nnr_periods 40\nnr_throttled 3\nthrottled_usec 9000\nnr_bursts 0\nburst_usec 0\n';
const MEMORY_STAT = `${[
  'anon 1048576',
  'file 2097152',
  'kernel 900000',
  'kernel_stack 65536',
  'pagetables 40960',
  'sec_pagetables 0',
  'percpu 1200',
  'sock 4096',
  'vmalloc 0',
  'shmem 8192',
  'zswap 0',
  'zswapped 0',
  'file_mapped 12288',
  'file_dirty 16384',
  'file_writeback 20480',
  'swapcached 0',
  'anon_thp 0',
  'file_thp 0',
  'shmem_thp 0',
  'inactive_anon 524288',
  'active_anon 532480',
  'inactive_file 1572864',
  'active_file 524288',
  'unevictable 0',
  'slab_reclaimable 30000',
  'slab_unreclaimable 20000',
  'slab 50000',
  'workingset_refault_anon 0',
  'workingset_refault_file 5',
  'workingset_activate_anon 0',
  'workingset_activate_file 1',
  'workingset_restore_anon 0',
  'workingset_restore_file 0',
  'workingset_nodereclaim 0',
  'pgscan 10',
  'pgsteal 9',
  'pgscan_kswapd 0',
  'pgscan_direct 10',
  'pgsteal_kswapd 0',
  'pgsteal_direct 9',
  'pgfault 3000',
  'pgmajfault 12',
  'pgrefill 2',
  'pgactivate 8',
  'pgdeactivate 1',
  'pglazyfree 0',
  'pglazyfreed 0',
  'thp_fault_alloc 0',
  'thp_collapse_alloc 0',
].join('\n')}\n`;

describe('parsers', () => {
  it('reads flat-keyed files, skipping malformed and non-numeric lines', () => {
    const kv = parseFlatKeyed('a 1\nb two\n  c 3  \nd 4 5\n\n');
    expect([...kv]).toEqual([
      ['a', 1],
      ['c', 3],
    ]);
    expect(cpuStatFrom(CPU_STAT)).toEqual({ usage_usec: 123456, user_usec: 100000, system_usec: 23456, nr_periods: 40, nr_throttled: 3, throttled_usec: 9000 });
    expect(cpuStatFrom('usage_usec 5\n')).toEqual({ usage_usec: 5, user_usec: 0, system_usec: 0, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 });
  });
  it('reads single values: number, max, or undefined', () => {
    expect(parseSingleValue('4096\n')).toBe(4096);
    expect(parseSingleValue('max\n')).toBe('max');
    expect(parseSingleValue('')).toBeUndefined();
    expect(parseSingleValue(undefined)).toBeUndefined();
  });
});

describe('readCgroupStats on a scratch tree', () => {
  it('gives exact metrics from known file contents', async () => {
    const dir = path.join(scratch, 'full');
    plant(dir, {
      'cpu.stat': CPU_STAT,
      'memory.current': '3670016\n',
      'memory.max': '268435456\n',
      'memory.stat': MEMORY_STAT,
      'memory.events': 'low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n',
      'memory.swap.current': '0\n',
      'memory.swap.max': 'max\n',
      'pids.current': '4\n',
      'pids.max': '512\n',
    });
    const m = await readCgroupStats(dir, { guestMemoryBytes: 2 * GiB });
    expect(m.cpu).toEqual({ usage_usec: 123456, user_usec: 100000, system_usec: 23456, nr_periods: 40, nr_throttled: 3, throttled_usec: 9000 });
    expect(m.pids).toEqual({ current: 4, limit: 512 });
    expect(m.memory_events).toEqual({ low: 0, high: 2, max: 5, oom: 1, oom_kill: 1 });
    expect(m.memory).toEqual({
      anon: 1048576,
      file: 2097152,
      kernel_stack: 65536,
      slab: 50000,
      sock: 4096,
      shmem: 8192,
      file_mapped: 12288,
      file_dirty: 16384,
      file_writeback: 20480,
      anon_thp: 0,
      inactive_anon: 524288,
      active_anon: 532480,
      inactive_file: 1572864,
      active_file: 524288,
      unevictable: 0,
      slab_reclaimable: 30000,
      slab_unreclaimable: 20000,
      pgfault: 3000,
      pgmajfault: 12,
      // newer kernels split these into _anon/_file: the combined keys are absent, so 0
      workingset_refault: 0,
      workingset_activate: 0,
      workingset_nodereclaim: 0,
      pgrefill: 2,
      pgscan: 10,
      pgsteal: 9,
      pgactivate: 8,
      pgdeactivate: 1,
      pglazyfree: 0,
      pglazyfreed: 0,
      thp_fault_alloc: 0,
      thp_collapse_alloc: 0,
      usage: 3670016,
      usage_limit: 268435456,
      swap_usage: 0,
      swap_limit: 0,
    });
    expect(m.hugetlb).toEqual([]);
  });

  it('reports memory.max "max" as the guest total and pids.max "max" as 0', async () => {
    const dir = path.join(scratch, 'unlimited');
    plant(dir, { 'memory.current': '100\n', 'memory.max': 'max\n', 'memory.stat': 'anon 7\n', 'pids.current': '1\n', 'pids.max': 'max\n' });
    const m = await readCgroupStats(dir, { guestMemoryBytes: 2 * GiB });
    expect(m.memory?.usage_limit).toBe(2 * GiB);
    expect(m.memory?.anon).toBe(7);
    expect(m.pids).toEqual({ current: 1, limit: 0 });
    expect(m.cpu).toBeUndefined();
    expect(m.memory_events).toBeUndefined();
  });

  it('leaves out sections whose files are missing', async () => {
    const dir = path.join(scratch, 'empty');
    mkdirSync(dir);
    expect(await readCgroupStats(dir, { guestMemoryBytes: GiB })).toEqual({ hugetlb: [] });
  });
});

describe('readCgroupStats on the real cgroup v2 mount', () => {
  it('sees CPU time of a busy process in its cgroup', async () => {
    const { root, cleanup } = makeCgroupRoot(scratch);
    const dir = path.join(root, `stats-${process.pid}`);
    mkdirSync(dir);
    const child = spawn('sh', ['-c', 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'], { stdio: 'ignore' });
    const exited = new Promise((r) => child.on('exit', r));
    try {
      writeFileSync(path.join(dir, 'cgroup.procs'), String(child.pid));
      await exited;
      const m = await readCgroupStats(dir, { guestMemoryBytes: GiB });
      if (!root.startsWith('/sys/fs/cgroup')) return expect(m).toEqual({ hugetlb: [] });
      expect(m.cpu!.usage_usec).toBeGreaterThan(10_000);
      expect(m.cpu!.usage_usec).toBeGreaterThanOrEqual(m.cpu!.user_usec);
    } finally {
      child.kill('SIGKILL');
      rmdirSync(dir);
      cleanup();
    }
  });
});
