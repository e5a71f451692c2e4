// Churn through CRI, as a kubelet drives it: 100 pods one after another, then
// 20 at once (each its own VM, network namespace, tap and CNI address), each
// running a container that prints its number, then stopped and removed. Afterwards no
// process, mount, interface, network namespace, cgroup, CNI result or file of
// tern is left. All traffic stays inside the network namespace the harness
// creates.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { cniResultsLeft, removeAllPods, removeCgroupTree, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { containerConfig, podConfig, type CriClient, type PodSandboxConfig } from '../cri';

const HANDLER = 'tern';
const SEQUENTIAL = 100;
const PARALLEL = 20;
const SCOPE_EXTRA = '/run/tern';

describe('CRI churn on tern', () => {
  let outer: Snapshot;
  let c: Containerd | undefined;
  let cri: CriClient;
  let image: string;
  let work: string;
  let env: CriEnv | undefined;
  const cgroupRoot = `tern-churn-${randomBytes(3).toString('hex')}`;

  const newPod = (name: string): PodSandboxConfig => {
    const uid = randomUUID();
    const logDirectory = join(work, 'pods', `tern-churn_${name}_${uid}`);
    mkdirSync(logDirectory, { recursive: true });
    return podConfig({ name, namespace: 'tern-churn', uid, logDirectory, hostname: name, cgroupParent: `/${cgroupRoot}/pod${uid}` });
  };

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    env = await startCriEnv({ runtimes: { [HANDLER]: 'io.containerd.tern.v2' }, extraPath: [join(repoRoot(), 'build', 'bin')], clientTimeoutMs: 400_000 });
    ({ work, c, cri, image } = env);
  });
  afterAll(async () => {
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    expect(problems).toEqual([]);
    if (c) await expectNoLeaks(outer, { scope: [c.dir, SCOPE_EXTRA], timeoutMs: 20_000 });
  });

  /** One pod's whole life: run, create, start, exit 0 with its line in the log, stop, remove. */
  const podLife = async (name: string, line: string): Promise<void> => {
    const pod = newPod(name);
    const podId = await cri.runPodSandbox(pod, HANDLER);
    mkdirSync(join(pod.log_directory!, 'main'), { recursive: true });
    const id = await cri.createContainer(podId, containerConfig({ name: 'main', image, command: ['sh', '-c', `echo ${line}`], pod }), pod);
    await cri.startContainer(id);
    const status = await until(`container of pod ${name} exited`, 300_000, async () => {
      const s = (await cri.containerStatus(id)).status;
      return s?.state === 'CONTAINER_EXITED' ? s : undefined;
    });
    expect(status.exit_code, name).toBe(0);
    const log = readFileSync(status.log_path, 'utf8');
    expect(log, name).toMatch(new RegExp(`^\\S+ stdout F ${line}$`, 'm'));
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
  };

  /** Nothing of the pods is left: no sandbox in CRI, no cgroup, process, mount, interface, file or CNI result. */
  const expectAllGone = async (before: Snapshot): Promise<void> => {
    expect(await cri.listPodSandbox()).toEqual([]);
    await removeAllPods(cri);
    expect(removeCgroupTree(cgroupRoot)).toEqual([]);
    await expectNoLeaks(before, { scope: [c!.dir, SCOPE_EXTRA], timeoutMs: 30_000 });
    expect(cniResultsLeft()).toEqual([]);
  };

  it(
    `${SEQUENTIAL} pods one after another: each container prints its number; stop and remove leave nothing`,
    async () => {
      const before = await snapshot({ scope: [c!.dir, SCOPE_EXTRA] });
      for (let i = 0; i < SEQUENTIAL; i++) await podLife(`seq-${i}`, `seq-${i}`);
      await expectAllGone(before);
    },
    SEQUENTIAL * 60_000,
  );

  it(`${PARALLEL} pods at once: each container prints its number; stop and remove leave nothing`, async () => {
    const before = await snapshot({ scope: [c!.dir, SCOPE_EXTRA] });
    await Promise.all(Array.from({ length: PARALLEL }, (_, i) => podLife(`churn-${i}`, `pod-${i}`)));
    await expectAllGone(before);
  }, 900_000);
});
