// Collecting the layer cache (<cache_dir>/layers, layer-files.ts): run when a
// sandbox is torn down (its pins released: the `layer-pins` ledger step, by
// the live shim and by `delete` after a dead one) and by `tern gc`; never on
// a container's start. One collection at a time (.gc.lock, a dead holder's
// lock is taken over). A pass:
//   1. drops stale pins directories (their sandbox directory is gone), so each
//      image's link count says who uses it now;
//   2. removes stale temp files (their writer died, or is far past any build's
//      deadline) and a dead collection's trash; a build in progress is left alone;
//   3. decides (layer-gc-plan.ts) and removes each image nobody pins: renamed to
//      trash, then its link count is read again, and one pinned meanwhile is put
//      back; a sandbox's own link keeps its image's data whatever happens to the
//      cache's name, so a running VM's disk never goes;
//   4. removes records whose image is gone and is not being built.
import fs from 'node:fs';
import { link, lstat, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { LogSink } from '../common/log-sink';
import { procAlive, procStartTime } from '../common/proc';
import { classifyEntry, exists, GC_LOCK, imageName, PINS_SUBDIR, parseLayerRecord, recordName, sourceState, tempIsStale, TRASH_PREFIX } from './layer-files';
import { planLayerGc, type KeepReason, type LayerFacts, type RemoveReason } from './layer-gc-plan';
import { NEW_PINS_PREFIX, SANDBOX_LINK } from './layer-pins';
import { lockHolderGone, readLock, removeStaleLock } from './templates/build-lock';

/**
 * A sandbox's teardown does not wait for another collection: with many pods
 * going at once (`ctr run --rm` on each) they would queue behind one another
 * on `delete`, which containerd and the user wait for. What the running
 * collection misses, the next teardown or `tern gc` takes.
 */
export const TEARDOWN_GC_LOCK_WAIT_MS = 0;
/** How long `tern gc` waits for another collection. */
export const CLI_GC_LOCK_WAIT_MS = 60_000;
const LOCK_POLL_MS = 100;

export interface LayerGcOptions {
  layersDir: string;
  /** runtime.layer_cache_max_mib in bytes; 0: no bound. */
  maxBytes: number;
  lockWaitMs: number;
  log: Pick<LogSink, 'info' | 'warn'>;
}

export interface LayerGcResult {
  /** false: another collection held the lock past lockWaitMs; nothing was done. */
  ran: boolean;
  removed: Array<{ key: string; bytes: number; reason: RemoveReason }>;
  kept: Array<{ key: string; bytes: number; reason: KeepReason; users: number }>;
  /** Bytes of the images kept. */
  keptBytes: number;
  maxBytes: number;
  /** Pins directories of sandboxes that are gone, removed. */
  stalePins: number;
  /** Temp files of dead builds, and a dead collection's trash, removed. */
  staleTemps: number;
  /** Records without an image, removed. */
  orphanRecords: number;
}

/** Takes .gc.lock (O_EXCL, holding pid and start time), waiting up to waitMs; null if still held by a live process. */
async function lockGc(path: string, waitMs: number): Promise<(() => void) | null> {
  const deadline = Date.now() + waitMs;
  const me = JSON.stringify({ pid: process.pid, startTime: procStartTime(process.pid) });
  for (;;) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(path, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (fd !== undefined) {
      let ino: number;
      try {
        fs.writeSync(fd, me);
        ino = fs.fstatSync(fd).ino;
      } finally {
        fs.closeSync(fd);
      }
      return () => {
        if (readLock(path)?.ino === ino) fs.rmSync(path, { force: true });
      };
    }
    const seen = readLock(path);
    if (seen === null) continue;
    if (lockHolderGone(seen)) {
      removeStaleLock(path, seen);
      continue;
    }
    if (Date.now() >= deadline) return null;
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Step 1: pins directories whose sandbox directory is gone, and a half-made one whose maker died. */
async function dropStalePins(layersDir: string): Promise<number> {
  const root = join(layersDir, PINS_SUBDIR);
  let n = 0;
  for (const name of await listDir(root)) {
    const dir = join(root, name);
    let stale: boolean;
    if (name.startsWith(NEW_PINS_PREFIX)) {
      stale = !procAlive(Number(name.slice(name.lastIndexOf('-') + 1)));
    } else {
      // fs.existsSync follows the link: false when the sandbox directory is gone (or the link is missing).
      stale = !fs.existsSync(join(dir, SANDBOX_LINK));
    }
    if (stale) {
      await rm(dir, { recursive: true, force: true });
      n++;
    }
  }
  return n;
}

/** Removes one image nobody pinned when it was looked at; false if it was pinned meanwhile (put back) or is gone already. */
export async function removeUnpinnedImage(layersDir: string, key: string): Promise<boolean> {
  const image = join(layersDir, imageName(key));
  const trash = join(layersDir, `${TRASH_PREFIX}${key}-${process.pid}`);
  try {
    await rename(image, trash);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if ((await lstat(trash)).nlink > 1) {
    // A sandbox pinned it between the look and the rename: the cache keeps it (unless rebuilt meanwhile).
    await link(trash, image).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await unlink(trash);
    return false;
  }
  await unlink(trash);
  // A build of the same key may have begun since (it writes the record before the image): its record stays.
  if (!(await exists(image))) await rm(join(layersDir, recordName(key)), { force: true });
  return true;
}

/** One collection of the cache in `layersDir` (see the top of this file). */
export async function collectLayers(opts: LayerGcOptions): Promise<LayerGcResult> {
  const { layersDir, maxBytes, log } = opts;
  const result: LayerGcResult = { ran: false, removed: [], kept: [], keptBytes: 0, maxBytes, stalePins: 0, staleTemps: 0, orphanRecords: 0 };
  if (!(await exists(layersDir))) return { ...result, ran: true };
  const unlock = await lockGc(join(layersDir, GC_LOCK), opts.lockWaitMs);
  if (!unlock) return result;
  try {
    result.ran = true;
    result.stalePins = await dropStalePins(layersDir);
    const now = Date.now();
    const images: string[] = [];
    const records = new Set<string>();
    const building = new Set<string>();
    for (const name of await listDir(layersDir)) {
      const e = classifyEntry(name);
      if (e.kind === 'image') images.push(e.key);
      else if (e.kind === 'record') records.add(e.key);
      else if (e.kind === 'trash' || (e.kind === 'temp' && tempIsStale(e, now, procAlive))) {
        await rm(join(layersDir, name), { force: true });
        result.staleTemps++;
      } else if (e.kind === 'temp') building.add(e.key);
    }
    const facts: LayerFacts[] = [];
    for (const key of images) {
      let st: fs.Stats;
      try {
        st = await lstat(join(layersDir, imageName(key)));
      } catch {
        continue; // removed meanwhile
      }
      const text = records.has(key) ? await readFile(join(layersDir, recordName(key)), 'utf8').catch(() => '') : '';
      const source = await sourceState(parseLayerRecord(text));
      // A padded image (a layer slot's size) is sparse: what it holds on disk is what counts.
      const bytes = Math.min(st.size, st.blocks * 512);
      facts.push({ key, bytes, users: st.nlink - 1, lastUsedMs: st.ctimeMs, source });
    }
    for (const d of planLayerGc(facts, maxBytes)) {
      const { key, bytes, users } = d.layer;
      if (d.action === 'remove' && (await removeUnpinnedImage(layersDir, key))) {
        result.removed.push({ key, bytes, reason: d.reason });
        log.info({ layer: key, bytes, reason: d.reason }, 'layer image removed');
        continue;
      }
      result.kept.push({ key, bytes, reason: d.action === 'keep' ? d.reason : 'in-use', users });
      result.keptBytes += bytes;
    }
    for (const key of records) {
      if (building.has(key) || (await exists(join(layersDir, imageName(key))))) continue;
      await rm(join(layersDir, recordName(key)), { force: true });
      result.orphanRecords++;
    }
    if (maxBytes > 0 && result.keptBytes > maxBytes) {
      log.warn({ keptBytes: result.keptBytes, maxBytes }, 'layer cache above runtime.layer_cache_max_mib: the rest is in use');
    }
    return result;
  } finally {
    unlock();
  }
}
