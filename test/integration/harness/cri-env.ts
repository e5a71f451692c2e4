// Shared pieces of the CRI integration tests: waiting, kubelet-order cleanup,
// the CNI config of the test network, and checks for what CNI or cgroups left.
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CriClient } from '../../../src/cri';

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

