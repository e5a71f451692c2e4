// Template files as a build leaves them, for tests of the template store
// and of `tern factory` (no VM: the memory file is a sized hole, the state
// random bytes).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { join } from 'node:path';
import { templateFiles, type TemplateRecord } from '../../../src/shim/templates/store';

export const MiB = 1024 * 1024;
export const TMPFS_MAGIC = 0x01021994;

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export function sizedFile(path: string, bytes: number): void {
  const fd = fs.openSync(path, 'w');
  try {
    fs.ftruncateSync(fd, bytes);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes the files a build leaves in dir: the memory file and a device state file. */
export function buildFiles(dir: string, memoryMiB: number, state: Buffer = randomBytes(4096)): Buffer {
  const f = templateFiles(dir);
  sizedFile(f.memoryPath, memoryMiB * MiB);
  fs.writeFileSync(f.statePath, state);
  return state;
}

/** A complete template under storeDir, as TemplateStore.ensure leaves it. */
export function writeTemplate(storeDir: string, key: string, memoryMiB: number): TemplateRecord {
  const dir = join(storeDir, key);
  fs.mkdirSync(dir, { recursive: true });
  const state = buildFiles(dir, memoryMiB);
  const record: TemplateRecord = {
    version: 1,
    key,
    memoryMiB,
    stateBytes: state.length,
    stateSha256: sha256(state),
    createdAt: '2026-01-02T03:04:05.000Z',
    buildMs: 1234,
    shape: { vcpus: 1 },
  };
  fs.writeFileSync(templateFiles(dir).recordPath, JSON.stringify(record));
  return record;
}

/** Writes `bytes` of data at the start of a template's memory file (the rest stays a hole). */
export function touchMemory(storeDir: string, key: string, bytes: number): void {
  const fd = fs.openSync(templateFiles(join(storeDir, key)).memoryPath, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(bytes, 1), 0, bytes, 0);
  } finally {
    fs.closeSync(fd);
  }
}
