import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  it('builds an image once per snapshot directory and reuses it', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'tern-layer-'));
    try {
      const snap = join(tmp, 'snap');
      mkdirSync(join(snap, 'etc'), { recursive: true });
      writeFileSync(join(snap, 'etc', 'hello'), 'world\n');
      const cache = join(tmp, 'cache');
      const [a, b] = await Promise.all([layerImage(snap, cache), layerImage(snap, cache)]);
      expect(a).toEqual(b);
      expect(a.serial).toMatch(/^L[0-9a-f]{19}$/);
      const st = statSync(a.image);
      expect(st.size).toBeGreaterThan(0);
      // The image really holds the file: dump.erofs / fsck.erofs can list it.
      const out = execFileSync('fsck.erofs', [`--extract=${join(tmp, 'x')}`, a.image], { encoding: 'utf8' });
      expect(typeof out).toBe('string');
      expect(readdirSync(join(tmp, 'x', 'etc'))).toEqual(['hello']);
      const again = await layerImage(snap, cache);
      expect(statSync(again.image).mtimeMs).toBe(st.mtimeMs);
      expect(readdirSync(join(cache, 'layers')).filter((f) => f.includes('.tmp-'))).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a missing directory is InvalidArgument naming it', async () => {
    await expect(layerImage('/nonexistent/snapshot/fs', tmpdir())).rejects.toThrow(/\/nonexistent\/snapshot\/fs/);
  });
});
