// The layer cache with the real containerd and QEMU: layer images of an image
// that containerd removed go at the next sandbox teardown and at `tern gc`,
// while the layer a running pod uses stays (and the pod keeps working). The
// shims use a cache directory of this test's own (TERN_CONFIG).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { importLayeredImage } from './harness/layered-image.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { run } from './harness/run.js';
import { ternJs, waitForTask } from './harness/tern-cli.js';
import { waitFor, waitGone } from './harness/wait.js';
import { sandboxDir } from '../../src/shim/paths';

const RUNTIME = 'io.containerd.tern.v2';
const EXTRA_1 = 'docker.io/tern/gc-extra:one';
const EXTRA_2 = 'docker.io/tern/gc-extra:two';
const EXTRA_3 = 'docker.io/tern/gc-extra:three';

describe('layer cache collection', () => {
  let c: Containerd;
  let image: string;
  let dir: string;
  let configPath: string;
  let layers: string;

  /** The layer images in the cache (keys), sorted. */
  const cached = (): string[] =>
    readdirSync(layers)
      .filter((n) => /^[0-9a-f]{64}\.erofs$/.test(n))
      .map((n) => n.slice(0, 64))
      .sort();
  const recordOf = (key: string) => JSON.parse(readFileSync(join(layers, `${key}.json`), 'utf8')) as { source: string };
  const runRm = (ref: string, name: string) => c.ctr(['run', '--rm', '--runtime', RUNTIME, ref, name, 'cat', '/gc-extra'], { timeoutMs: 150_000 });
  /** Removes an image and waits until containerd has removed its snapshot directory `source`. */
  const removeImage = async (ref: string, source: string) => {
    expect((await c.ctr(['images', 'rm', '--sync', ref])).code).toBe(0);
    await waitFor(`snapshot ${source} removed`, () => (existsSync(source) ? undefined : true), 30_000);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tern-layer-gc-'));
    configPath = join(dir, 'config.toml');
    layers = join(dir, 'cache', 'layers');
    writeFileSync(configPath, `[runtime]\ncache_dir = ${JSON.stringify(join(dir, 'cache'))}\n`);
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')], env: { TERN_CONFIG: configPath } });
    image = await importTestImage(c);
    await importLayeredImage(c, EXTRA_1, 'gc-extra', 'one\n');
    await importLayeredImage(c, EXTRA_2, 'gc-extra', 'two\n');
    await importLayeredImage(c, EXTRA_3, 'gc-extra', 'three\n');
  });
  afterAll(async () => {
    await c?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('removes the layers of removed images at the next teardown and at tern gc; a running pod keeps its layer', async () => {
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });
    const pod = 'tern-gc-pod';
    expect((await c.ctr(['run', '-d', '--runtime', RUNTIME, image, pod, 'sleep', '1000'], { timeoutMs: 150_000 })).code).toBe(0);
    try {
      await waitForTask(c, pod, 'RUNNING');
      const base = cached();
      expect(base).toHaveLength(1);
      // The pod pins it: a hard link in its own pins directory.
      const pinDirs = readdirSync(join(layers, 'users')).filter((n) => !n.startsWith('.'));
      expect(pinDirs).toHaveLength(1);
      expect(readdirSync(join(layers, 'users', pinDirs[0]!)).sort()).toEqual([`${base[0]}.erofs`, 'sandbox']);

      // A container of the first extra image: its own top layer joins the cache.
      const one = await runRm(EXTRA_1, 'tern-gc-one');
      expect(one).toMatchObject({ code: 0, stdout: 'one\n' });
      const withOne = cached();
      expect(withOne).toHaveLength(2);
      const layerOne = withOne.find((k) => !base.includes(k))!;
      // Its container is gone, its image not yet: the layer stays (its snapshot is still there).
      await removeImage(EXTRA_1, recordOf(layerOne).source);
      expect(cached()).toEqual(withOne);

      // The next sandbox's teardown collects the layer whose snapshot is gone.
      const two = await runRm(EXTRA_2, 'tern-gc-two');
      expect(two).toMatchObject({ code: 0, stdout: 'two\n' });
      const afterTwo = cached();
      expect(afterTwo).not.toContain(layerOne);
      expect(existsSync(join(layers, `${layerOne}.json`))).toBe(false);
      expect(afterTwo).toEqual(expect.arrayContaining(base));
      expect(afterTwo).toHaveLength(2);
      const layerTwo = afterTwo.find((k) => !base.includes(k))!;

      // tern gc collects the second one once its image is gone; the pod's layer stays, in use.
      await removeImage(EXTRA_2, recordOf(layerTwo).source);
      const gc = await run(process.execPath, [ternJs, 'gc', '--json', '--config', configPath], { timeoutMs: 60_000 });
      expect(gc.code).toBe(0);
      const report = JSON.parse(gc.stdout) as { removed: Array<{ key: string; reason: string }>; kept: Array<{ key: string; reason: string; users: number }> };
      expect(report.removed.map((r) => [r.key, r.reason])).toEqual([[layerTwo, 'source-gone']]);
      expect(report.kept).toEqual([expect.objectContaining({ key: base[0], reason: 'in-use', users: 1 })]);
      expect(cached()).toEqual(base);

      // The running pod still reads its layer.
      const ex = await c.ctr(['task', 'exec', '--exec-id', 'probe', pod, 'ls', '/bin/busybox']);
      expect(ex).toMatchObject({ code: 0, stdout: '/bin/busybox\n' });
    } finally {
      await c.ctr(['task', 'kill', '-s', 'SIGKILL', pod]);
      await waitForTask(c, pod, 'STOPPED', 60_000).catch(() => undefined);
      await c.ctr(['task', 'rm', pod], { timeoutMs: 60_000 });
      await c.ctr(['containers', 'rm', pod]);
    }
    // The pod gone, its pins are released; its layer's image is still there, so the layer stays.
    expect(readdirSync(join(layers, 'users')).filter((n) => !n.startsWith('.'))).toEqual([]);
    expect(cached()).toHaveLength(1);
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
  });

  it('delete after a dead shim releases the pod pins, removes its writable layer and collects the cache; starting a pod collects nothing', async () => {
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });
    // Garbage first: the layer of an image removed after its container ran.
    const base = cached();
    expect(await runRm(EXTRA_3, 'tern-gc-three')).toMatchObject({ code: 0, stdout: 'three\n' });
    const layerThree = cached().find((k) => !base.includes(k))!;
    expect(layerThree).toBeDefined();
    await removeImage(EXTRA_3, recordOf(layerThree).source);

    const pod = 'tern-gc-dead-shim';
    // --null-io: ctr itself would leave its client FIFO directory behind once the task vanishes under it.
    expect((await c.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, image, pod, 'sleep', '1000'], { timeoutMs: 150_000 })).code).toBe(0);
    await waitForTask(c, pod, 'RUNNING');
    // A start lists no directory and removes nothing: the garbage is still there.
    expect(cached()).toContain(layerThree);
    const pins = readdirSync(join(layers, 'users')).filter((n) => !n.startsWith('.'));
    expect(pins).toHaveLength(1);
    // Its writable layer: one file in the sandbox's scratch directory.
    const scratch = join(dir, 'cache', 'scratch');
    const scratchDirs = readdirSync(scratch);
    expect(scratchDirs).toHaveLength(1);
    expect(readdirSync(join(scratch, scratchDirs[0]!)).sort()).toEqual(['rootfs1.img', 'sandbox']);
    const record = JSON.parse(readFileSync(join(sandboxDir('/run/tern', c.namespace, pod), 'sandbox.json'), 'utf8')) as { shimPid: number };
    process.kill(record.shimPid, 'SIGKILL');
    await waitGone('shim gone', record.shimPid);
    // containerd notices the dead shim and runs `containerd-shim-tern-v2 delete`: the ledger's layer-pins step.
    await waitFor('the dead pod pins released', () => (existsSync(join(layers, 'users', pins[0]!)) ? undefined : true), 60_000);
    await waitFor('the removed image layer collected', () => (cached().includes(layerThree) ? undefined : true), 30_000);
    expect(cached()).toEqual(base);
    expect(existsSync(join(layers, `${layerThree}.json`))).toBe(false);
    // The ledger's scratch-disks step: the dead pod's writable layer is gone with its directory.
    await waitFor('the dead pod writable layer removed', () => (readdirSync(scratch).length === 0 ? true : undefined), 30_000);
    await waitFor('task stopped or gone', async () => {
      const ls = (await c.ctr(['task', 'ls'])).stdout;
      return ls.split('\n').some((l) => l.split(/\s+/)[0] === pod && !l.includes('STOPPED')) ? undefined : true;
    });
    await c.ctr(['task', 'rm', '-f', pod]);
    expect(await c.ctr(['containers', 'rm', pod])).toMatchObject({ code: 0 });
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
  });
});
