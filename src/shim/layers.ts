// Image layers for the guest. containerd hands us the rootfs as an overlay
// mount whose lowerdirs are committed snapshot directories; each one is
// converted once into a read-only erofs image (cached by snapshot identity
// under <cacheDir>/layers, with a record of the directory it came from:
// layer-files.ts) and attached to the VM as a read-only virtio-blk disk,
// through the sandbox's own hard link to it (layer-pins.ts), which is what
// keeps the collection (layer-gc.ts) away from it. The writable upper layer
// lives inside the VM, so writes never reach the host's snapshot
// directories. Block devices (not virtio-fs) also work for VMs cloned from a
// template.
import { createHash } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument, unavailable } from '../common/errors';
import { runCommand } from '../common/run-command';
import { imageName, tempPathFor, writeLayerRecord } from './layer-files';
import type { LayerPins } from './layer-pins';

export interface RootfsMount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

export interface LayerImage {
  /** Snapshot directory the image was made from. */
  dir: string;
  /** The erofs image as this sandbox holds it (its pin: a hard link to the cache's image). */
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
 * Returns the erofs image for a snapshot directory, pinned for the sandbox
 * of `pins`, building it if needed. Concurrent callers (in this process)
 * share one build; across processes the build goes to a unique temp file and
 * is renamed into place atomically. A cached image costs a stat of the
 * directory and one link(2); no directory is listed.
 */
export function layerImage(dir: string, pins: LayerPins): Promise<LayerImage> {
  const id = `${pins.dir}\0${dir}`;
  let p = inflight.get(id);
  if (!p) {
    p = buildLayerImage(dir, pins).finally(() => inflight.delete(id));
    inflight.set(id, p);
  }
  return p;
}

async function buildLayerImage(dir: string, pins: LayerPins): Promise<LayerImage> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(dir);
  } catch (err) {
    throw invalidArgument(`rootfs layer ${dir}: ${(err as Error).message}`);
  }
  if (!st.isDirectory()) throw invalidArgument(`rootfs layer ${dir} is not a directory`);
  // Committed snapshots never change; identity = path + inode + change time.
  const key = createHash('sha256').update(`${dir}\0${st.ino}\0${st.ctimeMs}`).digest('hex');
  const { layersDir } = pins;
  const image = join(layersDir, imageName(key));
  const serial = `L${key.slice(0, 19)}`;
  const cached = await pins.pin(image, key);
  if (cached) return { dir, image: cached, serial };
  await mkdir(layersDir, { recursive: true });
  const tmp = tempPathFor(image);
  try {
    await runCommand('mkfs.erofs', ['--quiet', tmp, dir], { timeoutMs: MKFS_TIMEOUT_MS });
    // The record before the image: an image in the cache always says where it came from.
    await writeLayerRecord(layersDir, key, { source: dir, ino: st.ino, ctimeMs: st.ctimeMs, builtAt: new Date().toISOString() });
    // Pinned before it is in the cache under its name: no collection can take it in between.
    const pinned = await pins.pin(tmp, key);
    // Only when the sandbox's pins went under it: it is being torn down.
    if (!pinned) throw unavailable(`layer image ${tmp}: not pinned, the sandbox's pins directory ${pins.dir} is gone`);
    await rename(tmp, image);
    return { dir, image: pinned, serial };
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
