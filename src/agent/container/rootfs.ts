// Container root filesystems: image layers arrive as virtio-blk disks holding
// erofs (a layer slot the VM had from boot, or a hot-plugged disk), found by
// /sys/block/<dev>/serial, mounted read-only once under
// <runDir>/layers/<serial> and shared (refcounted) between containers. Each
// container's overlay upper/work dirs live on its own writable disk (an empty
// ext4 the host made, found by serial like the layers), or on a tmpfs when
// it has none (a read-only root filesystem, which is never written), and the
// overlay is at <runDir>/containers/<id>/rootfs. Mounting uses the mount/umount programs
// (busybox in the guest).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { failedPrecondition, invalidArgument, notFound } from '../../common/errors.js';
import { runCommand } from '../../common/run-command.js';
import type { WritablePremount } from './writable-premount.js';

export interface LayerRef {
  serial: string;
  fs_type: string;
  /** A writable layer whose disk is a copy of the premounted one (writable-premount.ts). */
  premounted?: boolean;
}

export interface ResolvedLayer {
  /** Directory holding the layer's files. */
  path: string;
  release: () => Promise<void>;
}

export type ResolveLayer = (layer: LayerRef) => Promise<ResolvedLayer>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Deadline of one mount or umount. */
const MOUNT_TOOL_TIMEOUT_MS = 20_000;

/** Run mount/umount with a deadline (DeadlineExceeded past it); stderr goes into the error. */
export async function runMountTool(file: string, args: string[], timeoutMs = MOUNT_TOOL_TIMEOUT_MS): Promise<void> {
  await runCommand(file, args, { timeoutMs });
}

/** How the agent mounts: mount(2) through its running helper in the guest (guest-helper.ts), mount(8) elsewhere. */
export interface Mounter {
  mount(source: string, target: string, fsType: string, opts: { readOnly?: boolean; data?: string }): Promise<void>;
  umount(target: string, opts?: { lazy?: boolean }): Promise<void>;
  /** Makes a mounted filesystem read-only or writable (MS_REMOUNT), with its options. */
  remount(target: string, opts: { readOnly: boolean; data?: string }): Promise<void>;
  /** Moves a mount to another place (MS_MOVE). */
  move(source: string, target: string): Promise<void>;
  /** Drops the kernel's cache of a block device (BLKFLSBUF). */
  flushBuffers(device: string): Promise<void>;
}

/** mount(8) and umount(8): one process each (the agent's own tests on a host, a guest without the helper). */
export const toolMounter: Mounter = {
  mount: (source, target, fsType, { readOnly, data }) => {
    const options = [...(readOnly ? ['ro'] : []), ...(data ? [data] : [])].join(',');
    return runMountTool('mount', ['-t', fsType, ...(options ? ['-o', options] : []), source, target]);
  },
  umount: (target, opts) => runMountTool('umount', [...(opts?.lazy ? ['-l'] : []), target]),
  remount: (target, { readOnly, data }) => runMountTool('mount', ['-o', ['remount', readOnly ? 'ro' : 'rw', ...(data ? [data] : [])].join(','), target]),
  move: (source, target) => runMountTool('mount', ['--move', source, target]),
  flushBuffers: (device) => runMountTool('blockdev', ['--flushbufs', device]),
};

let mounter: Mounter = toolMounter;
/** The writable slot's filesystem a template mounted, if the agent keeps one (writable-premount.ts). */
let premount: WritablePremount | undefined;

/** Sets how every mount and unmount of this module is made (the agent: its helper, at boot). */
export function useMounter(m: Mounter): void {
  mounter = m;
}

/** Sets the writable slot's premounted filesystem, which writable layers on that slot take or drop. */
export function useWritablePremount(p: WritablePremount | undefined): void {
  premount = p;
}

/** Unmount, retrying while busy, then detaching lazily as the last resort. Missing mounts are fine. */
export async function unmount(target: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await isMountPoint(target))) return;
    try {
      await mounter.umount(target);
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        await mounter.umount(target, { lazy: true }).catch(() => undefined);
        if (await isMountPoint(target)) throw err;
        return;
      }
      await sleep(50);
    }
  }
}

/** True when `target` is listed as a mount point in /proc/self/mountinfo. */
export async function isMountPoint(target: string): Promise<boolean> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const want = path.resolve(target);
  return info.split('\n').some((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') === want);
}

/** Find /dev/<name> whose /sys/block/<name>/serial equals `serial`, polling until the deadline. */
export async function findBlockDevice(serial: string, opts: { sysBlock?: string; timeoutMs?: number } = {}): Promise<string> {
  const sysBlock = opts.sysBlock ?? '/sys/block';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const name of await fs.readdir(sysBlock).catch(() => [] as string[])) {
      const s = await fs.readFile(path.join(sysBlock, name, 'serial'), 'utf8').catch(() => undefined);
      if (s !== undefined && s.trim() === serial) return `/dev/${name}`;
    }
    if (Date.now() > deadline) throw notFound(`layer disk with serial ${JSON.stringify(serial)} (no /sys/block/*/serial matched within ${timeoutMs} ms)`);
    // The disk is hot-plugged just before the create: it is usually there, or about to be.
    await sleep(20);
  }
}

interface LayerMount {
  refs: number;
  path: string;
  ready: Promise<void>;
}

/** Mounts layer disks read-only, once per serial, and unmounts when the last user releases. */
export class LayerStore {
  private readonly mounts = new Map<string, LayerMount>();
  constructor(private readonly opts: { runDir: string; sysBlock?: string; timeoutMs?: number }) {}

  readonly resolve: ResolveLayer = async (layer) => {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(layer.serial)) throw invalidArgument(`layers: bad serial ${JSON.stringify(layer.serial)}`);
    const fsType = layer.fs_type || 'erofs';
    if (!/^[a-z0-9]+$/.test(fsType)) throw invalidArgument(`layers: bad fs_type ${JSON.stringify(layer.fs_type)}`);
    let m = this.mounts.get(layer.serial);
    if (!m) {
      const dir = path.join(this.opts.runDir, 'layers', layer.serial);
      const ready = (async () => {
        const dev = await findBlockDevice(layer.serial, this.opts);
        // A layer slot is one device whose file the host changes (empty at
        // boot, then each layer in turn): nothing read before may be taken for this layer's.
        await mounter.flushBuffers(dev);
        await fs.mkdir(dir, { recursive: true });
        await mounter.mount(dev, dir, fsType, { readOnly: true });
      })();
      m = { refs: 0, path: dir, ready };
      this.mounts.set(layer.serial, m);
      ready.catch(() => {
        if (this.mounts.get(layer.serial) === m) this.mounts.delete(layer.serial);
      });
    }
    m.refs++;
    const entry = m;
    try {
      await entry.ready;
    } catch (err) {
      entry.refs--;
      throw err;
    }
    let released = false;
    return {
      path: entry.path,
      release: async () => {
        if (released) return;
        released = true;
        if (--entry.refs > 0) return;
        if (this.mounts.get(layer.serial) === entry) this.mounts.delete(layer.serial);
        await unmount(entry.path);
        await fs.rmdir(entry.path).catch(() => undefined);
      },
    };
  };
}

export interface Rootfs {
  /** The overlay mount point. */
  path: string;
  /** Unmount the overlay and the writable layer, release the layers. Idempotent. */
  remove(): Promise<void>;
}

/**
 * Mount options of a writable layer: its inode tables were never zeroed and
 * need not be (noinit_itable: no background thread writing the whole disk);
 * freed blocks go back to the host's sparse file (discard).
 */
export const WRITABLE_EXT4_OPTIONS = 'noinit_itable,discard';

/**
 * Mounts the container's writable disk (or a tmpfs without one) at `scratch`:
 * the premounted filesystem when the disk is a copy of it, else the disk
 * itself (after dropping a premount of the same device).
 */
async function mountScratch(scratch: string, writable: LayerRef | undefined, opts: { sysBlock?: string; timeoutMs?: number }): Promise<void> {
  if (!writable) {
    await mounter.mount('tmpfs', scratch, 'tmpfs', { data: 'mode=0755' });
    return;
  }
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(writable.serial)) throw invalidArgument(`rootfs: bad serial ${JSON.stringify(writable.serial)}`);
  if (writable.fs_type !== 'ext4') throw invalidArgument(`rootfs: fs_type ${JSON.stringify(writable.fs_type)}: want "ext4"`);
  const dev = await findBlockDevice(writable.serial, opts);
  if (writable.premounted) {
    if (!premount) throw failedPrecondition(`rootfs: writable layer ${writable.serial} is premounted, but this agent keeps no premounted filesystem`);
    await premount.take(dev, scratch);
    return;
  }
  await premount?.release(dev);
  // The VM's writable slot is one device whose file the host changes (an
  // empty one at boot, then each container's): nothing read from an earlier
  // file may be taken for this one's.
  await mounter.flushBuffers(dev);
  await mounter.mount(dev, scratch, 'ext4', { data: WRITABLE_EXT4_OPTIONS });
  // A fresh ext4 has lost+found; the layer's own directories sit beside it, mode 0755 as the tmpfs's root.
  await fs.chmod(scratch, 0o755);
}

/**
 * Build <containerDir>/rootfs: overlay of the layers (top-most first) with
 * upper/work at <containerDir>/scratch, on the container's writable disk or
 * a tmpfs. Cleans up after itself on failure.
 */
export async function mountRootfs(
  containerDir: string,
  layers: LayerRef[],
  resolveLayer: ResolveLayer,
  writable?: LayerRef,
  findOpts: { sysBlock?: string; timeoutMs?: number } = {},
  /** Told as each part is done ('scratch': the writable layer mounted; 'layers': every layer mounted), for the create's timings. */
  onStep: (step: 'scratch' | 'layers') => void = () => undefined,
): Promise<Rootfs> {
  const scratch = path.join(containerDir, 'scratch');
  const rootfs = path.join(containerDir, 'rootfs');
  const resolved: ResolvedLayer[] = [];
  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    const errors: unknown[] = [];
    for (const step of [() => unmount(rootfs), () => unmount(scratch)]) await step().catch((e) => errors.push(e));
    for (const l of resolved.splice(0)) await l.release().catch((e) => errors.push(e));
    await fs.rmdir(rootfs).catch(() => undefined);
    await fs.rmdir(scratch).catch(() => undefined);
    if (errors.length > 0) throw errors[0];
  };
  try {
    await fs.mkdir(scratch, { recursive: true });
    await fs.mkdir(rootfs, { recursive: true });
    // The writable layer and the image layers at once: a hot-plugged layer's
    // device may still be appearing in the guest while the writable one mounts.
    const scratchReady = (async () => {
      await mountScratch(scratch, writable, findOpts);
      // A premounted layer (and any copy of its disk) has them already.
      await fs.mkdir(path.join(scratch, 'upper'), { mode: 0o755, recursive: true });
      await fs.mkdir(path.join(scratch, 'work'), { mode: 0o700, recursive: true });
      onStep('scratch');
    })();
    const layersReady = Promise.allSettled(layers.map((layer) => resolveLayer(layer))).then((results) => {
      // Kept in the layers' order (top-most first), each one that mounted, so a failure releases them all.
      for (const r of results) if (r.status === 'fulfilled') resolved.push(r.value);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      onStep('layers');
    });
    const [scratchDone, layersDone] = await Promise.allSettled([scratchReady, layersReady]);
    if (scratchDone.status === 'rejected') throw scratchDone.reason;
    if (layersDone.status === 'rejected') throw layersDone.reason;
    let lower = resolved.map((l) => l.path);
    if (lower.length === 0) {
      // no image layers: an empty lower dir keeps the same overlay shape
      await fs.mkdir(path.join(scratch, 'empty'));
      lower = [path.join(scratch, 'empty')];
    }
    for (const p of lower) if (/[,:\s]/.test(p)) throw invalidArgument(`layer path not usable in overlay options: ${p}`);
    const data = `lowerdir=${lower.join(':')},upperdir=${scratch}/upper,workdir=${scratch}/work`;
    await mounter.mount('overlay', rootfs, 'overlay', { data });
  } catch (err) {
    await remove().catch(() => undefined);
    throw err;
  }
  return { path: rootfs, remove };
}
