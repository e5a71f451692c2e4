// Memory a finished container leaves in the guest goes back to the host,
// through CRI on a template clone: one container keeps 50 MiB of anonymous
// memory and sleeps, another reads a 300 MiB file from an image layer (an
// erofs disk: the read fills the guest's page cache with ~300 MiB, clean
// pages that a 9p volume, mounted cache=none, would not leave) and exits. QEMU's resident set rises by the read and, within 30 s of
// the exit, is back within 30 MiB of where it was: the agent reclaimed the
// page cache (memory.reclaim), the guest reported the free blocks
// (virtio-balloon free page reporting), QEMU dropped them. The sleeping
// container keeps its 50 MiB, and the template's memory file, which the
// clone maps privately, loses no page and gains none (the copy-on-write
// guard: the clone's discards punch no hole, its first touches of a hole
// are its own anonymous memory).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BEST_EFFORT_RESOURCES, containerConfig, type CriClient, type PodSandboxConfig } from '../cri';
import { createLogger } from '../../src/common/logging';
import { TemplateStore } from '../../src/shim/templates/store';
import { BIG_IMAGE, BIG_MIB, importBigImage } from './harness/big-image.js';
import { runCriPod, sleep, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

const HANDLER = 'tern';
const HOLD_MIB = 50;
/** Holes under 64 KiB stay file-backed (tern-cow-guard.c): what the clone may add to its template's file. */
const TEMPLATE_GROWTH_MAX_MIB = 16;
const MiB = 1024 * 1024;

/** QEMU's resident set in MiB. */
function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

describe('memory the guest no longer uses goes back to the host', () => {
  let outer: Snapshot;
  let env: CriEnv | undefined;
  let cri: CriClient;
  let image: string;
  let pod: PodSandboxConfig;
  let podId: string;
  let qemuPid: number;
  let work: string;
  let store: TemplateStore;
  const cgroupRoot = `tern-reclaim-${randomBytes(3).toString('hex')}`;

  const create = async (name: string, img: string, command: string[]) => {
    mkdirSync(join(pod.log_directory!, name), { recursive: true });
    const id = await cri.createContainer(podId, containerConfig({ name, image: img, command, pod, resources: BEST_EFFORT_RESOURCES }), pod);
    await cri.startContainer(id);
    return id;
  };
  const exited = async (id: string) => {
    const c = (await cri.listContainers()).find((x) => x.id === id);
    return c?.state === 'CONTAINER_EXITED';
  };
  /** The holder's anonymous resident memory (its binary's pages are clean page cache, which reclaim may take). */
  const holderRss = async (id: string) => {
    const r = await cri.execSync(id, ['grep', 'RssAnon', '/proc/1/status'], 30);
    return Number(/(\d+) kB/.exec(r.stdout.toString())?.[1] ?? 0) / 1024;
  };

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    work = mkdtempSync(join(tmpdir(), 'tern-reclaim-'));
    const cfgPath = join(work, 'tern.toml');
    const templateDir = join(work, 'templates');
    // Room for the read's page cache beside the guest's own use.
    writeFileSync(
      cfgPath,
      ['[hypervisor]', 'memory_mib = 1024', '[factory]', 'template = true', `template_dir = ${JSON.stringify(templateDir)}`, ''].join('\n'),
    );
    store = new TemplateStore(templateDir, createLogger({ name: 'test', level: 'silent' }));
    env = await startCriEnv({
      runtimes: { [HANDLER]: 'io.containerd.tern.v2' },
      runtimeOptions: { [HANDLER]: `  ConfigPath = ${JSON.stringify(cfgPath)}` },
      extraPath: [join(repoRoot(), 'build', 'bin')],
      clientTimeoutMs: 180_000,
    });
    ({ cri, image } = env);
    await importBigImage(env.c, join(work, 'image'));
    ({ pod, podId, qemuPid } = await runCriPod(env, HANDLER, 'reclaim', cgroupRoot));
  }, 600_000);

  afterAll(async () => {
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    await store?.destroyAll().catch((e: Error) => problems.push(`template store: ${e.message}`));
    if (work) rmSync(work, { recursive: true, force: true });
    expect(problems).toEqual([]);
    if (env) await expectNoLeaks(outer, { scope: [env.c.dir, '/run/tern'], timeoutMs: 20_000 });
  }, 240_000);

  it('a 300 MiB read by an exited container leaves QEMU within 30 s; a running container keeps its memory', async () => {
    const cmdline = readFileSync(`/proc/${qemuPid}/cmdline`, 'utf8');
    expect(cmdline).toContain('virtio-balloon-pci');
    expect(cmdline).toContain('share=off'); // a clone
    const memFile = /mem-path=([^,\0]+)/.exec(cmdline)![1]!;
    const templateBlocks = statSync(memFile).blocks;

    // awk holds HOLD_MIB in one string and stays (system() runs the sleep).
    const holder = await create('holder', image, ['awk', `BEGIN { s = sprintf("%${HOLD_MIB * MiB}s", ""); while (1) system("sleep 3600") }`]);
    const held = await until('the holder to hold its memory', 120_000, async () => {
      const r = await holderRss(holder);
      return r >= HOLD_MIB ? r : undefined;
    });
    // Let the starts' own page cache and reports settle, then take the baseline.
    await sleep(10_000);
    const before = rssMiB(qemuPid);

    const reader = await create('reader', BIG_IMAGE, ['sh', '-c', 'cat /big > /dev/null']);
    let peak = before;
    await until('the reader to exit', 300_000, async () => {
      peak = Math.max(peak, rssMiB(qemuPid));
      return (await exited(reader)) ? true : undefined;
    });
    const exitAt = Date.now();
    peak = Math.max(peak, rssMiB(qemuPid));
    let after = peak;
    let backAfterMs = -1;
    while (Date.now() - exitAt < 30_000) {
      after = rssMiB(qemuPid);
      if (after <= before + 30) {
        backAfterMs = Date.now() - exitAt;
        break;
      }
      await sleep(500);
    }
    console.log(
      `QEMU VmRSS: before ${before.toFixed(1)} MiB, peak ${peak.toFixed(1)} MiB, after ${after.toFixed(1)} MiB (${backAfterMs >= 0 ? `${backAfterMs} ms after the exit` : 'not back within 30 s'}); holder ${held.toFixed(1)} MiB`,
    );
    expect(peak - before).toBeGreaterThan(BIG_MIB / 2);
    expect(backAfterMs).toBeGreaterThanOrEqual(0);
    expect(after).toBeLessThanOrEqual(before + 30);
    // The running container's working set is untouched: its 50 MiB string is still resident.
    expect(await holderRss(holder)).toBeGreaterThanOrEqual(HOLD_MIB);
    // The template's memory file, which the clone maps privately, lost no
    // page to the clone's discards and gained none from its first touches of
    // the file's holes (those are the clone's own anonymous memory): the read
    // went through the clone alone, and left it.
    const templateBlocksAfter = statSync(memFile).blocks;
    console.log(
      `template memory file: ${((templateBlocks * 512) / MiB).toFixed(1)} MiB used at the pod's start, ${((templateBlocksAfter * 512) / MiB).toFixed(1)} MiB after the read`,
    );
    expect(templateBlocksAfter).toBeGreaterThanOrEqual(templateBlocks);
    expect(((templateBlocksAfter - templateBlocks) * 512) / MiB).toBeLessThan(TEMPLATE_GROWTH_MAX_MIB);
    await cri.removeContainer(reader);
    await cri.stopContainer(holder, 0);
    await cri.removeContainer(holder);
  }, 600_000);
});
