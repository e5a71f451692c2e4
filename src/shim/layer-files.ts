// The layer cache's files, <cache_dir>/layers:
//   <key>.erofs               a layer image (key: sha256 of snapshot path, inode, change time)
//   <key>.json                its record: which snapshot directory it was made from
//   <name>.tmp-<pid>-<ms>     a build (or record) being written by that process
//   .trash-<key>-<pid>        an image a collection was removing when it died
//   .gc.lock                  held by the one collection running (layer-gc.ts)
//   users/<id>/               one sandbox's pins (layer-pins.ts)
// Only names and the record are here; who decides what goes is layer-gc.ts.
import { lstat, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export function layersDirOf(cacheDir: string): string {
  return join(cacheDir, 'layers');
}

export const imageName = (key: string): string => `${key}.erofs`;
export const recordName = (key: string): string => `${key}.json`;
export const GC_LOCK = '.gc.lock';
export const PINS_SUBDIR = 'users';
export const TRASH_PREFIX = '.trash-';

/** A name for a file being written in place of `finalPath`, naming its writer (the collection judges it by that). */
export function tempPathFor(finalPath: string): string {
  return `${finalPath}.tmp-${process.pid}-${Date.now()}`;
}

export type LayerEntry =
  | { kind: 'image'; key: string }
  | { kind: 'record'; key: string }
  | { kind: 'temp'; key: string; pid: number; startedMs: number }
  | { kind: 'trash' }
  | { kind: 'other' };

const KEY = '[0-9a-f]{64}';
const IMAGE_RE = new RegExp(`^(${KEY})\\.erofs$`);
const RECORD_RE = new RegExp(`^(${KEY})\\.json$`);
const TEMP_RE = new RegExp(`^(${KEY})\\.(?:erofs|json)\\.tmp-(\\d+)-(\\d+)$`);

/** Pure: what a name in the layers directory is. */
export function classifyEntry(name: string): LayerEntry {
  let m = IMAGE_RE.exec(name);
  if (m) return { kind: 'image', key: m[1]! };
  m = RECORD_RE.exec(name);
  if (m) return { kind: 'record', key: m[1]! };
  m = TEMP_RE.exec(name);
  if (m) return { kind: 'temp', key: m[1]!, pid: Number(m[2]), startedMs: Number(m[3]) };
  if (name.startsWith(TRASH_PREFIX)) return { kind: 'trash' };
  return { kind: 'other' };
}

/**
 * A build is never older than mkfs.erofs's deadline (120 s, then its temp
 * file is removed); one older than this is a crashed build whose pid was reused.
 */
export const STALE_TEMP_MS = 10 * 60_000;

/** Pure: whether a temp file's writer is gone (dead, or so long ago that it cannot be the same process). */
export function tempIsStale(t: { pid: number; startedMs: number }, now: number, alive: (pid: number) => boolean): boolean {
  return !alive(t.pid) || now - t.startedMs > STALE_TEMP_MS;
}

/** What a layer image was made from: the snapshot directory and the identity it had then. */
export interface LayerRecord {
  source: string;
  ino: number;
  ctimeMs: number;
  builtAt: string;
}

/** Writes a layer's record whole (temp file, then rename). */
export async function writeLayerRecord(layersDir: string, key: string, record: LayerRecord): Promise<void> {
  const path = join(layersDir, recordName(key));
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, JSON.stringify(record));
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Pure: a record from its text; null if it is not one. */
export function parseLayerRecord(text: string): LayerRecord | null {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  const o = r as Partial<LayerRecord> | null;
  if (typeof o !== 'object' || o === null) return null;
  if (typeof o.source !== 'string' || typeof o.ino !== 'number' || typeof o.ctimeMs !== 'number' || typeof o.builtAt !== 'string') return null;
  return { source: o.source, ino: o.ino, ctimeMs: o.ctimeMs, builtAt: o.builtAt };
}

/** Whether the layer's snapshot directory is still the one it was made from. */
export type SourceState = 'present' | 'gone' | 'changed' | 'unknown';

export async function sourceState(record: LayerRecord | null): Promise<SourceState> {
  if (!record) return 'unknown';
  try {
    const st = await stat(record.source);
    return st.isDirectory() && st.ino === record.ino && st.ctimeMs === record.ctimeMs ? 'present' : 'changed';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Anything but "not there" (EACCES, EIO) proves nothing: the layer is kept.
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'gone' : 'present';
  }
}

/** Whether a path exists (lstat: a dangling name still counts). */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
