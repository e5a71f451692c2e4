// Small host files the shim copies into the guest with CreateContainer
// (CRI's /etc/hosts, /etc/resolv.conf, /etc/hostname...). They may only be
// written under the agent's own files directory, whatever the host says.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, normalize } from 'node:path';
import { invalidArgument } from '../common/errors';

export const GUEST_FILES_DIR = '/run/tern-agent/files';
const MAX_FILE = 1 << 20;

export interface GuestFileMsg {
  path: string;
  data: Buffer;
  mode: number;
}

export function checkGuestFile(containerId: string, f: GuestFileMsg): string {
  const want = `${GUEST_FILES_DIR}/${containerId}/`;
  const path = normalize(f.path);
  if (!path.startsWith(want) || path.includes('/../')) throw invalidArgument(`guest file ${f.path}: must be under ${want}`);
  if (f.data.length > MAX_FILE) throw invalidArgument(`guest file ${f.path}: ${f.data.length} bytes is over ${MAX_FILE}`);
  return path;
}

export async function writeGuestFiles(containerId: string, files: GuestFileMsg[]): Promise<void> {
  for (const f of files) {
    const path = checkGuestFile(containerId, f);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, f.data, { mode: f.mode & 0o777 || 0o644 });
  }
}

export async function removeGuestFiles(containerId: string): Promise<void> {
  if (!containerId || containerId.includes('/') || containerId.startsWith('.')) return;
  await rm(`${GUEST_FILES_DIR}/${containerId}`, { recursive: true, force: true });
}
