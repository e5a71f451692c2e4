// Writable-layer files on the host: a sparse, formatted ext4 of the asked
// size per container, in a directory linked to its sandbox; stale
// directories (their sandbox gone) are reaped, live ones are not.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeScratchImage, reapStaleScratch, removeScratchDir, ScratchDisks, scratchDirOf, scratchRootOf } from '../../../src/shim/scratch-disks';

const root = mkdtempSync(join(tmpdir(), 'tern-scratch-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('ScratchDisks', () => {
  it('makes a sparse disk of the device size per container, each its own file, with an ext4 of the asked size', async () => {
    const cache = join(root, 'c1');
    const sandbox = join(root, 'sb1');
    mkdirSync(sandbox);
    const disks = new ScratchDisks(scratchDirOf(cache, sandbox), sandbox, 2048);
    const [a, b] = await Promise.all([disks.make(64), disks.make(1024)]);
    expect(a.serial).not.toBe(b.serial);
    expect(a.id).not.toBe(b.id);
    expect(a.serial.length).toBeLessThanOrEqual(20);
    // every disk the device's size (it fits the VM's writable slot); the filesystem is the limit
    expect(statSync(a.file).size).toBe(2048 * 1024 * 1024);
    expect(statSync(b.file).size).toBe(2048 * 1024 * 1024);
    // sparse: a few MB of metadata at most
    expect(statSync(b.file).blocks * 512).toBeLessThan(16 * 1024 * 1024);
    expect(statSync(a.file).mode & 0o777).toBe(0o600);
    const fsBytes = (file: string) => {
      const h = execFileSync('dumpe2fs', ['-h', file], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
      return Number(/^Block count:\s+(\d+)$/m.exec(h)?.[1]) * Number(/^Block size:\s+(\d+)$/m.exec(h)?.[1]);
    };
    expect(fsBytes(a.file)).toBe(64 * 1024 * 1024);
    expect(fsBytes(b.file)).toBe(1024 * 1024 * 1024);
    const info = execFileSync('dumpe2fs', ['-h', b.file], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    expect(info).toMatch(/^Filesystem volume name:\s+tern-rootfs$/m);
    expect(info).not.toMatch(/has_journal/);
    expect(info).toMatch(/^Reserved block count:\s+0$/m);
    expect(readlinkSync(join(disks.dir, 'sandbox'))).toBe(sandbox);
    expect(lstatSync(disks.dir).mode & 0o777).toBe(0o711);
    await disks.remove(a);
    expect(existsSync(a.file)).toBe(false);
    expect(existsSync(b.file)).toBe(true);
    await removeScratchDir(disks.dir);
    expect(existsSync(disks.dir)).toBe(false);
  });

  it('leaves no file behind when formatting fails', async () => {
    const cache = join(root, 'c2');
    const sandbox = join(root, 'sb2');
    mkdirSync(sandbox);
    const disks = new ScratchDisks(scratchDirOf(cache, sandbox), sandbox, 64);
    // too small for mkfs.ext4 to make a filesystem
    await expect(disks.make(0)).rejects.toThrow(/writable layer .*rootfs1\.img/);
    expect(readdirSync(disks.dir)).toEqual(['sandbox']);
  });

  it('refuses a filesystem larger than the disk, and leaves no file', async () => {
    const dir = mkdtempSync(join(root, 'big-'));
    await expect(makeScratchImage(join(dir, 'x.img'), 32, 64)).rejects.toThrow(/a 64 MiB filesystem does not fit a 32 MiB disk/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reaps the directories whose sandbox is gone, old ones without a link, and nothing else', async () => {
    const cache = join(root, 'c3');
    const live = join(root, 'live');
    const gone = join(root, 'gone');
    mkdirSync(live);
    mkdirSync(gone);
    const liveDisks = new ScratchDisks(scratchDirOf(cache, live), live, 32);
    const goneDisks = new ScratchDisks(scratchDirOf(cache, gone), gone, 32);
    await liveDisks.make(32);
    await goneDisks.make(32);
    rmSync(gone, { recursive: true });
    const unlinkedNew = join(scratchRootOf(cache), 'fresh');
    const unlinkedOld = join(scratchRootOf(cache), 'old');
    mkdirSync(unlinkedNew);
    mkdirSync(unlinkedOld);
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(unlinkedOld, hourAgo, hourAgo);
    expect(await reapStaleScratch(cache)).toBe(2);
    expect(readdirSync(scratchRootOf(cache)).sort()).toEqual([liveDisks.dir.split('/').at(-1), 'fresh'].sort());
    expect(await reapStaleScratch(join(root, 'no-such-cache'))).toBe(0);
  });
});
