// ContainerManager's cgroup operations with the real launcher: pause/resume on
// the host's real cgroup2 freezer, signals to every process of a container,
// stats; and on a scratch cgroup tree (no memory/cpu/pids controllers on this
// host): update writes, stats from known files, OOM events.
import { readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isFrozen } from '../../../../src/agent/container/cgroup-freezer.js';
import { ContainerManager } from '../../../../src/agent/container/manager.js';
import { buildBusyboxRootfs, buildLauncher, defaultSpec, makeCgroupRoot, tempDir } from './fixtures.js';

const GiB = 1024 ** 3;
let scratch: string;
let launcher: string;
let lower: string;
let realCg: { root: string; cleanup: () => void };
let fakeRoot: string;
let real: ContainerManager;
let fake: ContainerManager;
let seq = 0;
const created: [ContainerManager, string][] = [];

beforeAll(() => {
  scratch = tempDir('tern-mgrcg-');
  launcher = buildLauncher(scratch);
  lower = buildBusyboxRootfs(path.join(scratch, 'lower'));
  realCg = makeCgroupRoot(scratch);
  fakeRoot = path.join(scratch, 'fake-cgroup');
  mkdirSync(fakeRoot);
  writeFileSync(path.join(fakeRoot, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids\n');
  const resolveLayer = async () => ({ path: lower, release: async () => undefined });
  real = new ContainerManager({ runDir: path.join(scratch, 'run-real'), cgroupRoot: realCg.root, launcherPath: launcher, resolveLayer });
  fake = new ContainerManager({
    runDir: path.join(scratch, 'run-fake'),
    cgroupRoot: fakeRoot,
    launcherPath: launcher,
    resolveLayer,
    guestMemoryBytes: () => GiB,
    oomPollIntervalMs: 50,
  });
});

afterEach(async () => {
  for (const [m, id] of created.splice(0)) await m.removeContainer(id).catch(() => undefined);
});

afterAll(async () => {
  await real?.shutdown();
  await fake?.shutdown();
  realCg?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const io = { terminal: false, stdin: false, stdout: true, stderr: true };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cpuTicks = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(f[11]) + Number(f[12]);
};

async function start(m: ContainerManager, args: string[]): Promise<{ id: string; pid: number }> {
  const id = `cg${process.pid}-${++seq}`;
  created.push([m, id]);
  const { pid } = await m.createContainer({ containerId: id, spec: defaultSpec(args), layers: [{ serial: 'l', fs_type: 'erofs' }], ...io });
  await m.startContainer(id);
  return { id, pid };
}

describe('pause and resume with the real freezer', () => {
  it('freezes init and execs, refuses exec while paused, thaws them again', async () => {
    const { id, pid } = await start(real, ['sh', '-c', 'while :; do :; done']);
    const ex = await real.execProcess(id, 'e1', { args: ['sh', '-c', 'while :; do :; done'], env: ['PATH=/bin'] }, io);
    const cgdir = path.join(realCg.root, 'tern', id);
    await real.pauseContainer(id);
    expect(real.isPaused(id)).toBe(true);
    expect(await isFrozen(cgdir)).toBe(true);
    const [a, b] = [cpuTicks(pid), cpuTicks(ex.pid)];
    await sleep(300);
    expect([cpuTicks(pid), cpuTicks(ex.pid)]).toEqual([a, b]);
    await expect(real.execProcess(id, 'e2', { args: ['true'] }, io)).rejects.toMatchObject({ code: 'FailedPrecondition' });
    await expect(real.pauseContainer(id)).rejects.toMatchObject({ code: 'FailedPrecondition' });

    await real.resumeContainer(id);
    expect(await isFrozen(cgdir)).toBe(false);
    const [c, d] = [cpuTicks(pid), cpuTicks(ex.pid)];
    await sleep(300);
    expect(cpuTicks(pid)).toBeGreaterThan(c);
    expect(cpuTicks(ex.pid)).toBeGreaterThan(d);
    await expect(real.resumeContainer(id)).rejects.toMatchObject({ code: 'FailedPrecondition' });

    await real.signalProcess(id, '', 9, true);
    expect((await real.waitProcess(id, '')).exitStatus).toBe(137);
    expect((await real.waitProcess(id, 'e1')).exitStatus).toBe(137);
  });

  it('refuses to pause a container that is not running', async () => {
    const id = `cg${process.pid}-${++seq}`;
    created.push([real, id]);
    await real.createContainer({ containerId: id, spec: defaultSpec(['true']), layers: [{ serial: 'l', fs_type: 'erofs' }], ...io });
    await expect(real.pauseContainer(id)).rejects.toMatchObject({ code: 'FailedPrecondition' });
    await expect(real.pauseContainer('nope')).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('SIGKILL with all=true reaches a paused container; remove works after', async () => {
    const { id } = await start(real, ['sleep', '100']);
    await real.pauseContainer(id);
    await real.signalProcess(id, '', 9, true);
    expect((await real.waitProcess(id, '')).exitStatus).toBe(137);
    await real.removeContainer(id);
    expect(readdirSync(path.join(realCg.root, 'tern'))).not.toContain(id);
  });
});

describe('signals with all=true', () => {
  it('deliver a non-KILL signal to every process in the container cgroup, execs included', async () => {
    const { id } = await start(real, ['sh', '-c', 'trap "exit 3" TERM; echo ready; while :; do sleep 0.05; done']);
    expect((await real.readStream(id, '', 'stdout', 100)).data.toString()).toBe('ready\n');
    await real.execProcess(id, 'e1', { args: ['sleep', '100'], env: ['PATH=/bin'] }, io);
    await real.signalProcess(id, '', 15, true);
    expect((await real.waitProcess(id, 'e1')).exitStatus).toBe(143);
    expect((await real.waitProcess(id, '')).exitStatus).toBe(3);
    expect(await isFrozen(path.join(realCg.root, 'tern', id))).toBe(false);
    await expect(real.signalProcess(id, '', 9, true)).rejects.toMatchObject({ code: 'NotFound' });
  });
});

describe('stats', () => {
  it('reports the CPU time of the container from its real cgroup', async () => {
    const { id } = await start(real, ['sh', '-c', 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done']);
    expect((await real.waitProcess(id, '')).exitStatus).toBe(0);
    const m = await real.statsContainer(id);
    expect(m.cpu!.usage_usec).toBeGreaterThan(10_000);
    expect(m.cpu!.user_usec + m.cpu!.system_usec).toBeLessThanOrEqual(m.cpu!.usage_usec + 1000);
  });

  it('reports exact values from the container cgroup files (scratch tree)', async () => {
    const { id } = await start(fake, ['sleep', '100']);
    const dir = path.join(fakeRoot, 'tern', id);
    writeFileSync(path.join(dir, 'cpu.stat'), 'usage_usec 900\nuser_usec 600\nsystem_usec 300\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n');
    writeFileSync(path.join(dir, 'memory.current'), '5000000\n');
    writeFileSync(path.join(dir, 'memory.max'), 'max\n');
    writeFileSync(path.join(dir, 'memory.stat'), 'anon 3000000\nfile 1000000\ninactive_file 800000\npgfault 10\npgmajfault 1\n');
    writeFileSync(path.join(dir, 'pids.current'), '1\n');
    writeFileSync(path.join(dir, 'pids.max'), '50\n');
    const m = await fake.statsContainer(id);
    expect(m.cpu).toEqual({ usage_usec: 900, user_usec: 600, system_usec: 300, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 });
    expect(m.memory).toMatchObject({ usage: 5000000, usage_limit: GiB, anon: 3000000, file: 1000000, inactive_file: 800000, pgfault: 10, pgmajfault: 1 });
    expect(m.pids).toEqual({ current: 1, limit: 50 });
    await fake.signalProcess(id, '', 9, true);
    expect((await fake.waitProcess(id, '')).exitStatus).toBe(137);
  });
});

describe('pressure', () => {
  it("reads a container cgroup's PSI files (missing and malformed ones absent) and the guest's /proc/pressure, only for containers it has", async () => {
    const { id } = await start(fake, ['sleep', '100']);
    const dir = path.join(fakeRoot, 'tern', id);
    writeFileSync(path.join(dir, 'cpu.pressure'), 'some avg10=12.50 avg60=3.01 avg300=0.70 total=4200000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=17\n');
    writeFileSync(path.join(dir, 'memory.pressure'), 'some avg10=oops\n');
    const r = await fake.statsPressure([id, 'not-here']);
    expect(r.containers).toEqual([
      {
        container_id: id,
        pressure: {
          cpu: { some: { avg10: 12.5, avg60: 3.01, avg300: 0.7, total_usec: 4200000 }, full: { avg10: 0, avg60: 0, avg300: 0, total_usec: 17 } },
          memory: null,
          io: null,
        },
      },
    ]);
    // The manager's default is the kernel's own /proc/pressure (this host has PSI).
    for (const res of ['cpu', 'memory', 'io'] as const) {
      expect(r.guest[res]?.some?.total_usec, res).toBeGreaterThanOrEqual(0);
      expect(r.guest[res]?.full, res).not.toBeNull();
    }
    await fake.signalProcess(id, '', 9, true);
    await fake.waitProcess(id, '');
  });
});

describe('update', () => {
  it('writes memory.max, cpu.max, cpu.weight and pids.max; refuses memory above the guest total', async () => {
    const { id } = await start(fake, ['sleep', '100']);
    const dir = path.join(fakeRoot, 'tern', id);
    const read = (f: string) => readFileSync(path.join(dir, f), 'utf8');
    const r = await fake.updateContainer(id, {
      memory: { limit: 128 * 1024 * 1024 },
      cpu: { shares: 2048, quota: 150000, period: 100000 },
      pids: { limit: 32 },
    });
    expect(r.files).toEqual({ 'memory.max': '134217728', 'cpu.weight': '79', 'cpu.max': '150000 100000', 'pids.max': '32' });
    expect(r.warnings).toEqual([]);
    expect([read('memory.max'), read('cpu.weight'), read('cpu.max'), read('pids.max')]).toEqual(['134217728', '79', '150000 100000', '32']);

    // only the period: the quota written before is kept
    await fake.updateContainer(id, { cpu: { period: 50000 } });
    expect(read('cpu.max')).toBe('150000 50000');

    const err = await fake.updateContainer(id, { memory: { limit: 2 * GiB }, pids: { limit: 99 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ResourceExhausted', message: `memory limit ${2 * GiB} bytes exceeds the guest's total memory of ${GiB} bytes` });
    expect([read('memory.max'), read('pids.max')]).toEqual(['134217728', '32']);
    await expect(fake.updateContainer('nope', {})).rejects.toMatchObject({ code: 'NotFound' });
    await fake.signalProcess(id, '', 9, true);
    await fake.waitProcess(id, '');
  });
});

describe('OOM events', () => {
  it('GetOOMEvent answers when the container cgroup oom_kill count goes up; the killed init reports 137', async () => {
    const { id } = await start(fake, ['sleep', '100']);
    const events = path.join(fakeRoot, 'tern', id, 'memory.events');
    const next = fake.getOomEvent();
    writeFileSync(events, 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n');
    await sleep(200);
    // what the kernel's OOM killer does: count the kill and SIGKILL the process
    writeFileSync(events, 'low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n');
    await fake.signalProcess(id, '', 9, false);
    expect(await next).toBe(id);
    expect((await fake.waitProcess(id, '')).exitStatus).toBe(137);
  });
});
