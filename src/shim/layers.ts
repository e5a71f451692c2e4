// Image layers for the guest. containerd hands us the rootfs as an overlay
// mount whose lowerdirs are committed snapshot directories; each one is
// converted once into a read-only erofs image (cached by snapshot identity
// under <cacheDir>/layers) and attached to the VM as a read-only virtio-blk
// disk. The writable upper layer lives inside the VM, so writes never reach
// the host's snapshot directories. Block devices (not virtio-fs) also work
// for VMs cloned from a template.
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument } from '../common/errors';
import { runCommand } from '../common/run-command';

export interface RootfsMount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export interface LayerImage {
  /** Snapshot directory the image was made from. */
  dir: string;
  /** The erofs image path. */
  image: string;
  /** Short stable name, also the virtio-blk serial (max 20 chars). */
  serial: string;
}

/** Lower directories, top-most first, from containerd's rootfs mounts. */
export function lowerDirsFromMounts(mounts: RootfsMount[], bundleRootfs: string): string[] {
  if (mounts.length === 0) return [bundleRootfs];
  if (mounts.length > 1) throw invalidArgument(`rootfs: ${mounts.length} mounts given, tern supports one`);
  const m = mounts[0]!;
  if (m.type === 'bind' || m.type === 'rbind') return [m.source];
  if (m.type !== 'overlay') throw invalidArgument(`rootfs: mount type "${m.type}" is not supported (overlay or bind)`);
  const lower = m.options.find((o) => o.startsWith('lowerdir='));
  if (!lower) throw invalidArgument('rootfs: overlay mount without lowerdir');
  const dirs = lower.slice('lowerdir='.length).split(':').filter(Boolean);
  // An active snapshot with no parents: the upperdir is the whole rootfs.
  if (dirs.length === 0) throw invalidArgument('rootfs: overlay mount with empty lowerdir');
  return dirs;
}

/** Deadline of one layer conversion (mkfs.erofs of a snapshot directory). */
const MKFS_TIMEOUT_MS = 120_000;

const inflight = new Map<string, Promise<LayerImage>>();

/**
 * Returns the erofs image for a snapshot directory, building it if needed.
 * Concurrent callers (in this process) share one build; across processes the
 * build goes to a unique temp file and is renamed into place atomically.
 */
export function layerImage(dir: string, cacheDir: string): Promise<LayerImage> {
  let p = inflight.get(dir);
  if (!p) {
    p = buildLayerImage(dir, cacheDir).finally(() => inflight.delete(dir));
    inflight.set(dir, p);
  }
  return p;
}

async function buildLayerImage(dir: string, cacheDir: string): Promise<LayerImage> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(dir);
  } catch (err) {
    throw invalidArgument(`rootfs layer ${dir}: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw invalidArgument(`rootfs layer ${dir} is not a directory`);
  // Committed snapshots never change; identity = path + inode + change time.
  const key = createHash('sha256').update(`${dir}\0${st.ino}\0${st.ctimeMs}`).digest('hex');
  const layersDir = join(cacheDir, 'layers');
  const image = join(layersDir, `${key}.erofs`);
  const serial = `L${key.slice(0, 19)}`;
  try {
    await stat(image);
    return { dir, image, serial };
  } catch {
    /* build it */
  }
  await mkdir(layersDir, { recursive: true });
  const tmp = `${image}.tmp-${process.pid}-${Date.now()}`;
  try {
    await runCommand('mkfs.erofs', ['--quiet', tmp, dir], { timeoutMs: MKFS_TIMEOUT_MS });
    await rename(tmp, image);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return { dir, image, serial };
}
