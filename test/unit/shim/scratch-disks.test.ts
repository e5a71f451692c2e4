// Writable-layer files on the host: a sparse, formatted ext4 of the asked
// size per container, in a directory linked to its sandbox; stale
// directories (their sandbox gone) are reaped, live ones are not.
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, utimesSync } from 'node:fs';
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

  it("copies the template's disk for a container of its limit (holes kept), formats a new one for another limit or when the copy fails", async () => {
    const cache = join(root, 'c-tpl');
    const sandbox = join(root, 'sb-tpl');
    mkdirSync(sandbox);
    const template = join(root, 'template-writable.img');
    await makeScratchImage(template, 256, 128);
    // What a template's guest leaves on it: a directory the copy must carry.
    execFileSync('debugfs', ['-w', '-R', 'mkdir upper', template], { stdio: 'ignore' });
    const disks = new ScratchDisks(scratchDirOf(cache, sandbox), sandbox, 256);
    const same = async () => true;
    const known = Promise.resolve({ file: template, fsMiB: 128, unchanged: same });
    const copy = await disks.make(128, known);
    expect(copy.templateCopy).toBe(true);
    expect(readFileSync(copy.file).equals(readFileSync(template))).toBe(true);
    expect(statSync(copy.file).blocks).toBeLessThanOrEqual(statSync(template).blocks);
    expect(statSync(copy.file).mode & 0o777).toBe(0o600);
    const other = await disks.make(64, known);
    expect(other.templateCopy).toBeUndefined();
    expect(execFileSync('debugfs', ['-R', 'ls -l /', other.file], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()).not.toContain('upper');
    const failures: string[] = [];
    const gone = await disks.make(128, Promise.resolve({ file: join(root, 'no-such-template.img'), fsMiB: 128, unchanged: same }), (err) =>
      failures.push(err.message),
    );
    expect(gone.templateCopy).toBeUndefined();
    expect(failures).toHaveLength(1);
    expect(failures[0]).toContain('no-such-template.img');
    expect(execFileSync('dumpe2fs', ['-h', gone.file], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()).toMatch(/^Filesystem volume name:\s+tern-rootfs$/m);
    // None when the boot has no template.
    expect((await disks.make(128, Promise.resolve(undefined))).templateCopy).toBeUndefined();
    // A template rebuilt before the copy: no copy; rebuilt during it: a copy, but not of the VM's template.
    const before = await disks.make(128, Promise.resolve({ file: template, fsMiB: 128, unchanged: async () => false }));
    expect(before.templateCopy).toBeUndefined();
    expect(readFileSync(before.file).equals(readFileSync(template))).toBe(false);
    let checks = 0;
    const during = await disks.make(128, Promise.resolve({ file: template, fsMiB: 128, unchanged: async () => ++checks === 1 }));
    expect(checks).toBe(2);
    expect(during.templateCopy).toBeUndefined();
    expect(readFileSync(during.file).equals(readFileSync(template))).toBe(true);
    await removeScratchDir(disks.dir);
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
