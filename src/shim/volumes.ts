// Host volumes on the host side. Each sandbox has one shared directory,
// <sandbox dir>/shared (a small tmpfs of its own), that QEMU exports to the
// guest over virtio-9p. A container's host volumes are bind-mounted into it at
// <shared>/<containerId>/<n> (read-only when the spec says so) and unmounted
// when the container goes. Removing a sandbox directory unmounts everything
// under it first, deepest first, and never deletes through a mount point, so
// a host volume's files are never touched by the cleanup.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { lstat, mkdir, open, readdir, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TernError, internal, invalidArgument } from '../common/errors';
import type { LogSink } from '../common/log-sink';
import { runCommand } from '../common/run-command';
import type { HostVolume } from './guest-spec';

export const SHARED_DIR_NAME = 'shared';
/** Size of the shared directory's own tmpfs: it only holds mount points. */
const SHARED_TMPFS_OPTIONS = 'size=1m,nr_inodes=4096,mode=0755,nosuid,nodev,noexec';
const MOUNT_TIMEOUT_MS = 10_000;
const UNMOUNT_ROUNDS = 4;

/** Volumes only ever warn. */
export type VolumeLogger = Pick<LogSink, 'warn'>;

export function sharedDirOf(sandboxDir: string): string {
  return join(sandboxDir, SHARED_DIR_NAME);
}

/** One line of /proc/self/mountinfo, the fields tern needs. */
export interface MountInfoEntry {
  id: number;
  parentId: number;
  mountPoint: string;
  options: string;
  fsType: string;
  source: string;
}

/** Undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0) continue;
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      mountPoint: unescapeMountPath(f[4]!),
      options: f[5]!,
      fsType: f[sep + 1] ?? '',
      source: unescapeMountPath(f[sep + 2] ?? ''),
    });
  }
  return out;
}

function readMountInfo(): MountInfoEntry[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

function canonical(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return dir.replace(/\/+$/, '') || '/';
  }
}

/**
 * Mount points at or under dir, in the order to unmount them: deepest first,
 * and of mounts stacked on one path the latest first.
 */
export function mountsUnder(dir: string, entries: MountInfoEntry[] = readMountInfo()): string[] {
  const root = canonical(dir);
  const hits = entries.map((e, i) => ({ p: e.mountPoint, i })).filter(({ p }) => p === root || p.startsWith(root === '/' ? '/' : `${root}/`));
  hits.sort((a, b) => b.p.split('/').length - a.p.split('/').length || b.i - a.i);
  return hits.map((h) => h.p);
}

/** mount/umount under MOUNT_TIMEOUT_MS (DeadlineExceeded past it, even if umount is stuck in the kernel). */
async function run(cmd: string, args: string[]): Promise<void> {
  await runCommand(cmd, args, { timeoutMs: MOUNT_TIMEOUT_MS });
}

/** Unmounts one mount point: plainly, or detached (lazy) if it is busy. */
async function unmountOne(target: string): Promise<void> {
  try {
    await run('umount', [target]);
  } catch {
    await run('umount', ['-l', target]);
  }
}

/**
 * Unmounts everything at or under dir, deepest first, until nothing is left
 * (a few rounds: a lazy unmount of a parent takes its children along).
 * Returns the mount points still there (normally none).
 */
export async function unmountAllUnder(dir: string, log?: VolumeLogger): Promise<string[]> {
  let left = mountsUnder(dir);
  for (let round = 0; round < UNMOUNT_ROUNDS && left.length > 0; round++) {
    for (const m of left) {
      await unmountOne(m).catch((err: Error) => log?.warn({ err: err.message, mountPoint: m }, 'unmount failed'));
    }
    left = mountsUnder(dir);
  }
  return left;
}

/** Creates <sandboxDir>/shared and mounts its tmpfs (idempotent). Returns its path. */
export async function createSharedDir(sandboxDir: string): Promise<string> {
  const dir = sharedDirOf(sandboxDir);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  if (!mountsUnder(dir).includes(canonical(dir))) {
    await run('mount', ['-t', 'tmpfs', '-o', SHARED_TMPFS_OPTIONS, 'tern-shared', dir]);
  }
  return dir;
}

function volumeNameOk(containerId: string, v: HostVolume): boolean {
  const [cid, n, ...rest] = v.name.split('/');
  return cid === containerId && rest.length === 0 && /^[0-9]+$/.test(n ?? '');
}

async function makeMountPoint(path: string, kind: HostVolume['kind']): Promise<void> {
  if (kind === 'dir') {
    await mkdir(path, { mode: 0o755 });
  } else {
    const fh = await open(path, 'wx', 0o644);
    await fh.close();
  }
}

/** Binds one volume at target, read-only (every submount too) when asked. */
async function bindVolume(v: HostVolume, target: string): Promise<void> {
  await run('mount', [v.recursive ? '--rbind' : '--bind', v.source, target]);
  if (!v.readOnly) return;
  // A bind takes the source's flags; ro needs a remount of each mount of the tree.
  for (const m of mountsUnder(target).reverse()) {
    await run('mount', ['-o', 'remount,bind,ro', m]);
  }
}

/**
 * Binds a container's host volumes into the sandbox's shared directory. On
 * failure everything done so far for this container is undone, then the error
 * is thrown.
 */
export async function mountVolumes(sharedDir: string, containerId: string, volumes: readonly HostVolume[], log?: VolumeLogger): Promise<void> {
  if (volumes.length === 0) return;
  for (const v of volumes) {
    if (!volumeNameOk(containerId, v)) throw invalidArgument(`volume ${v.name} does not belong to container ${containerId}`);
  }
  const base = join(sharedDir, containerId);
  // A leftover from an earlier failed create of the same id goes first.
  if (existsSync(base)) await unmountVolumes(sharedDir, containerId, log);
  await mkdir(base, { mode: 0o755 });
  try {
    for (const v of volumes) {
      const target = join(sharedDir, v.name);
      await makeMountPoint(target, v.kind);
      await bindVolume(v, target);
    }
  } catch (err) {
    await unmountVolumes(sharedDir, containerId, log).catch((e: Error) =>
      log?.warn({ err: e.message, container: containerId }, 'undoing volume mounts failed'),
    );
    if (err instanceof TernError) throw err;
    throw internal(`binding host volumes of ${containerId}: ${(err as Error).message}`);
  }
}

/**
 * Unmounts a container's volumes and removes their mount points (only empty
 * directories and the empty files made for them: never anything recursive).
 */
export async function unmountVolumes(sharedDir: string, containerId: string, log?: VolumeLogger): Promise<void> {
  if (!containerId || containerId.includes('/') || containerId === '.' || containerId === '..') return;
  const base = join(sharedDir, containerId);
  if (!existsSync(base)) return;
  const left = await unmountAllUnder(base, log);
  if (left.length > 0) throw internal(`mounts still under ${base} after unmounting: ${left.join(', ')}`);
  for (const name of await readdir(base)) {
    const p = join(base, name);
    if ((await lstat(p)).isDirectory()) await rmdir(p);
    else await unlink(p);
  }
  await rmdir(base);
}

/**
 * Removes a sandbox directory: unmounts everything under it first; refuses to
 * delete anything while a mount is left (it could be a host volume).
 */
export async function removeSandboxDir(dir: string, log?: VolumeLogger): Promise<void> {
  if (!existsSync(dir)) return;
  const left = await unmountAllUnder(dir, log);
  if (left.length > 0) throw internal(`not removing ${dir}: still mounted under it: ${left.join(', ')}`);
  await rm(dir, { recursive: true, force: true });
}

/** The mount point a volume has on the host (for logs and tests). */
export function volumeHostPath(sharedDir: string, v: HostVolume): string {
  return join(sharedDir, v.name);
}
