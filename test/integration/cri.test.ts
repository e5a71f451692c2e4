// The CRI v1 client (test/cri) against the real containerd CRI plugin, with the
// runc runtime as handler "runc". Everything runs inside a network namespace the
// test creates: containerd is started in it, the CNI bridge and the pods' veths
// live in it, pod addresses come from 10.88.77.0/24, and no packet is sent to any
// address outside it. Covers a kubelet-like pod lifecycle, logs, exec, stats,
// images, a bad image, and checks that nothing is left afterwards.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import type { Netns } from './harness/netns.js';
import { GATEWAY, cniResultsLeft, removeAllPods, removeCgroupTree, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { CriError, containerConfig, type CriClient, podConfig, type ContainerState, type PodSandboxConfig } from '../cri';

const HANDLER = 'runc';
const IN_SUBNET = /^10\.88\.77\.(\d+)$/;
const HOST_PORT = 18080;
const LEAK_PROCESSES = [/^containerd-shim/, /^runc$/, /^httpd$/, /^sleep$/];

describe('CRI v1 client against containerd with runc', () => {
  let outer: Snapshot;
  let before: Snapshot;
  let work: string;
  let ns: Netns | undefined;
  let c: Containerd | undefined;
  let cri: CriClient;
  let image: string;
  let env: CriEnv | undefined;
  const cgroupRoot = `tern-cri-${randomBytes(3).toString('hex')}`;

  const newPod = (name: string, extra: Partial<Parameters<typeof podConfig>[0]> = {}): PodSandboxConfig => {
    const uid = randomUUID();
    const logDirectory = join(work, 'pods', `tern-test_${name}_${uid}`);
    mkdirSync(logDirectory, { recursive: true });
    return podConfig({ name, namespace: 'tern-test', uid, logDirectory, cgroupParent: `/${cgroupRoot}/pod${uid}`, ...extra });
  };

  const waitState = (id: string, state: ContainerState) =>
    until(`container ${id} ${state}`, 30_000, async () => {
      const s = (await cri.containerStatus(id)).status;
      return s?.state === state ? s : undefined;
    });

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    env = await startCriEnv({ runtimes: { [HANDLER]: 'io.containerd.runc.v2' } });
    ({ work, ns, c, cri, image } = env);
  });

  afterAll(async () => {
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    expect(problems).toEqual([]);
    if (c) await expectNoLeaks(outer, { scope: [c.dir], extraProcessNames: LEAK_PROCESSES, timeoutMs: 15_000 });
  });

  beforeEach(async () => {
    before = await snapshot({ scope: [c!.dir], extraProcessNames: LEAK_PROCESSES });
  });

  afterEach(async () => {
    await removeAllPods(cri);
    const left = removeCgroupTree(cgroupRoot);
    await expectNoLeaks(before, { scope: [c!.dir], extraProcessNames: LEAK_PROCESSES, timeoutMs: 15_000 });
    expect(left).toEqual([]);
    expect(cniResultsLeft()).toEqual([]);
  });

  it('answers Version and Status, and sees the images imported into k8s.io', async () => {
    const v = await cri.version();
    expect(v.runtime_name).toBe('containerd');
    expect(v.runtime_version).toMatch(/^v?1\.6\./);
    expect(v.runtime_api_version).toMatch(/^v1/);

    const conds = (await cri.status()).status?.conditions ?? [];
    expect(conds.find((x) => x.type === 'RuntimeReady')?.status).toBe(true);

    const img = await cri.imageStatus(image);
    expect(img?.repo_tags).toContain(image);
    expect(img?.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(Number(img?.size)).toBeGreaterThan(0);
    const all = await cri.listImages();
    expect(all.flatMap((i) => i.repo_tags)).toEqual(expect.arrayContaining([image, 'docker.io/tern/pause:test']));
    expect(await cri.imageStatus('docker.io/tern/absent:none')).toBeNull();
  });

  it('runs a pod kubelet-style: network, exec, logs, stats, then stops and removes it', async () => {
    const pod = newPod('web', {
      hostname: 'web-pod',
      dns: { servers: ['10.88.77.53'], searches: ['tern.test'], options: ['ndots:2'] },
      portMappings: [{ protocol: 'TCP', container_port: 8080, host_port: HOST_PORT }],
      labels: { app: 'web' },
      annotations: { 'tern.test/purpose': 'cri-lifecycle' },
    });
    const podId = await cri.runPodSandbox(pod, HANDLER);
    expect(podId).toMatch(/^[0-9a-f]{64}$/);

    const ps = (await cri.podSandboxStatus(podId)).status!;
    expect(ps.state).toBe('SANDBOX_READY');
    expect(ps.metadata?.name).toBe('web');
    expect(ps.labels.app).toBe('web');
    expect(ps.annotations['tern.test/purpose']).toBe('cri-lifecycle');
    expect(ps.runtime_handler).toBe(HANDLER);
    const podIp = ps.network?.ip ?? '';
    expect(podIp).toMatch(IN_SUBNET);
    expect(podIp).not.toBe(GATEWAY);

    // A web server holding the pod's network namespace.
    for (const name of ['web', 'printer']) mkdirSync(join(pod.log_directory!, name), { recursive: true });
    const webId = await cri.createContainer(
      podId,
      containerConfig({
        name: 'web',
        image,
        command: ['sh', '-c', 'mkdir -p /www && echo hello-pod > /www/index.html && exec httpd -f -p 8080 -h /www'],
        env: { GREETING: 'hello' },
        pod,
      }),
      pod,
    );
    expect((await cri.containerStatus(webId)).status?.state).toBe('CONTAINER_CREATED');
    await cri.startContainer(webId);
    const running = await waitState(webId, 'CONTAINER_RUNNING');
    expect(running.metadata?.name).toBe('web');
    expect(running.image?.image).toBe(image);
    expect(running.labels['io.kubernetes.pod.name']).toBe('web');

    // Inside the container: the page, the pod's hostname and DNS settings, the environment.
    const page = await until('httpd answering inside the pod', 30_000, async () => {
      const r = await cri.execSync(webId, ['wget', '-q', '-O', '-', 'http://127.0.0.1:8080/'], 10);
      return r.exitCode === 0 ? r : undefined;
    });
    expect(page.stdout).toBe('hello-pod\n');
    const env = await cri.execSync(webId, ['sh', '-c', 'hostname; cat /etc/resolv.conf; echo "$GREETING"; exit 3'], 10);
    expect(env.exitCode).toBe(3);
    expect(env.stdout).toMatch(/^web-pod\n/);
    expect(env.stdout).toMatch(/nameserver 10\.88\.77\.53/);
    expect(env.stdout).toMatch(/search tern\.test/);
    expect(env.stdout).toMatch(/options ndots:2/);
    expect(env.stdout).toMatch(/\nhello\n$/);
    const err = await cri.execSync(webId, ['sh', '-c', 'echo oops >&2'], 10);
    expect(err).toEqual({ stdout: '', stderr: 'oops\n', exitCode: 0 });

    // From the test's namespace (where the CNI bridge is): the pod address, and the host port mapping.
    const fetch = (url: string) =>
      until(`GET ${url} from the test namespace`, 30_000, async () => {
        const r = await ns!.run('busybox', ['wget', '-q', '-O', '-', url], { timeoutMs: 10_000 });
        return r.code === 0 ? r.stdout : undefined;
      });
    expect(await fetch(`http://${podIp}:8080/`)).toBe('hello-pod\n');
    expect(await fetch(`http://${GATEWAY}:${HOST_PORT}/`)).toBe('hello-pod\n');

    // Streaming exec: the runtime hands out a URL on its streaming server (not followed here).
    expect(await cri.exec(webId, { cmd: ['true'] })).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/exec\/\S+$/);

    // A container that prints and exits: CRI writes its output to the log file, in the CRI log format.
    const printerId = await cri.createContainer(
      podId,
      containerConfig({ name: 'printer', image, command: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2'], pod }),
      pod,
    );
    await cri.startContainer(printerId);
    const exited = await waitState(printerId, 'CONTAINER_EXITED');
    expect(exited.exit_code).toBe(0);
    expect(exited.reason).toBe('Completed');
    expect(exited.log_path).toBe(join(pod.log_directory!, 'printer', '0.log'));
    const log = await until('printer log written', 10_000, async () => {
      const text = existsSync(exited.log_path) ? readFileSync(exited.log_path, 'utf8') : '';
      return text.includes('to-stderr') && text.includes('to-stdout') ? text : undefined;
    });
    const stamp = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d)';
    expect(log).toMatch(new RegExp(`^${stamp} stdout F to-stdout$`, 'm'));
    expect(log).toMatch(new RegExp(`^${stamp} stderr F to-stderr$`, 'm'));

    // Stats of the running container.
    const stats = await cri.containerStats(webId);
    expect(stats.attributes?.id).toBe(webId);
    expect(stats.attributes?.metadata?.name).toBe('web');
    expect(Number(stats.cpu?.usage_core_nano_seconds?.value ?? 0)).toBeGreaterThan(0);
    expect(Number(stats.memory?.working_set_bytes?.value ?? 0)).toBeGreaterThan(0);
    const listed = await cri.listContainerStats({ pod_sandbox_id: podId });
    expect(listed.map((s) => s.attributes?.id)).toContain(webId);

    // Lists and filters.
    const ctrs = await cri.listContainers({ pod_sandbox_id: podId });
    expect(Object.fromEntries(ctrs.map((x) => [x.id, x.state]))).toEqual({
      [webId]: 'CONTAINER_RUNNING',
      [printerId]: 'CONTAINER_EXITED',
    });
    expect((await cri.listContainers({ state: { state: 'CONTAINER_RUNNING' } })).map((x) => x.id)).toEqual([webId]);
    const pods = await cri.listPodSandbox({ label_selector: { app: 'web' } });
    expect(pods.map((p) => [p.id, p.state, p.runtime_handler])).toEqual([[podId, 'SANDBOX_READY', HANDLER]]);

    // Teardown in kubelet order.
    await cri.stopContainer(webId, 2);
    const stopped = await waitState(webId, 'CONTAINER_EXITED');
    expect(stopped.exit_code).not.toBe(0);
    await cri.stopContainer(printerId, 2);
    await cri.removeContainer(webId);
    await cri.removeContainer(printerId);
    expect(await cri.listContainers({ pod_sandbox_id: podId })).toEqual([]);
    const gone = await cri.containerStatus(webId).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(CriError);
    expect((gone as CriError).isNotFound).toBe(true);

    await cri.stopPodSandbox(podId);
    expect((await cri.podSandboxStatus(podId)).status?.state).toBe('SANDBOX_NOTREADY');
    await cri.removePodSandbox(podId);
    expect(await cri.listPodSandbox()).toEqual([]);
    const podGone = await cri.podSandboxStatus(podId).catch((e: unknown) => e);
    expect((podGone as CriError).codeName).toBe('NOT_FOUND');

    // The pod's veth is gone from the test namespace; only lo and the bridge stay.
    expect((await ns!.interfaces()).sort()).toEqual(['cni-tern0', 'lo']);
  });

  it('refuses CreateContainer with an image that is not present, clearly', async () => {
    const pod = newPod('bad-image');
    const podId = await cri.runPodSandbox(pod, HANDLER);
    const missing = 'docker.io/tern/no-such-image:missing';
    const err = await cri.createContainer(podId, containerConfig({ name: 'ghost', image: missing, command: ['true'], pod }), pod).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CriError);
    const e = err as CriError;
    expect(e.method).toBe('RuntimeService/CreateContainer');
    expect(e.codeName).toBe('NOT_FOUND');
    expect(e.message).toContain(missing);
    expect(e.message).toMatch(/not found/);
    expect(await cri.listContainers({ pod_sandbox_id: podId })).toEqual([]);
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
  });
});
