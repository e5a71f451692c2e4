// Host directories bound into tern containers (`ctr run --mount type=bind,...`),
// served to the VM over virtio-9p through the sandbox's shared directory:
// a rw volume reads the host's files and the host sees what the container
// wrote; a ro volume refuses writes and the host directory stays unchanged.
// Afterwards nothing of tern is left: no processes, files or mounts.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, mountsUnder, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { sandboxDir } from '../../src/shim/paths';

const RUNTIME = 'io.containerd.tern.v2';

describe('host volumes in tern containers', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  let hostDir = '';
  let seq = 0;
  let ids: string[] = [];
  const id = (name: string) => {
    const v = `tern-vol-${name}-${++seq}`;
    ids.push(v);
    return v;
  };
  const tern = (args: string[]) => c.ctr(['run', '--rm', '--runtime', RUNTIME, ...args], { timeoutMs: 150_000 });

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
  });
  afterAll(async () => {
    await c?.stop();
  });
  beforeEach(async () => {
    before = await snapshot({ scope: [c.dir, '/run/tern'] });
    ids = [];
    hostDir = mkdtempSync(join(tmpdir(), 'tern-vol-'));
    writeFileSync(join(hostDir, 'in'), 'from the host\n');
  });
  afterEach(async () => {
    try {
      await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
      // This test's sandboxes: no mount left (the shared tmpfs, the volume binds), no directory.
      for (const v of ids) {
        const dir = sandboxDir('/run/tern', c.namespace, v);
        expect(mountsUnder(dir)).toEqual([]);
        expect(existsSync(dir)).toBe(false);
      }
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  it('a rw volume: the container reads the host file and the host sees what it wrote', async () => {
    const r = await tern([
      '--mount',
      `type=bind,src=${hostDir},dst=/data,options=rbind:rw`,
      image,
      id('rw'),
      'sh',
      '-c',
      'cat /data/in; echo out > /data/out; mkdir /data/d; echo deep > /data/d/f; ls /data',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('from the host\nd\nin\nout\n');
    expect(readFileSync(join(hostDir, 'out'), 'utf8')).toBe('out\n');
    expect(readFileSync(join(hostDir, 'd', 'f'), 'utf8')).toBe('deep\n');
    expect(readdirSync(hostDir).sort()).toEqual(['d', 'in', 'out']);
  });

  it('a container cannot reach the host through a volume: its symlinks and ".." resolve inside the guest, and the host removes them without following', async () => {
    // A host-only file the container must neither read nor overwrite, beside the volume.
    const outside = mkdtempSync(join(tmpdir(), 'tern-vol-outside-'));
    writeFileSync(join(outside, 'secret'), 'host only\n');
    try {
      const r = await tern([
        '--mount',
        `type=bind,src=${hostDir},dst=/data,options=rbind:rw`,
        image,
        id('escape'),
        'sh',
        '-c',
        [
          `ln -s ${outside} /data/to-outside`,
          'ln -s / /data/to-root',
          'cat /data/to-outside/secret 2>&1 || echo no-secret',
          `echo overwritten > /data/to-outside/secret 2>/dev/null || echo no-write`,
          `cat /data/../../..${outside}/secret 2>&1 || echo no-dotdot`,
          'echo planted > /data/to-root/tmp/planted',
          'cat /tmp/planted',
        ].join('; '),
      ]);
      expect(r.code).toBe(0);
      // Every path resolved in the guest: the host file is neither read nor written...
      expect(r.stdout).not.toContain('host only');
      expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('host only\n');
      // ...and "/" through the planted link is the guest's own root.
      expect(r.stdout.trim().split('\n').pop()).toBe('planted');
      expect(existsSync('/tmp/planted')).toBe(false);
      // The links reached the host as links; removing the pod did not follow them.
      expect(readdirSync(outside)).toEqual(['secret']);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('a ro volume: reads work, the write fails with "Read-only file system", the host is unchanged', async () => {
    const r = await tern(['--mount', `type=bind,src=${hostDir},dst=/data,options=rbind:ro`, image, id('ro'), 'sh', '-c', 'cat /data/in; echo out > /data/out']);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('from the host\n');
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(readdirSync(hostDir)).toEqual(['in']);
    expect(readFileSync(join(hostDir, 'in'), 'utf8')).toBe('from the host\n');
  });

  it('a host file over the copy limit is shared too, and the same directory twice (rw and ro) in one container', async () => {
    writeFileSync(join(hostDir, 'big'), Buffer.alloc(2 << 20, 'a'));
    const r = await tern([
      '--mount',
      `type=bind,src=${join(hostDir, 'big')},dst=/big,options=rbind:ro`,
      '--mount',
      `type=bind,src=${hostDir},dst=/rw,options=rbind:rw`,
      '--mount',
      `type=bind,src=${hostDir},dst=/ro,options=rbind:ro`,
      image,
      id('mixed'),
      'sh',
      '-c',
      'wc -c < /big; echo x > /rw/x; cat /ro/x; echo y > /ro/y || echo ro-refused',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${2 << 20}\nx\nro-refused\n`);
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(readdirSync(hostDir).sort()).toEqual(['big', 'in', 'x']);
  });
});
