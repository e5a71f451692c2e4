// Rootfs: overlay over plain lower directories (test layers), block device
// discovery by serial with a deadline, and complete unmounting.
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statfsSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findBlockDevice, isMountPoint, LayerStore, mountRootfs } from '../../../../src/agent/container/rootfs.js';
import { makeScratchImage } from '../../../../src/shim/scratch-disks.js';
import { tempDir } from './fixtures.js';

const scratch = tempDir('tern-rootfs-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('mountRootfs', () => {
  it('stacks layers top-most first with a tmpfs upper, and removes everything', async () => {
    const top = path.join(scratch, 'top');
    const bottom = path.join(scratch, 'bottom');
    mkdirSync(top);
    mkdirSync(bottom);
    writeFileSync(path.join(top, 'f'), 'top');
    writeFileSync(path.join(bottom, 'f'), 'bottom');
    writeFileSync(path.join(bottom, 'only-bottom'), 'b');
    const released: string[] = [];
    const dirs: Record<string, string> = { top, bottom };
    const cdir = path.join(scratch, 'c1');
    const r = await mountRootfs(
      cdir,
      [
        { serial: 'top', fs_type: 'erofs' },
        { serial: 'bottom', fs_type: 'erofs' },
      ],
      async (l) => ({
        path: dirs[l.serial]!,
        release: async () => void released.push(l.serial),
      }),
    );
    expect(r.path).toBe(path.join(cdir, 'rootfs'));
    expect(readFileSync(path.join(r.path, 'f'), 'utf8')).toBe('top');
    expect(readFileSync(path.join(r.path, 'only-bottom'), 'utf8')).toBe('b');
    writeFileSync(path.join(r.path, 'new'), 'x');
    expect(existsSync(path.join(top, 'new'))).toBe(false);
    expect(await isMountPoint(path.join(cdir, 'scratch'))).toBe(true);
    await r.remove();
    await r.remove();
    expect(await isMountPoint(r.path)).toBe(false);
    expect(await isMountPoint(path.join(cdir, 'scratch'))).toBe(false);
    expect(released).toEqual(['top', 'bottom']);
  });

  it('releases what it took when a layer cannot be resolved', async () => {
    const released: string[] = [];
    const cdir = path.join(scratch, 'c2');
    await expect(
      mountRootfs(
        cdir,
        [
          { serial: 'ok', fs_type: 'erofs' },
          { serial: 'gone', fs_type: 'erofs' },
        ],
        async (l) => {
          if (l.serial === 'gone') throw new Error('no such layer');
          return { path: scratch, release: async () => void released.push(l.serial) };
        },
      ),
    ).rejects.toThrow('no such layer');
    expect(released).toEqual(['ok']);
    expect(await isMountPoint(path.join(cdir, 'scratch'))).toBe(false);
  });
});

describe('mountRootfs on a writable disk', () => {
  it('puts upper/work on the ext4 disk found by serial, bounded by its size, and unmounts it', async () => {
    const image = path.join(scratch, 'rw.img');
    await makeScratchImage(image, 32, 32);
    const loop = execFileSync('losetup', ['--find', '--show', image]).toString().trim();
    try {
      const sys = path.join(scratch, 'sys-rw');
      mkdirSync(path.join(sys, path.basename(loop)), { recursive: true });
      writeFileSync(path.join(sys, path.basename(loop), 'serial'), 'tern-rw-1\n');
      const cdir = path.join(scratch, 'c3');
      const r = await mountRootfs(
        cdir,
        [],
        async () => ({ path: scratch, release: async () => undefined }),
        { serial: 'tern-rw-1', fs_type: 'ext4' },
        { sysBlock: sys },
      );
      const upper = path.join(cdir, 'scratch');
      expect(await isMountPoint(upper)).toBe(true);
      const mount = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .find((l) => l.split(' ')[4] === upper)!;
      expect(mount).toContain(' - ext4 ');
      expect(statfsSync(upper).blocks * statfsSync(upper).bsize).toBeLessThanOrEqual(32 * 1024 * 1024);
      writeFileSync(path.join(r.path, 'written'), 'on disk');
      expect(readFileSync(path.join(upper, 'upper', 'written'), 'utf8')).toBe('on disk');
      // past the disk's size: ENOSPC, earlier files intact
      expect(() => writeFileSync(path.join(r.path, 'big'), Buffer.alloc(40 * 1024 * 1024))).toThrow(/ENOSPC/);
      expect(readFileSync(path.join(r.path, 'written'), 'utf8')).toBe('on disk');
      await r.remove();
      expect(await isMountPoint(upper)).toBe(false);
      expect(existsSync(upper)).toBe(false);
    } finally {
      execFileSync('losetup', ['-d', loop]);
    }
  });

  it('mounts the image layers while the writable disk is still to appear, and releases them when that disk fails', async () => {
    const image = path.join(scratch, 'rw-late.img');
    await makeScratchImage(image, 32, 32);
    const loop = execFileSync('losetup', ['--find', '--show', image]).toString().trim();
    try {
      const sys = path.join(scratch, 'sys-late');
      mkdirSync(path.join(sys, path.basename(loop)), { recursive: true });
      const events: string[] = [];
      // The writable disk's serial shows up 300 ms late; the layer is taken meanwhile.
      setTimeout(() => {
        events.push('disk appeared');
        writeFileSync(path.join(sys, path.basename(loop), 'serial'), 'tern-rw-late\n');
      }, 300);
      const cdir = path.join(scratch, 'c5');
      const r = await mountRootfs(
        cdir,
        [{ serial: 'layer', fs_type: 'erofs' }],
        async () => {
          events.push('layer taken');
          return { path: scratch, release: async () => void events.push('layer released') };
        },
        { serial: 'tern-rw-late', fs_type: 'ext4' },
        { sysBlock: sys },
      );
      expect(events).toEqual(['layer taken', 'disk appeared']);
      await r.remove();
      expect(events.at(-1)).toBe('layer released');

      // A writable disk that never appears: the layer taken meanwhile is given back, nothing stays mounted.
      events.length = 0;
      const cdir2 = path.join(scratch, 'c6');
      await expect(
        mountRootfs(
          cdir2,
          [{ serial: 'layer', fs_type: 'erofs' }],
          async () => {
            events.push('layer taken');
            return { path: scratch, release: async () => void events.push('layer released') };
          },
          { serial: 'tern-rw-never', fs_type: 'ext4' },
          { sysBlock: sys, timeoutMs: 200 },
        ),
      ).rejects.toThrow(/tern-rw-never/);
      expect(events).toEqual(['layer taken', 'layer released']);
      expect(existsSync(path.join(cdir2, 'scratch'))).toBe(false);
    } finally {
      execFileSync('losetup', ['-d', loop]);
    }
  });

  it('rejects a writable disk that is not ext4 before mounting anything', async () => {
    const cdir = path.join(scratch, 'c4');
    await expect(
      mountRootfs(cdir, [], async () => ({ path: scratch, release: async () => undefined }), { serial: 'tern-rw-2', fs_type: 'xfs' }),
    ).rejects.toThrow('rootfs: fs_type "xfs": want "ext4"');
    expect(existsSync(path.join(cdir, 'scratch'))).toBe(false);
  });
});

describe('LayerStore on a layer slot', () => {
  it('mounts what is in the slot now, not what an earlier layer left in the device cache', async () => {
    // Two erofs images of one size; the slot is a loop device held open
    // throughout, whose backing file's bytes change from A's to B's, as a
    // layer slot's file changes under the guest's device.
    const images = ['A', 'B'].map((mark) => {
      const src = path.join(scratch, `slot-src-${mark}`);
      mkdirSync(src);
      writeFileSync(path.join(src, 'which'), mark.repeat(100));
      const img = path.join(scratch, `slot-${mark}.erofs`);
      execFileSync('mkfs.erofs', ['--quiet', img, src]);
      execFileSync('truncate', ['-s', '4M', img]);
      return img;
    });
    const slotFile = path.join(scratch, 'slot.img');
    writeFileSync(slotFile, readFileSync(images[0]!));
    const loop = execFileSync('losetup', ['--find', '--show', '--read-only', slotFile]).toString().trim();
    // Held open, as the guest holds a disk it has had since boot: the device's cache outlives each mount.
    const held = openSync(loop, 'r');
    try {
      const sys = path.join(scratch, 'slot-sys');
      mkdirSync(path.join(sys, path.basename(loop)), { recursive: true });
      writeFileSync(path.join(sys, path.basename(loop), 'serial'), 'tern-ro-slot0\n');
      const store = new LayerStore({ runDir: path.join(scratch, 'slot-run'), sysBlock: sys, timeoutMs: 1000 });
      const first = await store.resolve({ serial: 'tern-ro-slot0', fs_type: 'erofs' });
      expect(readFileSync(path.join(first.path, 'which'), 'utf8')).toBe('A'.repeat(100));
      await first.release();
      expect(await isMountPoint(first.path)).toBe(false);
      // The host puts another layer in the slot: same device, other bytes.
      writeFileSync(slotFile, readFileSync(images[1]!));
      const second = await store.resolve({ serial: 'tern-ro-slot0', fs_type: 'erofs' });
      expect(readFileSync(path.join(second.path, 'which'), 'utf8')).toBe('B'.repeat(100));
      await second.release();
    } finally {
      closeSync(held);
      execFileSync('losetup', ['-d', loop]);
    }
  });
});

describe('findBlockDevice', () => {
  it('finds a disk by serial, also one that appears late', async () => {
    const sys = path.join(scratch, 'sys-block');
    mkdirSync(path.join(sys, 'vda'), { recursive: true });
    writeFileSync(path.join(sys, 'vda', 'serial'), 'rootdisk\n');
    expect(await findBlockDevice('rootdisk', { sysBlock: sys })).toBe('/dev/vda');
    setTimeout(() => {
      mkdirSync(path.join(sys, 'vdb'));
      writeFileSync(path.join(sys, 'vdb', 'serial'), 'layer-1');
    }, 300);
    expect(await findBlockDevice('layer-1', { sysBlock: sys, timeoutMs: 5000 })).toBe('/dev/vdb');
  });
  it('fails after the deadline naming the serial', async () => {
    await expect(findBlockDevice('missing-serial', { sysBlock: path.join(scratch, 'none'), timeoutMs: 200 })).rejects.toMatchObject({
      code: 'NotFound',
      message: expect.stringContaining('"missing-serial"'),
    });
  });
});
