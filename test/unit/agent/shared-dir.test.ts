import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  SHARED_MOUNT,
  SHARED_MOUNT_OPTIONS,
  SHARED_TAG,
  SharedDirMount,
  helperSharedDirMount,
  isMountPoint,
  usesSharedDir,
} from '../../../src/agent/shared-dir';

describe('usesSharedDir', () => {
  it('is true only for a mount whose source lies under the shared directory', () => {
    expect(usesSharedDir({})).toBe(false);
    expect(usesSharedDir({ mounts: [{ source: 'proc' }, { source: '/run/tern-agent/files/c/0' }] })).toBe(false);
    // The directory itself, or a sibling whose name begins the same, is no volume.
    expect(usesSharedDir({ mounts: [{ source: SHARED_MOUNT }, { source: `${SHARED_MOUNT}x/1` }] })).toBe(false);
    expect(usesSharedDir({ mounts: [{ source: 'tmpfs' }, { source: `${SHARED_MOUNT}/c1/0` }] })).toBe(true);
    expect(usesSharedDir({ mounts: [{}] })).toBe(false);
  });
});

describe('isMountPoint', () => {
  it('tells a mount point from a plain directory and a missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-shared-'));
    try {
      expect(isMountPoint(dir)).toBe(false);
      expect(isMountPoint(join(dir, 'missing'))).toBe(false);
      // /proc is a mount of its own on every Linux host.
      expect(isMountPoint('/proc')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SharedDirMount', () => {
  it('mounts nothing when the share is mounted already', async () => {
    let calls = 0;
    const m = new SharedDirMount(async () => {
      calls++;
    }, true);
    expect(await m.ensure()).toBe(false);
    expect(calls).toBe(0);
  });

  it('mounts once for concurrent callers, then never again', async () => {
    let calls = 0;
    let release!: () => void;
    const m = new SharedDirMount(() => {
      calls++;
      return new Promise<void>((r) => {
        release = r;
      });
    }, false);
    const a = m.ensure();
    const b = m.ensure();
    expect(m.isMounted).toBe(false);
    release();
    expect(await Promise.all([a, b])).toEqual([true, true]);
    expect(calls).toBe(1);
    expect(m.isMounted).toBe(true);
    expect(await m.ensure()).toBe(false);
    expect(calls).toBe(1);
  });

  it('passes a failure to every waiting caller and tries again on the next call', async () => {
    let calls = 0;
    const m = new SharedDirMount(async () => {
      calls++;
      if (calls === 1) throw new Error('mount: No such device');
    }, false);
    const results = await Promise.allSettled([m.ensure(), m.ensure()]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason.message).toBe('mount: No such device');
    expect(m.isMounted).toBe(false);
    expect(await m.ensure()).toBe(true);
    expect(calls).toBe(2);
    expect(m.isMounted).toBe(true);
  });

  it('markMounted (AdoptIdentity mounted it) makes ensure a no-op', async () => {
    let calls = 0;
    const m = new SharedDirMount(async () => {
      calls++;
    }, false);
    m.markMounted();
    expect(await m.ensure()).toBe(false);
    expect(calls).toBe(0);
  });
});

describe('helperSharedDirMount', () => {
  it("makes the mount point, then asks the helper for the 9p mount of tag tern-shared, read-write, with init's options", async () => {
    const base = mkdtempSync(join(tmpdir(), 'tern-shared-'));
    try {
      const dir = join(base, 'run', 'shared');
      const seen: Array<[string[], boolean]> = [];
      await helperSharedDirMount(async (f) => {
        seen.push([f, existsSync(dir)]);
      }, dir)();
      expect(seen).toEqual([[['mount', SHARED_TAG, dir, '9p', 'rw', SHARED_MOUNT_OPTIONS], true]]);
      expect(SHARED_MOUNT_OPTIONS).toBe('trans=virtio,version=9p2000.L,msize=262144,cache=none');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("mounts as a cold boot's init does (guest-image/init/init.sh)", () => {
    const init = readFileSync(join(__dirname, '..', '..', '..', 'guest-image', 'init', 'init.sh'), 'utf8');
    expect(init).toContain(`mount -t 9p -o ${SHARED_MOUNT_OPTIONS} ${SHARED_TAG} ${SHARED_MOUNT}`);
  });

  it("passes the helper's failure on", async () => {
    const base = mkdtempSync(join(tmpdir(), 'tern-shared-'));
    try {
      const mount = helperSharedDirMount(() => Promise.reject(new Error('mount: No such device')), join(base, 's'));
      await expect(mount()).rejects.toThrow('mount: No such device');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
