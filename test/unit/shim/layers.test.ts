import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { layersDirOf, parseLayerRecord } from '../../../src/shim/layer-files';
import { LayerPins } from '../../../src/shim/layer-pins';
import { layerImage, lowerDirsFromMounts } from '../../../src/shim/layers';

describe('rootfs mounts to layers', () => {
  it('takes overlay lowerdirs top-most first', () => {
    const dirs = lowerDirsFromMounts(
      [{ type: 'overlay', source: 'overlay', options: ['index=off', 'workdir=/s/3/work', 'upperdir=/s/3/fs', 'lowerdir=/s/2/fs:/s/1/fs'] }],
      '/b/rootfs',
    );
    expect(dirs).toEqual(['/s/2/fs', '/s/1/fs']);
  });

  it('a bind mount is one layer; no mounts means the bundle rootfs', () => {
    expect(lowerDirsFromMounts([{ type: 'bind', source: '/s/1/fs', options: ['rbind', 'ro'] }], '/b/rootfs')).toEqual(['/s/1/fs']);
    expect(lowerDirsFromMounts([], '/b/rootfs')).toEqual(['/b/rootfs']);
  });

  it('rejects what it cannot hand to the guest', () => {
    expect(() => lowerDirsFromMounts([{ type: 'nfs', source: 'x', options: [] }], '/b')).toThrow(/mount type "nfs" is not supported/);
    expect(() => lowerDirsFromMounts([{ type: 'overlay', source: 'o', options: ['upperdir=/u'] }], '/b')).toThrow(/without lowerdir/);
  });
});

describe('erofs layer images', () => {
  it('builds an image once per snapshot directory, records its source, pins it for the sandbox and reuses it', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'tern-layer-'));
    try {
      const snap = join(tmp, 'snap');
      mkdirSync(join(snap, 'etc'), { recursive: true });
      writeFileSync(join(snap, 'etc', 'hello'), 'world\n');
      const layers = layersDirOf(join(tmp, 'cache'));
      const sandboxDir = join(tmp, 'sb', 'pod');
      mkdirSync(sandboxDir, { recursive: true });
      const pins = new LayerPins(layers, sandboxDir);
      const [a, b] = await Promise.all([layerImage(snap, pins), layerImage(snap, pins)]);
      expect(a).toEqual(b);
      expect(a.serial).toMatch(/^L[0-9a-f]{19}$/);
      // The VM gets the sandbox's link; the cache holds the same inode under the key.
      expect(a.image.startsWith(`${pins.dir}/`)).toBe(true);
      const cached = readdirSync(layers).filter((f) => f.endsWith('.erofs'));
      expect(cached).toHaveLength(1);
      const st = statSync(a.image);
      expect(st.size).toBeGreaterThan(0);
      expect(st.nlink).toBe(2);
      expect(statSync(join(layers, cached[0]!)).ino).toBe(st.ino);
      const key = cached[0]!.replace(/\.erofs$/, '');
      const record = parseLayerRecord(readFileSync(join(layers, `${key}.json`), 'utf8'));
      expect(record).toMatchObject({ source: snap, ino: statSync(snap).ino, ctimeMs: statSync(snap).ctimeMs });
      // The image really holds the file: fsck.erofs can extract it.
      execFileSync('fsck.erofs', [`--extract=${join(tmp, 'x')}`, a.image], { encoding: 'utf8' });
      expect(readdirSync(join(tmp, 'x', 'etc'))).toEqual(['hello']);
      // Another sandbox pins the cached image: no rebuild, one more link.
      const other = new LayerPins(layers, join(tmp, 'sb', 'other'));
      const again = await layerImage(snap, other);
      expect(statSync(again.image).ino).toBe(st.ino);
      expect(statSync(again.image).mtimeMs).toBe(st.mtimeMs);
      expect(statSync(again.image).nlink).toBe(3);
      expect(readdirSync(layers).filter((f) => f.includes('.tmp-'))).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a missing directory is InvalidArgument naming it', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'tern-layer-'));
    try {
      await expect(layerImage('/nonexistent/snapshot/fs', new LayerPins(join(tmp, 'layers'), join(tmp, 'sb')))).rejects.toThrow(/\/nonexistent\/snapshot\/fs/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
