// Kubernetes pods on tern through containerd's CRI: one VM per pod holding
// several containers, pod networking through the pod's CNI namespace (tap +
// tc redirect), exec, logs and stats. Everything runs inside a network
// namespace this test creates (containerd, the CNI bridge, the pods); no
// packet goes to any address outside it.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import type { Netns } from './harness/netns.js';
import { repoRoot } from './harness/paths.js';
import { run as run_ } from './harness/run.js';
import { cniResultsLeft, removeAllPods, removeCgroupTree, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { containerConfig, podConfig, type ContainerState, type CriClient, type Mount, type PodSandboxConfig } from '../cri';

const HANDLER = 'tern';
const IN_SUBNET = /^10\.88\.77\.(\d+)$/;
const SCOPE_EXTRA = '/run/tern';

describe('Kubernetes pods on tern through CRI', () => {
  let outer: Snapshot;
  let before: Snapshot;
  let work: string;
  let ns: Netns | undefined;
  let c: Containerd | undefined;
  let cri: CriClient;
  let image: string;
  let env: CriEnv | undefined;
  const cgroupRoot = `tern-cri-${randomBytes(3).toString('hex')}`;

  const newPod = (name: string, hostname: string): PodSandboxConfig => {
    const uid = randomUUID();
    const logDirectory = join(work, 'pods', `tern-test_${name}_${uid}`);
    mkdirSync(logDirectory, { recursive: true });
    return podConfig({ name, namespace: 'tern-test', uid, logDirectory, hostname, cgroupParent: `/${cgroupRoot}/pod${uid}` });
  };
  const waitState = (id: string, state: ContainerState) =>
    until(`container ${id} ${state}`, 60_000, async () => {
      const s = (await cri.containerStatus(id)).status;
      return s?.state === state ? s : undefined;
    });
  const run = async (pod: PodSandboxConfig, podId: string, name: string, command: string[], mounts: Mount[] = []) => {
    mkdirSync(join(pod.log_directory!, name), { recursive: true });
    const id = await cri.createContainer(podId, containerConfig({ name, image, command, pod, mounts }), pod);
    await cri.startContainer(id);
    return id;
  };
  const exec = async (id: string, cmd: string[]) => {
    const r = await cri.execSync(id, cmd, 30);
    return { ...r, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  };

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    env = await startCriEnv({
      runtimes: { [HANDLER]: 'io.containerd.tern.v2' },
      extraPath: [join(repoRoot(), 'build', 'bin')],
      clientTimeoutMs: 120_000,
    });
    ({ work, ns, c, cri, image } = env);
  });

  afterAll(async () => {
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    expect(problems).toEqual([]);
    if (c) await expectNoLeaks(outer, { scope: [c.dir, SCOPE_EXTRA], timeoutMs: 20_000 });
  });

  beforeEach(async () => {
    before = await snapshot({ scope: [c!.dir, SCOPE_EXTRA] });
  });

  afterEach(async () => {
    await removeAllPods(cri);
    const left = removeCgroupTree(cgroupRoot);
    await expectNoLeaks(before, { scope: [c!.dir, SCOPE_EXTRA], timeoutMs: 20_000 });
    expect(left).toEqual([]);
    expect(cniResultsLeft()).toEqual([]);
  });

  it('runs a two-container pod in one VM: shared localhost, pod hostname, pod IP reachable, exec, logs, stats', async () => {
    const pod = newPod('web', 'web-pod');
    const podId = await cri.runPodSandbox(pod, HANDLER);
    const ps = (await cri.podSandboxStatus(podId)).status!;
    expect(ps.state).toBe('SANDBOX_READY');
    const podIp = ps.network?.ip ?? '';
    expect(podIp).toMatch(IN_SUBNET);

    // Volumes: the site comes from a read-only host directory; the client writes into a read-write one.
    const site = join(work, 'site');
    const out = join(work, 'out');
    mkdirSync(site);
    mkdirSync(out);
    writeFileSync(join(site, 'index.html'), 'hello-pod\n');
    const webId = await run(
      pod,
      podId,
      'web',
      ['httpd', '-f', '-p', '8080', '-h', '/www'],
      [{ container_path: '/www', host_path: site, readonly: true } as Mount],
    );
    const clientId = await run(pod, podId, 'client', ['sleep', '3600'], [{ container_path: '/out', host_path: out, readonly: false } as Mount]);
    await waitState(webId, 'CONTAINER_RUNNING');
    await waitState(clientId, 'CONTAINER_RUNNING');

    // The client reaches the server over the pod's localhost (one guest network stack).
    const fetched = await until('httpd answering on localhost', 30_000, async () => {
      const r = await exec(clientId, ['wget', '-q', '-O', '-', 'http://127.0.0.1:8080/']);
      return r.exitCode === 0 ? r.stdout : undefined;
    });
    expect(fetched).toBe('hello-pod\n');

    // Same VM, same pod hostname, not the host's kernel.
    const kernels = await Promise.all([webId, clientId].map((id) => exec(id, ['uname', '-r'])));
    expect(kernels[0]!.stdout).toBe(kernels[1]!.stdout);
    expect(kernels[0]!.stdout.trim()).not.toBe(release());
    for (const id of [webId, clientId]) expect((await exec(id, ['hostname'])).stdout).toBe('web-pod\n');

    // The pod IP, from the test namespace (the CNI bridge side).
    const fromHost = await ns!.run('busybox', ['wget', '-q', '-O', '-', `http://${podIp}:8080/`], { timeoutMs: 20_000 });
    expect(fromHost.stdout).toBe('hello-pod\n');

    // Port-forward as containerd's CRI serves it: a dial of localhost:<port> inside the pod's namespace on the host.
    const info = JSON.parse((await cri.podSandboxStatus(podId, true)).info.info ?? '{}') as {
      runtimeSpec?: { linux?: { namespaces?: Array<{ type: string; path?: string }> } };
    };
    const podNetns = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path ?? '';
    expect(podNetns).not.toBe('');
    const forwarded = await run_('nsenter', [`--net=${podNetns}`, 'busybox', 'wget', '-q', '-O', '-', 'http://127.0.0.1:8080/'], { timeoutMs: 20_000 });
    expect(forwarded.stderr).toBe('');
    expect(forwarded.stdout).toBe('hello-pod\n');

    // The volumes behave as asked, seen from both sides.
    expect((await exec(clientId, ['sh', '-c', 'echo from-pod > /out/note'])).exitCode).toBe(0);
    expect(readFileSync(join(out, 'note'), 'utf8')).toBe('from-pod\n');
    const roWrite = await exec(webId, ['sh', '-c', 'echo x > /www/index.html']);
    expect(roWrite.exitCode).not.toBe(0);
    expect(roWrite.stderr).toMatch(/Read-only file system/);
    expect(readFileSync(join(site, 'index.html'), 'utf8')).toBe('hello-pod\n');

    // ExecSync: stdout, stderr and exit code apart.
    const r = await exec(clientId, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3 });

    // Stats from the guest's cgroups.
    const stats = await cri.containerStats(webId);
    expect(Number(stats.memory?.working_set_bytes?.value ?? 0)).toBeGreaterThan(0);

    // CRI writes the container's output into its log file.
    const printerId = await run(pod, podId, 'printer', ['sh', '-c', 'echo to-stdout; echo to-stderr >&2']);
    const exited = await waitState(printerId, 'CONTAINER_EXITED');
    expect(exited.exit_code).toBe(0);
    const log = await until('printer log written', 10_000, async () => {
      const text = existsSync(exited.log_path) ? readFileSync(exited.log_path, 'utf8') : '';
      return text.includes('to-stderr') ? text : undefined;
    });
    expect(log).toMatch(/ stdout F to-stdout\n/);
    expect(log).toMatch(/ stderr F to-stderr\n/);

    // Stopping one container leaves the others running.
    await cri.stopContainer(printerId, 2);
    await cri.removeContainer(printerId);
    expect((await cri.containerStatus(webId)).status?.state).toBe('CONTAINER_RUNNING');

    for (const id of [clientId, webId]) {
      await cri.stopContainer(id, 2);
      await cri.removeContainer(id);
    }
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
  });

  it('two pods are two VMs on one bridge: they reach each other by pod IP', async () => {
    const pods = [newPod('a', 'pod-a'), newPod('b', 'pod-b')];
    const ids = await Promise.all(pods.map((p) => cri.runPodSandbox(p, HANDLER)));
    const ips = await Promise.all(ids.map(async (id) => (await cri.podSandboxStatus(id)).status!.network!.ip));
    const ctrs = await Promise.all(
      pods.map((p, i) =>
        run(p, ids[i]!, 'srv', ['sh', '-c', `mkdir -p /www && echo from-${p.metadata!.name} > /www/index.html && exec httpd -f -p 8080 -h /www`]),
      ),
    );
    await Promise.all(ctrs.map((id) => waitState(id, 'CONTAINER_RUNNING')));
    const bootIds = await Promise.all(ctrs.map(async (id) => (await exec(id, ['cat', '/proc/sys/kernel/random/boot_id'])).stdout));
    expect(bootIds[0]).not.toBe(bootIds[1]);
    const aToB = await until('pod a reaches pod b', 30_000, async () => {
      const r = await exec(ctrs[0]!, ['wget', '-q', '-O', '-', `http://${ips[1]}:8080/`]);
      return r.exitCode === 0 ? r.stdout : undefined;
    });
    expect(aToB).toBe('from-b\n');
    const bToA = await exec(ctrs[1]!, ['wget', '-q', '-O', '-', `http://${ips[0]}:8080/`]);
    expect(bToA.stdout).toBe('from-a\n');
  });

  it('a pod asking for more memory than the host has fails clearly and leaves nothing', async () => {
    const pod = newPod('huge', 'huge');
    pod.annotations = { ...pod.annotations };
    pod.linux = {
      ...pod.linux,
      resources: { memory_limit_in_bytes: String(64 * 1024 ** 4), cpu_period: '100000', cpu_quota: '100000' },
    } as PodSandboxConfig['linux'];
    const err = await cri.runPodSandbox(pod, HANDLER).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message ?? 'pod started').toMatch(/pod VM needs \d+ MiB of memory .* the host has \d+ MiB/);
  });

  it('rshared (Bidirectional) volumes: the container starts, a mount made on the node under the volume shows in the pod, and the container can mount in it', async () => {
    const pod = newPod('propagation', 'propagation');
    pod.linux!.security_context!.privileged = true;
    const podId = await cri.runPodSandbox(pod, HANDLER);
    const vol = join(work, 'propagation');
    const src = join(work, 'propagation-src');
    mkdirSync(join(vol, 'from-node'), { recursive: true });
    mkdirSync(join(vol, 'from-a'));
    mkdirSync(src);
    writeFileSync(join(src, 'node-file'), 'node\n');
    // containerd wants a Bidirectional host path on a shared mount (as critest makes it).
    for (const args of [
      ['--bind', vol, vol],
      ['--make-rshared', vol],
    ])
      expect((await run_('mount', args)).stderr).toBe('');
    try {
      await propagationPod(pod, podId, vol, src);
    } finally {
      await run_('umount', ['-R', vol]);
    }
  });

  const propagationPod = async (pod: PodSandboxConfig, podId: string, vol: string, src: string) => {
    const start = async (name: string) => {
      mkdirSync(join(pod.log_directory!, name), { recursive: true });
      const mounts = [{ container_path: '/vol', host_path: vol, propagation: 'PROPAGATION_BIDIRECTIONAL' } as Mount];
      const id = await cri.createContainer(
        podId,
        containerConfig({ name, image, command: ['sleep', '3600'], pod, mounts, securityContext: { privileged: true } }),
        pod,
      );
      await cri.startContainer(id);
      return id;
    };
    const a = await start('a');
    const bound = await run_('mount', ['--bind', src, join(vol, 'from-node')]);
    expect(bound.stderr).toBe('');
    try {
      const fromNode = await until('the node mount seen in the pod', 20_000, async () => {
        const r = await exec(a, ['cat', '/vol/from-node/node-file']);
        return r.exitCode === 0 ? r.stdout : undefined;
      });
      expect(fromNode).toBe('node\n');
      expect((await exec(a, ['sh', '-c', 'mount -t tmpfs tmpfs /vol/from-a && echo a > /vol/from-a/a-file'])).exitCode).toBe(0);
      expect((await exec(a, ['cat', '/vol/from-a/a-file'])).stdout).toBe('a\n');
      expect((await exec(a, ['sh', '-c', 'grep " /vol " /proc/self/mountinfo'])).stdout).toMatch(/ shared:\d+/);
    } finally {
      await run_('umount', [join(vol, 'from-node')]);
    }
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
  };

  it("a host-network pod: its ports are the node's while they listen (port-forward dials them on the node), and the node's ports are taken and reachable in the pod", async () => {
    // A node service on the node's loopback (the test's namespace is the node here), up before the pod.
    const nodeSite = join(work, 'node-site');
    mkdirSync(nodeSite);
    writeFileSync(join(nodeSite, 'index.html'), 'from-node\n');
    const nodeService = spawn('nsenter', [`--net=${ns!.path}`, 'busybox', 'httpd', '-f', '-p', '127.0.0.1:18082', '-h', nodeSite], { stdio: 'ignore' });
    try {
      await until('the node service', 20_000, async () =>
        (await ns!.run('busybox', ['wget', '-q', '-O', '-', 'http://127.0.0.1:18082/'])).code === 0 ? true : undefined,
      );
      await hostNetworkPod();
    } finally {
      nodeService.kill('SIGKILL');
    }
  });

  const hostNetworkPod = async () => {
    // As the kubelet makes it: no hostname (the pod shares the node's UTS namespace too).
    const pod = newPod('hostnet', '');
    pod.linux!.security_context!.namespace_options = { network: 'NODE', pid: 'CONTAINER', ipc: 'POD' };
    const podId = await cri.runPodSandbox(pod, HANDLER);
    const site = join(work, 'hostnet-site');
    mkdirSync(site);
    writeFileSync(join(site, 'index.html'), 'hello-node\n');
    const webId = await run(
      pod,
      podId,
      'web',
      ['httpd', '-f', '-p', '18081', '-h', '/www'],
      [{ container_path: '/www', host_path: site, readonly: true } as Mount],
    );
    await waitState(webId, 'CONTAINER_RUNNING');
    // containerd (and so the node) lives in the test's namespace: its localhost is the node's.
    const fetched = await until('the pod port on the node', 60_000, async () => {
      const r = await ns!.run('busybox', ['wget', '-q', '-O', '-', 'http://127.0.0.1:18081/'], { timeoutMs: 20_000 });
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(fetched).toBe('hello-node\n');
    // The guest has a NIC of its own on the hypervisor's user network, with a default route.
    const route = await exec(webId, ['ip', 'route']);
    expect(route.stdout).toMatch(/^default via 10\.0\.2\.2 dev eth0/m);
    // The node's own listening port is seen taken in the pod and reached at the pod's localhost.
    expect((await exec(webId, ['netstat', '-ltn'])).stdout).toMatch(/127\.0\.0\.1:18082 /);
    expect((await exec(webId, ['wget', '-q', '-O', '-', 'http://127.0.0.1:18082/'])).stdout).toBe('from-node\n');
    // When nothing listens any more, the node's port closes again.
    await cri.stopContainer(webId, 2);
    await until('the node port closed', 60_000, async () => {
      const r = await ns!.run('busybox', ['wget', '-q', '-O', '-', 'http://127.0.0.1:18081/'], { timeoutMs: 20_000 });
      return r.code !== 0 && /refused/.test(r.stderr) ? true : undefined;
    });
    await cri.removeContainer(webId);
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
  };

  it("a hostIPC pod fails at once with the reason named (the node's IPC namespace cannot reach into a VM), leaving nothing", async () => {
    const pod = newPod('hostipc', 'hostipc');
    pod.linux!.security_context!.namespace_options = { network: 'POD', pid: 'CONTAINER', ipc: 'NODE' };
    const err = await cri.runPodSandbox(pod, HANDLER).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message ?? 'pod started').toMatch(/hostIPC is not supported by tern: a pod in its own VM cannot share the node's IPC namespace/);
  });

  it('a crash-looping container does not disturb its pod; StopPodSandbox first, then RemovePodSandbox, cleans everything', async () => {
    const pod = newPod('loop', 'loop-pod');
    const podId = await cri.runPodSandbox(pod, HANDLER);
    const keeper = await run(pod, podId, 'keeper', ['sleep', '3600']);
    await waitState(keeper, 'CONTAINER_RUNNING');
    mkdirSync(join(pod.log_directory!, 'crasher'), { recursive: true });
    for (let attempt = 0; attempt < 3; attempt++) {
      const cfg = containerConfig({ name: 'crasher', image, command: ['sh', '-c', `echo attempt-${attempt}; exit 1`], pod });
      cfg.metadata = { ...cfg.metadata!, attempt };
      cfg.log_path = `crasher/${attempt}.log`;
      const id = await cri.createContainer(podId, cfg, pod);
      await cri.startContainer(id);
      const st = await waitState(id, 'CONTAINER_EXITED');
      expect(st.exit_code).toBe(1);
      await cri.removeContainer(id);
    }
    expect((await exec(keeper, ['echo', 'still-here'])).stdout).toBe('still-here\n');
    // The kubelet may stop the whole pod without stopping its containers first.
    await cri.stopPodSandbox(podId);
    expect((await cri.containerStatus(keeper)).status?.state).toBe('CONTAINER_EXITED');
    await cri.removePodSandbox(podId);
    expect(await cri.listContainers()).toEqual([]);
  });
});
