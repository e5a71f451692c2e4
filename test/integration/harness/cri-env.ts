// Shared pieces of the CRI integration tests: the whole environment (a private
// containerd with CRI in a network namespace of its own, CNI bridge, images),
// waiting, kubelet-order cleanup, and checks for what CNI or cgroups left.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { CriClient, podConfig, type PodSandboxConfig } from '../../cri';
import { startContainerd, type Containerd } from './containerd.js';
import { CRI_SANDBOX_IMAGE_CONFIG, importCriImages } from './cri-images.js';
import { createNetns, netnsExists, type Netns } from './netns.js';
import { tern } from './tern-cli.js';

export const SUBNET = '10.88.77.0/24';
export const GATEWAY = '10.88.77.1';
export const CNI_NETWORK = 'tern-cri-test';
/** libcni's result cache, which containerd 1.6 does not let us move: files are removed on CNI DEL, folders stay. */
export const CNI_CACHE = '/var/lib/cni';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries `fn` until it returns a value that is not undefined, or fails with the last problem at the deadline. */
export async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms${last ? ` (last: ${last})` : ''}`);
    await sleep(200);
  }
}

/** rmdir a cgroup (relative path) and everything below it in every mounted hierarchy. */
export function removeCgroupTree(rel: string): string[] {
  const root = '/sys/fs/cgroup';
  const hierarchies = [root, ...readdirSync(root).map((n) => join(root, n))];
  const left: string[] = [];
  for (const h of hierarchies) {
    const top = join(h, rel);
    if (!existsSync(top)) continue;
    const dirs: string[] = [];
    const walk = (d: string) => {
      dirs.push(d);
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    };
    walk(top);
    for (const d of dirs.sort((a, b) => b.length - a.length)) {
      try {
        rmdirSync(d);
      } catch (e) {
        left.push(`${d}: ${(e as Error).message}`);
      }
    }
  }
  return left;
}

/** Cached CNI results of our network still on the host (each is a pod whose CNI DEL did not happen). */
export function cniResultsLeft(): string[] {
  const dir = join(CNI_CACHE, 'results');
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith(`${CNI_NETWORK}-`)) : [];
}

/** Removes the CNI cache folders if this test created them and they are empty. */
export function removeCniCacheDirs(): void {
  for (const d of [join(CNI_CACHE, 'results'), CNI_CACHE]) {
    try {
      rmdirSync(d);
    } catch {
      // not there, or in use by someone else
    }
  }
}

/** Best effort, kubelet order: containers stopped and removed, then the pods. */
export async function removeAllPods(cri: CriClient): Promise<void> {
  for (const ctr of await cri.listContainers().catch(() => [])) {
    await cri.stopContainer(ctr.id, 0).catch(() => undefined);
    await cri.removeContainer(ctr.id).catch(() => undefined);
  }
  for (const pod of await cri.listPodSandbox().catch(() => [])) {
    await cri.stopPodSandbox(pod.id).catch(() => undefined);
    await cri.removePodSandbox(pod.id).catch(() => undefined);
  }
}

export function cniConfig(ipamDir: string): string {
  return JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: CNI_NETWORK,
      plugins: [
        {
          type: 'bridge',
          bridge: 'cni-tern0',
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: 'host-local', ranges: [[{ subnet: SUBNET, gateway: GATEWAY }]], dataDir: ipamDir },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

/** A private containerd with the CRI plugin inside a network namespace of its own, with the CNI bridge and the test images. */
export interface CriEnv {
  work: string;
  ns: Netns;
  c: Containerd;
  cri: CriClient;
  image: string;
  /** Whether libcni's cache folder was there before (so teardown leaves it alone). */
  cniCacheExisted: boolean;
}

/** Starts a CriEnv; `runtimes` maps CRI handler names to runtime types (containerd's default, runc, is always there). */
export async function startCriEnv(opts: {
  runtimes: Record<string, string>;
  extraPath?: string[];
  clientTimeoutMs?: number;
  /** A runtime handler's options table (e.g. ConfigPath = "..."), per handler. */
  runtimeOptions?: Record<string, string>;
  /** Extra environment for containerd and so for its shims. */
  env?: Record<string, string>;
}): Promise<CriEnv> {
  const cniCacheExisted = existsSync(CNI_CACHE);
  const work = mkdtempSync(join(tmpdir(), 'tern-cri-'));
  const confDir = join(work, 'net.d');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-tern-cri.conflist'), cniConfig(join(work, 'ipam')));
  const ns = await createNetns('tern-cri');
  const runtimes = { runc: 'io.containerd.runc.v2', ...opts.runtimes };
  const c = await startContainerd({
    cri: true,
    env: opts.env,
    netnsPath: ns.path,
    extraPath: opts.extraPath,
    criPluginConfig: [CRI_SANDBOX_IMAGE_CONFIG, '  netns_mounts_under_state_dir = true', '  stream_server_address = "127.0.0.1"'].join('\n'),
    extraConfig: [
      '[plugins."io.containerd.grpc.v1.cri".cni]',
      '  bin_dir = "/usr/lib/cni"',
      `  conf_dir = ${JSON.stringify(confDir)}`,
      '  max_conf_num = 1',
      ...Object.entries(runtimes).flatMap(([handler, type]) => [
        `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${handler}]`,
        `  runtime_type = ${JSON.stringify(type)}`,
        // As `tern install` writes it: tern's own annotations reach the shim.
        ...(type === 'io.containerd.tern.v2' ? ['  pod_annotations = ["io.tern.*"]', '  container_annotations = ["io.tern.*"]'] : []),
        ...(opts.runtimeOptions?.[handler]
          ? [`[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${handler}.options]`, opts.runtimeOptions[handler]!]
          : []),
      ]),
    ].join('\n'),
  });
  const { image } = await importCriImages(c);
  const cri = new CriClient(c.address, { timeoutMs: opts.clientTimeoutMs ?? 20_000 });
  // The CRI plugin learns of imported images through events, and of the CNI config by watching its folder.
  await until('image known to CRI', 30_000, async () => ((await cri.imageStatus(image)) ? true : undefined));
  await until('CRI NetworkReady', 30_000, async () => {
    const conds = (await cri.status()).status?.conditions ?? [];
    return conds.find((x) => x.type === 'NetworkReady')?.status ? true : undefined;
  });
  return { work, ns, c, cri, image, cniCacheExisted };
}

/** Tears a CriEnv down (pods, containerd, cgroups under cgroupRoot, CNI results, namespace, temp folder); returns what went wrong. */
export async function stopCriEnv(env: Partial<CriEnv>, cgroupRoot: string): Promise<string[]> {
  const problems: string[] = [];
  if (env.c) {
    if (env.cri) {
      await removeAllPods(env.cri);
      env.cri.close();
    }
    await env.c.stop().catch((e: Error) => problems.push(e.message));
  }
  problems.push(...removeCgroupTree(cgroupRoot));
  problems.push(...cniResultsLeft().map((n) => `CNI result ${n} left in ${CNI_CACHE}`));
  if (env.cniCacheExisted === false) removeCniCacheDirs();
  if (env.ns) {
    await env.ns.remove().catch((e: Error) => problems.push(e.message));
    if (netnsExists(env.ns.name)) problems.push(`network namespace ${env.ns.name} not removed`);
  }
  if (env.work) rmSync(env.work, { recursive: true, force: true });
  return problems;
}

/**
 * Runs one pod named `name` (namespace tern-test, its own log directory, under
 * cgroup parent /<cgroupRoot>) through `handler`, and finds its VM's QEMU
 * (`tern sandboxes`): for tests that look at one tern pod's VM from the host.
 */
export async function runCriPod(
  env: CriEnv,
  handler: string,
  name: string,
  cgroupRoot: string,
): Promise<{ pod: PodSandboxConfig; podId: string; qemuPid: number }> {
  const uid = randomUUID();
  const logDirectory = join(env.work, 'pods', `tern-test_${name}_${uid}`);
  mkdirSync(logDirectory, { recursive: true });
  const pod = podConfig({ name, namespace: 'tern-test', uid, logDirectory, hostname: name, cgroupParent: `/${cgroupRoot}/pod${uid}` });
  const podId = await env.cri.runPodSandbox(pod, handler);
  const listed = JSON.parse((await tern(['sandboxes', '--json'])).stdout) as Array<{ id: string; qemu: { pid: number | null; alive: boolean } }>;
  const sb = listed.find((s) => s.id === podId);
  if (!sb?.qemu.pid || !sb.qemu.alive) throw new Error(`no running QEMU for pod ${podId}: ${JSON.stringify(listed)}`);
  return { pod, podId, qemuPid: sb.qemu.pid };
}
