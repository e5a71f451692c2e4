// Pinned CPUs through CRI, as the kubelet's static CPU manager asks for them
// (cpuset_cpus at CreateContainer and UpdateContainerResources): the pod VM's
// vCPU threads on the host (QEMU names them "CPU <n>/TCG") are pinned to the
// container's host CPUs, follow an update (a hot-plugged vCPU's thread too),
// float again when the pinned container goes, and a bad cpuset fails naming
// its value with nothing changed. ctr 1.6 has neither `run --cpuset-cpus`
// nor `task update`, so CRI drives it. Written for any host with 2 or more CPUs.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BEST_EFFORT_RESOURCES, containerConfig, type CriClient, type PodSandboxConfig } from '../cri';
import { runCriPod, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

const HANDLER = 'tern';
const SCOPE_EXTRA = '/run/tern';

/** Host thread id -> Cpus_allowed_list of each vCPU thread of QEMU process `pid`. */
function vcpuThreads(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    if (!/^CPU \d+\/(TCG|KVM)$/.test(comm)) continue;
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
    out.set(Number(tid), /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)![1]!);
  }
  return out;
}

const hostOnline = readFileSync('/sys/devices/system/cpu/online', 'utf8').trim();

describe('pinned CPUs (cpuset) through CRI', () => {
  let outer: Snapshot;
  let env: CriEnv | undefined;
  let cri: CriClient;
  let image: string;
  let pod: PodSandboxConfig;
  let podId: string;
  let qemuPid: number;
  let pinnedId: string;
  const cgroupRoot = `tern-cpuset-${randomBytes(3).toString('hex')}`;

  const createPinned = async (name: string, cpusetCpus: string) => {
    mkdirSync(join(pod.log_directory!, name), { recursive: true });
    const config = containerConfig({ name, image, command: ['sleep', '3600'], pod, resources: { ...BEST_EFFORT_RESOURCES, cpuset_cpus: cpusetCpus } });
    return cri.createContainer(podId, config, pod);
  };
  const update = (id: string, cpusetCpus: string) => cri.updateContainerResources(id, { ...BEST_EFFORT_RESOURCES, cpuset_cpus: cpusetCpus });
  /** Waits until every vCPU thread (at least `count` of them) has affinity `list`; returns them. */
  const threadsAt = (list: string, count = 1) =>
    until(`${count} vCPU threads at ${list}`, 30_000, async () => {
      const t = vcpuThreads(qemuPid);
      return t.size >= count && [...t.values()].every((l) => l === list) ? t : undefined;
    });
  /** The CPUs the container's processes may run on, as the guest sees them. */
  const guestCpus = async (id: string) => {
    const r = await cri.execSync(id, ['cat', '/proc/self/status'], 30);
    return /^Cpus_allowed_list:\s*(\S+)$/m.exec(r.stdout.toString())?.[1];
  };
  const errorOf = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error('expected the call to fail');
  };

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    env = await startCriEnv({ runtimes: { [HANDLER]: 'io.containerd.tern.v2' }, extraPath: [join(repoRoot(), 'build', 'bin')], clientTimeoutMs: 120_000 });
    ({ cri, image } = env);
    ({ pod, podId, qemuPid } = await runCriPod(env, HANDLER, 'pinned', cgroupRoot));
  }, 300_000);

  afterAll(async () => {
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    expect(problems).toEqual([]);
    if (env) await expectNoLeaks(outer, { scope: [env.c.dir, SCOPE_EXTRA], timeoutMs: 20_000 });
  }, 180_000);

  it('a pod nobody pins keeps its vCPU threads floating on every host CPU', () => {
    const t = vcpuThreads(qemuPid);
    expect(t.size).toBeGreaterThanOrEqual(1);
    for (const l of t.values()) expect(l).toBe(hostOnline);
  });

  it('a container asking for cpuset "1" pins every vCPU thread to host CPU 1', async () => {
    pinnedId = await createPinned('pinned', '1');
    await cri.startContainer(pinnedId);
    const t = vcpuThreads(qemuPid);
    expect(t.size).toBeGreaterThanOrEqual(1);
    expect([...t.values()]).toEqual([...t.keys()].map(() => '1'));
    // One host CPU is one guest vCPU: the container's cgroup holds it to vCPU 0.
    expect(await guestCpus(pinnedId)).toBe('0');
  }, 180_000);

  it('an update to "0-1" hot-plugs a second vCPU and pins both threads to 0-1; back to "1", the hot-plugged thread is pinned too', async () => {
    await update(pinnedId, '0-1');
    const both = vcpuThreads(qemuPid);
    expect(both.size).toBe(2);
    expect([...both.values()]).toEqual(['0-1', '0-1']);
    const exec = await cri.execSync(pinnedId, ['nproc'], 30);
    expect(exec.stdout.toString().trim()).toBe('2');
    expect(await guestCpus(pinnedId)).toBe('0-1');
    await update(pinnedId, '1');
    expect([...(await threadsAt('1', 2)).values()]).toEqual(['1', '1']);
    expect(await guestCpus(pinnedId)).toBe('0');
    expect((await cri.execSync(pinnedId, ['nproc'], 30)).stdout.toString().trim()).toBe('1');
  }, 180_000);

  it('a bad cpuset fails naming its value, and changes nothing', async () => {
    expect(await errorOf(update(pinnedId, '7'))).toContain('cpu.cpus "7": host CPU 7 does not exist');
    expect(await errorOf(update(pinnedId, 'x-'))).toContain('cpu.cpus "x-": "x-" is not a CPU number or range');
    expect([...vcpuThreads(qemuPid).values()]).toEqual(['1', '1']);
    // containerd's CRI makes the task (the shim's Create) at StartContainer: that is where it fails
    const badId = await createPinned('bad', '7');
    expect(await errorOf(cri.startContainer(badId))).toContain('linux.resources.cpu.cpus "7": host CPU 7 does not exist');
    expect([...vcpuThreads(qemuPid).values()]).toEqual(['1', '1']);
    await cri.removeContainer(badId);
    expect((await cri.listContainers()).map((c) => c.metadata?.name)).not.toContain('bad');
    // the pinned container still runs
    expect((await cri.execSync(pinnedId, ['true'], 30)).exitCode).toBe(0);
  }, 180_000);

  it('removing the pinned container lets the threads float again; the pod runs on', async () => {
    await cri.stopContainer(pinnedId, 0);
    await cri.removeContainer(pinnedId);
    expect([...(await threadsAt(hostOnline, 2)).values()]).toEqual([hostOnline, hostOnline]);
    expect((await cri.podSandboxStatus(podId)).status?.state).toBe('SANDBOX_READY');
  }, 180_000);
});
