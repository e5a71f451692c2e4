// Rootfs: overlay over plain lower directories (test layers), block device
// discovery by serial with a deadline, and complete unmounting.
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findBlockDevice, isMountPoint, mountRootfs } from '../../../../src/agent/container/rootfs.js';
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
