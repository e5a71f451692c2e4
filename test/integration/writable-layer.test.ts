// Each container's writable layer on the host's disk, through CRI with the
// real containerd and QEMU: a container in a 512 MiB VM writes 1 GiB into its
// root filesystem and reads it back intact (it could not fit in guest RAM),
// the blocks are in its file under <cache_dir>/scratch on the host, not in
// QEMU; a container's limit (annotation io.tern.rootfs-limit-mib, which
// containerd passes on through container_annotations) stops writes with
// ENOSPC near it while its earlier files stay readable, and each container
// of the pod has its own; the pod's pause container (a read-only root) gets
// no disk; the VM's writable slot (a disk it has had since boot) takes the
// first writable container's file, then, once that container is gone, the
// next one's with its own filesystem, while a second container at the same
// time gets a hot-plugged disk; a bad limit fails naming the key and the value;
// nothing is left once the pod goes. The shims use a cache directory of this
// test's own (TERN_CONFIG).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerConfig, type CriClient, type PodSandboxConfig } from '../cri';
import { runCriPod, startCriEnv, stopCriEnv, type CriEnv } from './harness/cri-env.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

const HANDLER = 'tern';
const LIMIT_KEY = 'io.tern.rootfs-limit-mib';
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** Resident memory of process `pid`, bytes. */
function rssOf(pid: number): number {
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  if (!kib) throw new Error(`no VmRSS for ${pid}`);
  return Number(kib) * 1024;
}

/** The text busybox `seq 1 N` prints. */
const seqText = (n: number) => Array.from({ length: n }, (_, i) => `${i + 1}\n`).join('');

describe('writable layer on host disk, with a limit per container', () => {
  let outer: Snapshot;
  let env: CriEnv | undefined;
  let cri: CriClient;
  let image: string;
  let pod: PodSandboxConfig;
  let podId: string;
  let qemuPid: number;
  let dir: string;
  let scratchRoot: string;
  const cgroupRoot = `tern-rwlayer-${randomBytes(3).toString('hex')}`;

  const create = async (name: string, annotations: Record<string, string> = {}) => {
    mkdirSync(join(pod.log_directory!, name), { recursive: true });
    return cri.createContainer(podId, containerConfig({ name, image, command: ['sleep', '3600'], pod, annotations }), pod);
  };
  const sh = async (id: string, script: string, timeoutSeconds = 120) => {
    const r = await cri.execSync(id, ['sh', '-c', script], timeoutSeconds);
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };
  /** The writable-layer files of this test's sandboxes. */
  const layerFiles = () =>
    readdirSync(scratchRoot).flatMap((d) =>
      readdirSync(join(scratchRoot, d))
        .filter((n) => n.endsWith('.img'))
        .map((n) => join(scratchRoot, d, n)),
    );
  /** The serials of the VM's writable disks, as the guest lists them. */
  const writableSerials = async (id: string) =>
    (await sh(id, 'for f in /sys/block/vd*/serial; do cat $f; echo; done')).out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('tern-rw'))
      .sort();
  /** The serials of hot-plugged image layers (L<key>) the guest lists: none while every layer fits a layer slot. */
  const hotpluggedLayers = async (id: string) =>
    (await sh(id, 'for f in /sys/block/vd*/serial; do cat $f; echo; done')).out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^L[0-9a-f]+$/.test(l));
  const errorOf = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error('expected the call to fail');
  };

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    dir = mkdtempSync(join(tmpdir(), 'tern-rwlayer-'));
    scratchRoot = join(dir, 'cache', 'scratch');
    const configPath = join(dir, 'config.toml');
    writeFileSync(configPath, `[runtime]\ncache_dir = ${JSON.stringify(join(dir, 'cache'))}\n`);
    env = await startCriEnv({
      runtimes: { [HANDLER]: 'io.containerd.tern.v2' },
      extraPath: [join(repoRoot(), 'build', 'bin')],
      env: { TERN_CONFIG: configPath },
      clientTimeoutMs: 120_000,
    });
    ({ cri, image } = env);
    ({ pod, podId, qemuPid } = await runCriPod(env, HANDLER, 'rwlayer', cgroupRoot));
  }, 300_000);

  afterAll(async () => {
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    expect(problems).toEqual([]);
    // Every writable layer went with its pod: no file, no directory.
    if (scratchRoot && existsSync(scratchRoot)) expect(readdirSync(scratchRoot)).toEqual([]);
    if (env) await expectNoLeaks(outer, { scope: [env.c.dir, '/run/tern'], timeoutMs: 20_000 });
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 180_000);

  it('a container in a 512 MiB VM writes 1 GiB to /var/data and reads it back; the blocks are in its file on the host, not in QEMU', async () => {
    const id = await create('writer');
    await cri.startContainer(id);
    // The guest's RAM: a tmpfs upper layer could never hold the file.
    const memTotal = Number(/^MemTotal:\s+(\d+) kB$/m.exec((await sh(id, 'cat /proc/meminfo')).out)?.[1]) * 1024;
    // Its file is in the slot: no disk was hot-plugged for it.
    expect(await writableSerials(id)).toEqual(['tern-rw-slot']);
    // Its image's layers are in the VM's layer slots: none was hot-plugged either.
    expect(await hotpluggedLayers(id)).toEqual([]);
    expect(memTotal).toBeLessThan(GIB / 2 + 64 * MIB);
    const rssBefore = rssOf(qemuPid);

    const lines = 150_000;
    const chunk = seqText(lines);
    const copies = Math.ceil(GIB / chunk.length);
    const expected = createHash('md5');
    for (let i = 0; i < copies; i++) expected.update(chunk);
    const write = await sh(
      id,
      `mkdir -p /var/data && seq 1 ${lines} > /var/data/chunk && i=0 && while [ $i -lt ${copies} ]; do cat /var/data/chunk; i=$((i+1)); done > /var/data/big && sync && wc -c < /var/data/big`,
      900,
    );
    expect(write, write.err).toMatchObject({ code: 0 });
    expect(Number(write.out.trim())).toBe(copies * chunk.length);
    const rssAfter = rssOf(qemuPid);
    // Drop the guest's clean cache, so the read comes back from the disk.
    const read = await sh(id, 'echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; md5sum /var/data/big', 900);
    expect(read, read.err).toMatchObject({ code: 0 });
    expect(read.out.split(/\s+/)[0]).toBe(expected.digest('hex'));

    // The file's blocks hold the gibibyte; QEMU grew by less than the guest's RAM, not by the write.
    const files = layerFiles();
    // The writer's only: the pod's pause container has a read-only root (CRI), so no disk.
    expect(files).toHaveLength(1);
    const allocated = Math.max(...files.map((f) => statSync(f).blocks * 512));
    expect(allocated).toBeGreaterThanOrEqual(copies * chunk.length);
    expect(rssAfter - rssBefore).toBeLessThan(memTotal);
    // The figures, for the record (not asserted beyond the above).
    console.log(
      `writable layer: wrote ${copies * chunk.length} bytes; file allocated ${allocated}; QEMU RSS ${Math.round(rssBefore / MIB)} -> ${Math.round(rssAfter / MIB)} MiB; guest MemTotal ${Math.round(memTotal / MIB)} MiB`,
    );
    const rm = await sh(id, 'rm /var/data/big && echo gone');
    expect(rm.out.trim()).toBe('gone');
    await cri.stopContainer(id, 0);
    await cri.removeContainer(id);
    expect(layerFiles()).toEqual([]);
  }, 1_800_000);

  it('a 64 MiB limit stops writes near 64 MiB with ENOSPC, earlier files intact; another container of the pod has its own 128 MiB', async () => {
    const small = await create('small', { [LIMIT_KEY]: '64' });
    const medium = await create('medium', { [LIMIT_KEY]: '128' });
    await cri.startContainer(small);
    await cri.startContainer(medium);
    // The slot, free again, took the first one's (a new filesystem on the device the writer used); the second got a disk of its own.
    const serials = await writableSerials(small);
    expect(serials).toHaveLength(2);
    expect(serials[1]).toBe('tern-rw-slot');
    expect(serials[0]).toMatch(/^tern-rw-\d+$/);
    expect(await hotpluggedLayers(small)).toEqual([]);
    expect((await sh(small, 'ls /var/data 2>&1 || true')).out).toContain('No such file');
    const fill = (id: string) =>
      // dd's complaint is kept in the shell, not in a file: the root filesystem is full by then.
      sh(id, 'echo kept > /kept && err=$(dd if=/dev/zero of=/fill bs=1M count=400 2>&1); echo "rc=$?"; echo "$err"; wc -c < /fill; cat /kept');
    const s = await fill(small);
    expect(s.out).toContain('No space left on device');
    const [sRc, sSize, sKept] = [/rc=(\d+)/.exec(s.out)?.[1], Number(s.out.trim().split('\n').at(-2)), s.out.trim().split('\n').at(-1)];
    expect(sRc).not.toBe('0');
    expect(sSize).toBeGreaterThan(48 * MIB);
    expect(sSize).toBeLessThanOrEqual(64 * MIB);
    expect(sKept).toBe('kept');

    const m = await fill(medium);
    expect(m.out).toContain('No space left on device');
    const mSize = Number(m.out.trim().split('\n').at(-2));
    expect(mSize).toBeGreaterThan(112 * MIB);
    expect(mSize).toBeLessThanOrEqual(128 * MIB);
    // The first container's file is as it was: two disks, two limits.
    expect((await sh(small, 'wc -c < /fill; cat /kept')).out.trim().split('\n')).toEqual([String(sSize), 'kept']);
    // Freed space is free again in the container, and on the host: the guest's discards punch holes in the file.
    const allocated = () => layerFiles().map((f) => statSync(f).blocks * 512);
    expect(Math.min(...allocated())).toBeGreaterThan(48 * MIB);
    expect((await sh(small, 'rm /fill && sync && dd if=/dev/zero of=/again bs=1M count=8 2>/dev/null && sync && wc -c < /again')).out.trim()).toBe(
      String(8 * MIB),
    );
    expect(Math.min(...allocated())).toBeLessThan(24 * MIB);
    for (const id of [small, medium]) {
      await cri.stopContainer(id, 0);
      await cri.removeContainer(id);
    }
  }, 600_000);

  it('a bad limit fails naming the key and the value, and makes no disk', async () => {
    const before = layerFiles();
    const word = await create('word', { [LIMIT_KEY]: 'lots' });
    expect(await errorOf(cri.startContainer(word))).toContain(`annotation ${LIMIT_KEY}="lots": want a whole number of MiB`);
    const huge = await create('huge', { [LIMIT_KEY]: '20480' });
    expect(await errorOf(cri.startContainer(huge))).toContain(
      `annotation ${LIMIT_KEY}="20480" is larger than the largest writable layer, runtime.rootfs_device_mib 10240`,
    );
    expect(layerFiles()).toEqual(before);
    for (const id of [word, huge]) await cri.removeContainer(id);
  }, 300_000);
});
