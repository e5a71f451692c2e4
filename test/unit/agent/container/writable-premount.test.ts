// The writable slot's premounted filesystem, on a real ext4 behind a loop
// device standing in for the guest's slot disk (held open throughout, as the
// guest holds a disk it has had since boot): a template mounts it read-only
// with the overlay's directories; a container whose disk is a byte copy of it
// takes the mount over, writes through it, and leaves a filesystem e2fsck
// finds clean; a container with another disk in the slot gets that disk
// mounted anew, the premount dropped without a byte written to the new disk;
// a disk with no ext4 is left alone; asking for a premount the agent does not
// hold fails naming it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isMountPoint, mountRootfs, toolMounter, useWritablePremount, WRITABLE_EXT4_OPTIONS } from '../../../../src/agent/container/rootfs.js';
import { holdsExt4, WritablePremount } from '../../../../src/agent/container/writable-premount.js';
import { makeScratchImage } from '../../../../src/shim/scratch-disks.js';
import { tempDir } from './fixtures.js';

const root = tempDir('tern-premount-');
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => useWritablePremount(undefined));

const SERIAL = 'tern-rw-slot';
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const noLayers = async () => ({ path: root, release: async () => undefined });

/** A loop device over `file`, with a fake /sys/block naming it SERIAL, held open; undone by the returned function. */
function slotDevice(file: string, name: string): { dev: string; sys: string; done: () => void } {
  const dev = execFileSync('losetup', ['--find', '--show', file]).toString().trim();
  const fd = openSync(dev, 'r');
  const sys = path.join(root, `sys-${name}`);
  mkdirSync(path.join(sys, path.basename(dev)), { recursive: true });
  writeFileSync(path.join(sys, path.basename(dev), 'serial'), `${SERIAL}\n`);
  return {
    dev,
    sys,
    done: () => {
      closeSync(fd);
      execFileSync('losetup', ['-d', dev]);
    },
  };
}

/**
 * A slot whose 32 MiB filesystem a template premounted, then replaced by the
 * host with a container's own filesystem of `ownMiB` (same device, other bytes).
 */
async function premountThenReplace(name: string, ownMiB: number) {
  const slotFile = path.join(root, `slot-${name}.img`);
  await makeScratchImage(slotFile, 32, 32);
  const slot = slotDevice(slotFile, name);
  const premount = new WritablePremount(toolMounter, path.join(root, `held-${name}`), WRITABLE_EXT4_OPTIONS);
  expect(await premount.prepare(slot.dev)).toBe(true);
  const own = path.join(root, `own-${name}.img`);
  await makeScratchImage(own, 32, ownMiB);
  writeFileSync(slotFile, readFileSync(own));
  useWritablePremount(premount);
  return { slotFile, slot, premount, ownSha: sha(own) };
}

/** The mount options of whatever is mounted at `target` ('' when nothing is). */
function mountOptions(target: string): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' ')[4] === target);
  return line?.split(' ')[5] ?? '';
}

describe('WritablePremount', () => {
  it('a template premounts its slot read-only; a container whose disk is a copy of it takes the mount over and writes through it', async () => {
    const slotFile = path.join(root, 'slot-a.img');
    await makeScratchImage(slotFile, 32, 32);
    const slot = slotDevice(slotFile, 'a');
    try {
      const premount = new WritablePremount(toolMounter, path.join(root, 'held-a'), WRITABLE_EXT4_OPTIONS);
      expect(await premount.prepare(slot.dev)).toBe(true);
      expect(premount.available).toBe(true);
      expect(premount.device).toBe(slot.dev);
      expect(mountOptions(premount.dir)).toMatch(/^ro\b/);
      expect(statSync(path.join(premount.dir, 'upper')).mode & 0o777).toBe(0o755);
      expect(statSync(path.join(premount.dir, 'work')).mode & 0o777).toBe(0o700);
      expect(() => writeFileSync(path.join(premount.dir, 'upper', 'x'), 'x')).toThrow(/EROFS/);
      // The template is saved now: its file is what the host keeps, and each clone's disk a copy of it.
      const kept = path.join(root, 'kept-a.img');
      copyFileSync(slotFile, kept);
      const keptSha = sha(kept);

      useWritablePremount(premount);
      const cdir = path.join(root, 'c-a');
      const r = await mountRootfs(cdir, [], noLayers, { serial: SERIAL, fs_type: 'ext4', premounted: true }, { sysBlock: slot.sys });
      const scratch = path.join(cdir, 'scratch');
      expect(premount.available).toBe(false);
      expect(await isMountPoint(premount.dir)).toBe(false);
      expect(existsSync(premount.dir)).toBe(false);
      expect(mountOptions(scratch)).toMatch(/^rw\b/);
      writeFileSync(path.join(r.path, 'written'), 'through the premount');
      expect(readFileSync(path.join(scratch, 'upper', 'written'), 'utf8')).toBe('through the premount');
      await r.remove();
      expect(await isMountPoint(scratch)).toBe(false);
      // The disk holds a clean filesystem with the container's file: the guest's view and the disk agreed.
      execFileSync('e2fsck', ['-fn', slotFile], { stdio: 'pipe' });
      expect(execFileSync('debugfs', ['-R', 'cat /upper/written', slotFile], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()).toBe('through the premount');
      // The template's own copy is as it was.
      expect(sha(kept)).toBe(keptSha);
    } finally {
      slot.done();
    }
  });

  it('another disk put in the slot is mounted anew: the premount is dropped without writing to it', async () => {
    const { slotFile, slot, premount, ownSha } = await premountThenReplace('b', 16);
    try {
      await premount.release(path.join(root, 'not-the-slot'));
      expect(premount.available).toBe(true);
      await premount.release(slot.dev);
      expect(premount.available).toBe(false);
      expect(await isMountPoint(premount.dir)).toBe(false);
      // Dropping the read-only mount wrote nothing to the disk now in the slot.
      expect(sha(slotFile)).toBe(ownSha);

      const cdir = path.join(root, 'c-b');
      const r = await mountRootfs(cdir, [], noLayers, { serial: SERIAL, fs_type: 'ext4' }, { sysBlock: slot.sys });
      const scratch = path.join(cdir, 'scratch');
      // Its own filesystem, not the template's: 16 MiB.
      const st = statfsSync(scratch);
      expect(st.blocks * st.bsize).toBeLessThanOrEqual(16 * 1024 * 1024);
      writeFileSync(path.join(r.path, 'mine'), 'own disk');
      await r.remove();
      execFileSync('e2fsck', ['-fn', slotFile], { stdio: 'pipe' });
    } finally {
      slot.done();
    }
  });

  it('the normal path drops the premount of the device it mounts', async () => {
    const { slotFile, slot, premount } = await premountThenReplace('c', 24);
    try {
      const cdir = path.join(root, 'c-c');
      const r = await mountRootfs(cdir, [], noLayers, { serial: SERIAL, fs_type: 'ext4' }, { sysBlock: slot.sys });
      expect(premount.available).toBe(false);
      expect(await isMountPoint(premount.dir)).toBe(false);
      const st = statfsSync(path.join(cdir, 'scratch'));
      expect(st.blocks * st.bsize).toBeLessThanOrEqual(24 * 1024 * 1024);
      expect(st.blocks * st.bsize).toBeGreaterThan(16 * 1024 * 1024);
      await r.remove();
      execFileSync('e2fsck', ['-fn', slotFile], { stdio: 'pipe' });
    } finally {
      slot.done();
    }
  });

  it('a disk with no ext4 is left alone; a premount asked of an agent without one fails naming it', async () => {
    const blank = path.join(root, 'blank.img');
    writeFileSync(blank, Buffer.alloc(4 * 1024 * 1024));
    expect(await holdsExt4(blank)).toBe(false);
    const slot = slotDevice(blank, 'd');
    try {
      const premount = new WritablePremount(toolMounter, path.join(root, 'held-d'), WRITABLE_EXT4_OPTIONS);
      expect(await premount.prepare(slot.dev)).toBe(false);
      expect(premount.available).toBe(false);
      expect(existsSync(premount.dir)).toBe(false);
      await expect(premount.take(slot.dev, path.join(root, 'nowhere'))).rejects.toMatchObject({
        code: 'FailedPrecondition',
        message: expect.stringContaining('a premounted one was asked for, but the guest holds none'),
      });
      const cdir = path.join(root, 'c-d');
      await expect(mountRootfs(cdir, [], noLayers, { serial: SERIAL, fs_type: 'ext4', premounted: true }, { sysBlock: slot.sys })).rejects.toMatchObject({
        code: 'FailedPrecondition',
        message: expect.stringContaining('keeps no premounted filesystem'),
      });
      expect(await isMountPoint(path.join(cdir, 'scratch'))).toBe(false);
    } finally {
      slot.done();
    }
  });
});
