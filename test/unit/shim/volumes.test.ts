// Host side of host volumes, with real mounts (needs root): the shared
// directory's tmpfs, rw / ro / recursive binds into it, teardown of a
// container's volumes (also while busy), undo after a failed bind, and the
// sandbox directory's removal, which must never delete a volume's host files.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HostVolume } from '../../../src/shim/guest-spec';
import {
  createSharedDir,
  mountVolumes,
  mountsUnder,
  parseMountInfo,
  removeSandboxDir,
  sharedDirOf,
  unmountAllUnder,
  unmountVolumes,
} from '../../../src/shim/volumes';

const vol = (name: string, source: string, more: Partial<HostVolume> = {}): HostVolume => ({
  source,
  name,
  kind: 'dir',
  readOnly: false,
  recursive: false,
  ...more,
});

function writeFails(path: string): string {
  try {
    writeFileSync(path, 'x');
    return 'no error';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'unknown';
  }
}

describe('mountinfo', () => {
  const text = [
    '22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=100k',
    '30 22 0:40 / /run/tern/sb/a/shared rw shared:9 - tmpfs tern-shared rw,size=1024k',
    '31 30 8:1 /home/x /run/tern/sb/a/shared/c1/0 rw shared:1 - ext4 /dev/sda1 rw',
    '32 31 0:41 / /run/tern/sb/a/shared/c1/0/sub\\040dir rw - tmpfs tmpfs rw',
    '33 30 8:1 /home/y /run/tern/sb/a/shared/c1/1 ro - ext4 /dev/sda1 rw',
    '34 22 0:42 / /run/tern/sb/ab rw - tmpfs tmpfs rw',
    '',
  ].join('\n');

  it('parses mount points, undoing octal escapes', () => {
    const e = parseMountInfo(text);
    expect(e).toHaveLength(6);
    expect(e[3]).toMatchObject({ id: 32, parentId: 31, mountPoint: '/run/tern/sb/a/shared/c1/0/sub dir', fsType: 'tmpfs' });
    expect(e[1]).toMatchObject({ fsType: 'tmpfs', source: 'tern-shared' });
  });

  it('lists mounts under a directory deepest first, not a sibling with a longer name', () => {
    expect(mountsUnder('/run/tern/sb/a', parseMountInfo(text))).toEqual([
      '/run/tern/sb/a/shared/c1/0/sub dir',
      '/run/tern/sb/a/shared/c1/1',
      '/run/tern/sb/a/shared/c1/0',
      '/run/tern/sb/a/shared',
    ]);
    expect(mountsUnder('/run/tern/sb/a/shared/c1/1', parseMountInfo(text))).toEqual(['/run/tern/sb/a/shared/c1/1']);
  });
});

describe('host volumes (real mounts)', () => {
  let tmp = '';
  let sbDir = '';
  let shared = '';
  let src = '';

  beforeEach(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'tern-vol-'));
    sbDir = join(tmp, 'sb');
    src = join(tmp, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'in'), 'hello from the host\n');
    mkdirSync(sbDir);
    shared = await createSharedDir(sbDir);
  });

  afterEach(async () => {
    const left = await unmountAllUnder(tmp);
    rmSync(tmp, { recursive: true, force: true });
    expect(left).toEqual([]);
  });

  it('mounts a small tmpfs as the shared directory, once', async () => {
    expect(shared).toBe(sharedDirOf(sbDir));
    expect(await createSharedDir(sbDir)).toBe(shared);
    const mine = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((e) => e.mountPoint === shared);
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({ fsType: 'tmpfs', source: 'tern-shared' });
  });

  it('binds rw and ro volumes: writes reach the host through rw, ro refuses them', async () => {
    await mountVolumes(shared, 'c1', [vol('c1/0', src), vol('c1/1', src, { readOnly: true })]);
    expect(readFileSync(join(shared, 'c1/0/in'), 'utf8')).toBe('hello from the host\n');
    writeFileSync(join(shared, 'c1/0/out'), 'written\n');
    expect(readFileSync(join(src, 'out'), 'utf8')).toBe('written\n');
    expect(readFileSync(join(shared, 'c1/1/in'), 'utf8')).toBe('hello from the host\n');
    expect(writeFails(join(shared, 'c1/1/other'))).toBe('EROFS');

    await unmountVolumes(shared, 'c1');
    expect(existsSync(join(shared, 'c1'))).toBe(false);
    expect(mountsUnder(shared)).toEqual([shared]);
    expect(readdirSync(src).sort()).toEqual(['in', 'out', 'sub']);
  });

  it('binds a file, and an rbind ro volume makes its submounts read-only too', async () => {
    const sub = join(src, 'sub');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tern-test-sub', sub]);
    try {
      writeFileSync(join(sub, 'deep'), 'deep\n');
      await mountVolumes(shared, 'c2', [vol('c2/0', src, { readOnly: true, recursive: true }), vol('c2/1', join(src, 'in'), { kind: 'file', readOnly: true })]);
      expect(readFileSync(join(shared, 'c2/0/sub/deep'), 'utf8')).toBe('deep\n');
      expect(writeFails(join(shared, 'c2/0/sub/deep'))).toBe('EROFS');
      expect(readFileSync(join(shared, 'c2/1'), 'utf8')).toBe('hello from the host\n');
      expect(writeFails(join(shared, 'c2/1'))).toBe('EROFS');
      // The host's own submount stays writable.
      writeFileSync(join(sub, 'deep'), 'still rw\n');
      await unmountVolumes(shared, 'c2');
      expect(existsSync(join(shared, 'c2'))).toBe(false);
    } finally {
      execFileSync('umount', [sub]);
    }
  });

  it('unmounts a busy volume (lazily) and still removes its mount point', async () => {
    await mountVolumes(shared, 'c3', [vol('c3/0', src)]);
    const fd = openSync(join(shared, 'c3/0/in'), 'r');
    try {
      await unmountVolumes(shared, 'c3');
      expect(existsSync(join(shared, 'c3'))).toBe(false);
      expect(mountsUnder(shared)).toEqual([shared]);
    } finally {
      closeSync(fd);
    }
  });

  it('undoes what it bound when a later volume fails, and names the failure', async () => {
    const err = await mountVolumes(shared, 'c4', [vol('c4/0', src), vol('c4/1', join(tmp, 'missing'))]).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/missing/);
    expect(existsSync(join(shared, 'c4'))).toBe(false);
    expect(mountsUnder(shared)).toEqual([shared]);
  });

  it('refuses volumes named for another container', async () => {
    await expect(mountVolumes(shared, 'c5', [vol('c6/0', src)])).rejects.toThrow(/does not belong/);
    await expect(mountVolumes(shared, 'c5', [vol('c5/../x', src)])).rejects.toThrow(/does not belong/);
  });

  it('removes a sandbox directory with volumes still bound without touching their host files', async () => {
    await mountVolumes(shared, 'c7', [vol('c7/0', src), vol('c7/1', src, { readOnly: true })]);
    await removeSandboxDir(sbDir);
    expect(existsSync(sbDir)).toBe(false);
    expect(mountsUnder(tmp)).toEqual([]);
    expect(readFileSync(join(src, 'in'), 'utf8')).toBe('hello from the host\n');
    expect(readdirSync(src).sort()).toEqual(['in', 'sub']);
  });
});
