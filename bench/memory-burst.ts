// "Memory after a burst", tern vs runc vs gVisor through containerd's CRI: in
// one pod, a holder container keeps 50 MiB of its own and sleeps while a
// reader container reads a 300 MiB file from its image and exits. The host
// memory the runtime holds for the pod is read before the reader starts, at
// its peak, and 30 s after the reader's exit:
// - tern: the pod's QEMU RSS. The guest's page cache is host memory the host
//   cannot reclaim; tern's guest gives it back (memory.reclaim, free page
//   reporting). The VM has 1 GiB (room for the read beside the guest's own
//   use) and is a clone of a template in a store of the benchmark's own.
// - runc, gVisor: the pod cgroup's memory (cgroup v1 memory.usage_in_bytes,
//   or v2 memory.current): their processes and the page cache charged to
//   them (gVisor's sentry keeps file data in its own memory file, charged
//   there too). The host's copy of /big is dropped before each of their runs
//   (POSIX_FADV_DONTNEED, by dd), so that the read is charged to the pod.
// gVisor runs, on request only, as runsc behind containerd's runc shim
// (BinaryName): Debian ships no containerd-shim-runsc-v1, and with the runc
// shim a pod's second container does not start here (runsc 20221219: `runsc
// start` exits 0, CRI StartContainer never returns), so it is not in the
// default set. Prints the table; exit 1 if a runtime failed.
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../src/common/logging.js';
import type { Progress } from '../src/common/progress.js';
import { TemplateStore } from '../src/shim/templates/store.js';
import { BEST_EFFORT_RESOURCES, containerConfig, podConfig, type CriClient, type PodSandboxConfig } from '../test/cri';
import { BIG_IMAGE, BIG_MIB, importBigImage } from '../test/integration/harness/big-image.js';
import { CNI_CACHE, sleep, startCriEnv, stopCriEnv, until, type CriEnv } from '../test/integration/harness/cri-env.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { run } from '../test/integration/harness/run.js';
import { burstReport, type BurstFigures, type BurstResult, type BurstRuntime } from './memory-burst-report.js';
import { argAfter, processTable, rssKiB, ternPodProcs, withDescendants } from './procs.js';
import { runMainInOwnSession } from './run-main.js';

const ALL_RUNTIMES: BurstRuntime[] = ['tern', 'runc', 'gvisor'];
const DEFAULT_RUNTIMES: BurstRuntime[] = ['tern', 'runc'];
const HOLD_MIB = 50;
const MiB = 1024 * 1024;
const MEASURE: Record<BurstRuntime, string> = { tern: 'QEMU RSS', runc: 'pod cgroup memory', gvisor: 'pod cgroup memory' };

const USAGE = `usage: node dist/bench-memory.js [--runtimes tern,runc,gvisor] [--after-ms MS] [--settle-ms MS] [--timeout-ms MS] [--shim-dir DIR]...
  --runtimes   comma-separated subset of ${ALL_RUNTIMES.join(',')} (default: ${DEFAULT_RUNTIMES.join(',')})
  --after-ms   how long after the reader's exit the last figure is read (default 30000)
  --settle-ms  wait after the holder holds its memory, before the first figure (default 10000)
  --timeout-ms deadline of one CRI call (default 180000; a pod start is given at least 120000, a container create or start 60000)
  --shim-dir   directory holding containerd-shim-tern-v2, put first on containerd's PATH
               (repeatable; default: build/bin and dist of the repository)`;

interface Options {
  runtimes: BurstRuntime[];
  afterMs: number;
  settleMs: number;
  timeoutMs: number;
  shimDirs: string[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      runtimes: { type: 'string' },
      'after-ms': { type: 'string' },
      'settle-ms': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'shim-dir': { type: 'string', multiple: true },
      help: { type: 'boolean' },
    },
  });
  if (values.help) throw new Error(USAGE);
  const runtimes = (values.runtimes ?? DEFAULT_RUNTIMES.join(',')).split(',').filter(Boolean) as BurstRuntime[];
  for (const r of runtimes) if (!ALL_RUNTIMES.includes(r)) throw new Error(`unknown runtime ${r}\n${USAGE}`);
  const ms = (v: string | undefined, dflt: number, name: string) => {
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} wants a whole number of milliseconds, not ${v}\n${USAGE}`);
    return n;
  };
  return {
    runtimes,
    afterMs: ms(values['after-ms'], 30_000, 'after-ms'),
    settleMs: ms(values['settle-ms'], 10_000, 'settle-ms'),
    timeoutMs: ms(values['timeout-ms'], 180_000, 'timeout-ms'),
    shimDirs: values['shim-dir'] ?? [join(repoRoot(), 'build', 'bin'), join(repoRoot(), 'dist')],
  };
}

/** Memory of a cgroup (v1 memory controller if mounted, else v2), in MiB. */
function cgroupMemoryMiB(cgroup: string): number {
  const v1 = join('/sys/fs/cgroup/memory', cgroup, 'memory.usage_in_bytes');
  const file = existsSync('/sys/fs/cgroup/memory') ? v1 : join('/sys/fs/cgroup', cgroup, 'memory.current');
  return Number(readFileSync(file, 'utf8').trim()) / MiB;
}

/** Drops the host's page cache of every unpacked copy of /big under containerd's snapshots. */
async function dropHostCopies(env: CriEnv): Promise<void> {
  const snapshots = join(env.c.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
  for (const s of existsSync(snapshots) ? readdirSync(snapshots) : []) {
    const big = join(snapshots, s, 'fs', 'big');
    if (existsSync(big)) await run('dd', [`if=${big}`, 'iflag=nocache', 'count=0', 'status=none'], { timeoutMs: 30_000 });
  }
}

interface Bench {
  env: CriEnv;
  cri: CriClient;
  opts: Options;
  cgroupRoot: string;
  progress: Progress;
  /** Every pod run, for the cleanup after a failed one. */
  podIds: string[];
}

/**
 * What a pod that could not be removed leaves once its containerd is gone:
 * its shim (and anything below it), killed by pid, and its CNI results. Says
 * what it removed.
 */
function removeLeftovers(address: string, podIds: string[]): string[] {
  const removed: string[] = [];
  const procs = processTable();
  for (const shim of [...procs.values()].filter((p) => argAfter(p.argv, '-address') === address)) {
    for (const pid of withDescendants(shim.pid, procs)) {
      try {
        process.kill(pid, 'SIGKILL');
        removed.push(`process ${pid} (${procs.get(pid)?.comm})`);
      } catch {
        // gone meanwhile
      }
    }
  }
  const results = join(CNI_CACHE, 'results');
  for (const name of existsSync(results) ? readdirSync(results) : []) {
    if (!podIds.some((id) => name.includes(`-${id}-`))) continue;
    rmSync(join(results, name), { force: true });
    removed.push(`CNI result ${name}`);
  }
  return removed;
}

async function exited(cri: CriClient, id: string): Promise<boolean> {
  return (await cri.listContainers()).find((c) => c.id === id)?.state === 'CONTAINER_EXITED';
}

/** One pod of `runtime` through the burst; its figures. The pod is removed whatever happens. */
async function burst(b: Bench, runtime: BurstRuntime): Promise<BurstFigures> {
  const { cri, env, opts } = b;
  const uid = randomUUID();
  const logDirectory = join(env.work, 'pods', `${runtime}_${uid}`);
  const cgroupParent = `/${b.cgroupRoot}/pod${uid}`;
  const pod: PodSandboxConfig = podConfig({ name: `burst-${runtime}`, namespace: 'tern-bench', uid, logDirectory, hostname: 'burst', cgroupParent });
  const create = async (name: string, image: string, command: string[]) => {
    mkdirSync(join(logDirectory, name), { recursive: true });
    const id = await cri.createContainer(podId, containerConfig({ name, image, command, pod, resources: BEST_EFFORT_RESOURCES }), pod);
    await cri.startContainer(id);
    return id;
  };
  if (runtime !== 'tern') await dropHostCopies(env);
  b.progress.begin('pod start', undefined, runtime);
  const podId = await cri.runPodSandbox(pod, runtime);
  b.podIds.push(podId);
  try {
    const sample =
      runtime === 'tern'
        ? (() => {
            const qemu = ternPodProcs(podId, processTable()).qemu.pid;
            return () => rssKiB(qemu) / 1024;
          })()
        : () => cgroupMemoryMiB(cgroupParent);
    // awk holds HOLD_MIB in one string and stays (system() runs the sleep).
    const holder = await create('holder', env.image, ['awk', `BEGIN { s = sprintf("%${HOLD_MIB * MiB}s", ""); while (1) system("sleep 3600") }`]);
    await until('the holder to hold its memory', 120_000, async () => {
      const r = await cri.execSync(holder, ['grep', 'VmRSS', '/proc/1/status'], 30);
      return Number(/(\d+) kB/.exec(r.stdout.toString())?.[1] ?? 0) / 1024 >= HOLD_MIB ? true : undefined;
    });
    b.progress.begin('settle', undefined, runtime);
    await sleep(opts.settleMs);
    const before = sample();
    b.progress.begin('burst', undefined, runtime);
    const reader = await create('reader', BIG_IMAGE, ['sh', '-c', 'cat /big > /dev/null']);
    let peak = before;
    await until('the reader to exit', 300_000, async () => {
      peak = Math.max(peak, sample());
      return (await exited(cri, reader)) ? true : undefined;
    });
    b.progress.begin('after the burst', undefined, runtime);
    const exitAt = Date.now();
    while (Date.now() - exitAt < opts.afterMs) {
      peak = Math.max(peak, sample());
      await sleep(Math.min(500, Math.max(0, opts.afterMs - (Date.now() - exitAt))));
    }
    const after = sample();
    b.progress.done();
    return { beforeMiB: before, peakMiB: Math.max(peak, after), afterMiB: after };
  } finally {
    await cri.stopPodSandbox(podId).catch(() => undefined);
    await cri.removePodSandbox(podId).catch(() => undefined);
  }
}

async function main(progress: Progress): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  const work = mkdtempSync(join(tmpdir(), 'tern-bench-memory-'));
  const cgroupRoot = `tern-bench-memory-${randomBytes(3).toString('hex')}`;
  const templateDir = join(work, 'templates');
  const ternConfig = join(work, 'tern.toml');
  const wrapper = join(work, 'runsc-no-network');
  writeFileSync(ternConfig, `[hypervisor]\nmemory_mib = 1024\n[factory]\ntemplate = true\ntemplate_dir = ${JSON.stringify(templateDir)}\n`);
  writeFileSync(wrapper, '#!/bin/sh\n# runsc without a network stack of its own\nexec runsc --network=none "$@"\n', { mode: 0o755 });
  const store = new TemplateStore(templateDir, createLogger({ name: 'bench', level: 'silent' }));
  let env: CriEnv | undefined;
  const results: BurstResult[] = [];
  const podIds: string[] = [];
  try {
    progress.begin('starting containerd');
    env = await startCriEnv({
      runtimes: { tern: 'io.containerd.tern.v2', gvisor: 'io.containerd.runc.v2' },
      runtimeOptions: { tern: `  ConfigPath = ${JSON.stringify(ternConfig)}`, gvisor: `  BinaryName = ${JSON.stringify(wrapper)}` },
      extraPath: opts.shimDirs,
      clientTimeoutMs: opts.timeoutMs,
    });
    progress.begin('importing the big image');
    await importBigImage(env.c, join(work, 'image'));
    progress.done();
    const b: Bench = { env, cri: env.cri, opts, cgroupRoot, progress, podIds };
    for (const runtime of opts.runtimes) {
      try {
        results.push({ runtime, measure: MEASURE[runtime], figures: await burst(b, runtime) });
      } catch (e) {
        progress.fail();
        results.push({ runtime, measure: MEASURE[runtime], error: ((e as Error).message ?? String(e)).split('\n')[0] });
      }
    }
  } finally {
    progress.begin('cleaning up');
    let problems = await stopCriEnv(env ?? {}, cgroupRoot);
    if (env) {
      const removed = removeLeftovers(env.c.address, podIds);
      for (const r of removed) console.error(`cleanup: removed what a pod left: ${r}`);
      problems = problems.filter((p) => !podIds.some((id) => p.startsWith('CNI result') && p.includes(`-${id}-`)));
    }
    await store.destroyAll().catch((e: Error) => problems.push(`template store: ${e.message}`));
    rmSync(work, { recursive: true, force: true });
    progress.done();
    for (const p of problems) console.error(`cleanup: ${p}`);
  }
  const workload = `in one pod, a container reads a ${BIG_MIB} MiB file from its image and exits while another holds ${HOLD_MIB} MiB`;
  console.log(burstReport(results, workload, Math.round(opts.afterMs / 1000)));
  return results.every((r) => r.figures) ? 0 : 1;
}

runMainInOwnSession(main, 'bench-memory', 'TERN_BENCH_MEMORY_SESSION');
