// Named network namespaces for integration tests (`ip netns add`, loopback up),
// commands run inside one with `nsenter --net` (not `ip netns exec`, which
// remounts /sys and hides the cgroup tree), and removal with a check that it
// is gone. Deleting a namespace also destroys every interface inside it.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { run, type RunOptions, type RunResult } from './run.js';

export const NETNS_DIR = '/run/netns';

export interface Netns {
  name: string;
  /** /run/netns/<name>, for nsenter --net= or containerd's netnsPath. */
  path: string;
  /** Runs a command inside the namespace (network only; same mounts and PIDs). */
  run(cmd: string, args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Names of the interfaces inside the namespace. */
  interfaces(): Promise<string[]>;
  /** Deletes the namespace; idempotent; throws when it is still there afterwards. */
  remove(): Promise<void>;
}

/** Creates `<prefix>-<random hex>` with lo up. */
export async function createNetns(prefix = 'tern-test'): Promise<Netns> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  const path = join(NETNS_DIR, name);
  const add = await run('ip', ['netns', 'add', name], { timeoutMs: 10_000 });
  if (add.code !== 0) throw new Error(`ip netns add ${name} failed: ${add.stderr.trim()}`);
  const ns: Netns = {
    name,
    path,
    run: (cmd, args, opts) => run('nsenter', [`--net=${path}`, cmd, ...args], { timeoutMs: 30_000, ...opts }),
    interfaces: async () => {
      const r = await run('ip', ['-n', name, '-o', 'link', 'show'], { timeoutMs: 10_000 });
      if (r.code !== 0) throw new Error(`ip -n ${name} link show failed: ${r.stderr.trim()}`);
      // "1: lo: <...>" or "5: veth0@if4: <...>"
      return r.stdout
        .split('\n')
        .map((l) => l.split(':')[1]?.trim().split('@')[0] ?? '')
        .filter((n) => n.length > 0);
    },
    remove: () => removeNetns(name),
  };
  const up = await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { timeoutMs: 10_000 });
  if (up.code !== 0) {
    await removeNetns(name).catch(() => undefined);
    throw new Error(`bringing lo up in ${name} failed: ${up.stderr.trim()}`);
  }
  return ns;
}

export function netnsExists(name: string): boolean {
  return existsSync(join(NETNS_DIR, name));
}

export async function removeNetns(name: string): Promise<void> {
  if (!netnsExists(name)) return;
  const r = await run('ip', ['netns', 'delete', name], { timeoutMs: 10_000 });
  if (netnsExists(name)) throw new Error(`ip netns delete ${name} left it in place (${r.code}): ${r.stderr.trim()}`);
}
