// Pod benchmark through containerd's CRI, tern vs runc: pod start latency
// (RunPodSandbox + CreateContainer + StartContainer of a `sleep 3600` container,
// until ContainerStatus says RUNNING) and idle pod memory (PSS sum of the host
// processes the runtime added for the pod). One private containerd with the CRI
// plugin runs inside a network namespace the benchmark creates and removes, so
// all pod traffic stays inside it. Prints tables and ratios; exit 1 if a runtime failed.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { setTimeout as sleepOrAbort } from 'node:timers/promises';
import { startContainerd, type Containerd } from '../test/integration/harness/containerd.js';
import { CRI_SANDBOX_IMAGE_CONFIG, ctrK8s, importCriImages } from '../test/integration/harness/cri-images.js';
import { CNI_CACHE, cniConfig, removeAllPods, removeCgroupTree, removeCniCacheDirs } from '../test/integration/harness/cri-env.js';
import { createNetns, netnsExists, type Netns } from '../test/integration/harness/netns.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { CriClient, containerConfig, podConfig, type PodSandboxConfig } from '../test/cri';
import { report, type MemorySample, type RuntimeName, type RuntimeResult } from './pod-start-report.js';
import { runMainInOwnSession } from './run-main.js';
import type { Progress } from '../src/common/progress.js';
import { argAfter, processTable, pssKiB, readText, ternPodPids, withDescendants, type Proc } from './procs.js';

const ALL_RUNTIMES: RuntimeName[] = ['tern', 'runc'];
/** CRI runtime handler of each runtime, as configured in the generated containerd config. */
const HANDLERS: Record<RuntimeName, { handler: string; runtimeType: string }> = {
  tern: { handler: 'tern', runtimeType: 'io.containerd.tern.v2' },
  runc: { handler: 'runc', runtimeType: 'io.containerd.runc.v2' },
};
const POD_NAMESPACE = 'tern-bench';

const USAGE = `usage: node dist/bench-pod.js [--runtimes tern,runc] [--runs N] [--density N] [--timeout-ms MS] [--settle-ms MS] [--shim-dir DIR]...
  --runtimes    comma-separated subset of ${ALL_RUNTIMES.join(',')} (default: both)
  --runs        measured pod starts per runtime (default: env BENCH_RUNS or 10); one unmeasured warm-up precedes them
  --density     also measure memory with this many idle pods at once (default: env BENCH_DENSITY, else off)
  --timeout-ms  deadline of one pod start (default 180000)
  --settle-ms   wait after the idle pods run before reading memory (default 5000)
  --shim-dir    directory holding containerd-shim-tern-v2, put first on containerd's PATH
                (repeatable; default: build/bin and dist of the repository)`;

interface Options {
  runtimes: RuntimeName[];
  runs: number;
  density: number;
  timeoutMs: number;
  settleMs: number;
  shimDirs: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits `ms`, or throws as soon as the benchmark is interrupted. */
async function pause(env: Env, ms: number): Promise<void> {
  await sleepOrAbort(ms, undefined, { signal: env.stop.signal }).catch(() => {
    throw new Error('interrupted');
  });
}

function oneLine(e: unknown): string {
  const line = ((e as Error).message ?? String(e)).trim().split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

// ---------------------------------------------------------------- environment

/** Everything the benchmark creates; filled in step by step so that cleanup handles a partial setup. */
interface Env {
  work?: string;
  ns?: Netns;
  c?: Containerd;
  cri?: CriClient;
  image?: string;
  cniCacheExisted: boolean;
  cgroupRoot: string;
  /** Aborted on SIGINT/SIGTERM/SIGHUP: no new work, waits end early. */
  stop: AbortController;
  /** Writes lines to stderr beside the progress line. */
  say: (line: string) => void;
}

async function setUp(env: Env, opts: Options): Promise<void> {
  env.work = mkdtempSync(join(tmpdir(), 'tern-bench-pod-'));
  const confDir = join(env.work, 'net.d');
  mkdirSync(confDir);
  writeFileSync(join(confDir, '10-tern-bench.conflist'), cniConfig(join(env.work, 'ipam')));
  env.ns = await createNetns('tern-bench');
  const runtimes = Object.values(HANDLERS).flatMap(({ handler, runtimeType }) => [
    `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${handler}]`,
    `  runtime_type = ${JSON.stringify(runtimeType)}`,
  ]);
  env.c = await startContainerd({
    cri: true,
    netnsPath: env.ns.path,
    extraPath: opts.shimDirs,
    criPluginConfig: [CRI_SANDBOX_IMAGE_CONFIG, '  netns_mounts_under_state_dir = true', '  stream_server_address = "127.0.0.1"'].join('\n'),
    extraConfig: [
      '[plugins."io.containerd.grpc.v1.cri".cni]',
      '  bin_dir = "/usr/lib/cni"',
      `  conf_dir = ${JSON.stringify(confDir)}`,
      '  max_conf_num = 1',
      ...runtimes,
    ].join('\n'),
  });
  ({ image: env.image } = await importCriImages(env.c));
  env.cri = new CriClient(env.c.address, { timeoutMs: opts.timeoutMs });
  const cri = env.cri;
  await pollUntil('image known to CRI', 30_000, 200, async () => ((await cri.imageStatus(env.image!)) ? true : undefined));
  await pollUntil('CRI NetworkReady', 30_000, 200, async () => {
    const conds = (await cri.status()).status?.conditions ?? [];
    return conds.find((x) => x.type === 'NetworkReady')?.status ? true : undefined;
  });
}

/** Pids of the shims containerd started (`-address <its socket>`), with everything below them. */
function shimPids(address: string): number[] {
  const procs = processTable();
  const shims = [...procs.values()].filter((p) => argAfter(p.argv, '-address') === address);
  return [...new Set(shims.flatMap((p) => withDescendants(p.pid, procs)))];
}

const ids = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/**
 * Removes every pod through CRI, then whatever CRI no longer lists (a pod whose start
 * was cancelled) with ctr in k8s.io, until no container, task or shim of this containerd
 * is left; returns a problem when the deadline passes first.
 */
async function drainPods(c: Containerd, cri: CriClient, ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    await removeAllPods(cri);
    const tasks = ids((await ctrK8s(c, ['tasks', 'ls', '-q'], 10_000)).stdout);
    const containers = ids((await ctrK8s(c, ['containers', 'ls', '-q'], 10_000)).stdout);
    const shims = shimPids(c.address);
    if (tasks.length === 0 && containers.length === 0 && shims.length === 0) return [];
    if (Date.now() > deadline) {
      return [`after ${ms} ms still there: tasks [${tasks.join(', ')}], containers [${containers.join(', ')}], shim pids [${shims.join(', ')}]`];
    }
    for (const id of tasks) {
      await ctrK8s(c, ['tasks', 'kill', '-a', '-s', 'SIGKILL', id], 10_000).catch(() => undefined);
      await ctrK8s(c, ['tasks', 'delete', '-f', id], 60_000).catch(() => undefined);
    }
    // A shim still creating its task (a VM booting) is left to finish: containerd removes it then.
    if (tasks.length === 0 && shims.length === 0) {
      for (const id of containers) await ctrK8s(c, ['containers', 'delete', id], 30_000).catch(() => undefined);
    }
    await sleep(1000);
  }
}

/**
 * Last resort after containerd is gone: whatever its shims left running gets SIGTERM
 * (a tern shim then tears its VM down), and after 20 s SIGKILL, each by pid.
 */
async function endOrphans(address: string): Promise<string[]> {
  const found = shimPids(address);
  if (found.length === 0) return [];
  const signal = (pids: number[], sig: NodeJS.Signals) => {
    for (const pid of pids) {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    }
  };
  const procs = processTable();
  signal(
    found.filter((pid) => argAfter(procs.get(pid)?.argv ?? [], '-address') === address),
    'SIGTERM',
  );
  const deadline = Date.now() + 20_000;
  while (shimPids(address).length > 0 && Date.now() < deadline) await sleep(250);
  signal(shimPids(address).reverse(), 'SIGKILL');
  return [`processes left by the shims after containerd stopped, ended: ${found.join(', ')}`];
}

/** Removes pods, containerd, cgroups, the namespace and the work folder; returns what could not be removed. */
async function tearDown(env: Env): Promise<string[]> {
  const problems: string[] = [];
  env.cri?.close();
  if (env.c) {
    // A fresh client: the benchmark's own is closed to cancel a call in flight on interruption.
    const cri = new CriClient(env.c.address, { timeoutMs: 60_000 });
    try {
      problems.push(...(await drainPods(env.c, cri, 180_000).catch((e: Error) => [`removing pods: ${oneLine(e)}`])));
    } finally {
      cri.close();
    }
    await env.c.stop().catch((e: Error) => problems.push(e.message));
    problems.push(...(await endOrphans(env.c.address)));
  }
  problems.push(...removeCgroupTree(env.cgroupRoot));
  if (!env.cniCacheExisted) removeCniCacheDirs();
  if (env.ns) {
    await env.ns.remove().catch((e: Error) => problems.push(e.message));
    if (netnsExists(env.ns.name)) problems.push(`network namespace ${env.ns.name} still exists`);
  }
  if (env.work) rmSync(env.work, { recursive: true, force: true });
  return problems;
}

/** Retries `fn` every `everyMs` until it returns a value, or throws at the deadline with the last problem. */
async function pollUntil<T>(what: string, ms: number, everyMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = oneLine(e);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms${last ? ` (last: ${last})` : ''}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- pods

interface Pod {
  podId: string;
  containerId?: string;
}

function newPodConfig(env: Env, name: string): PodSandboxConfig {
  const uid = randomUUID();
  const logDirectory = join(env.work!, 'pods', `${POD_NAMESPACE}_${name}_${uid}`);
  mkdirSync(join(logDirectory, 'idle'), { recursive: true });
  return podConfig({ name, namespace: POD_NAMESPACE, uid, logDirectory, cgroupParent: `/${env.cgroupRoot}/pod${uid}` });
}

/**
 * Runs a pod with one `sleep 3600` container and waits until the container runs;
 * returns the pod and the wall time in ms. A pod half made is removed before the error is thrown.
 */
async function startPod(env: Env, runtime: RuntimeName, name: string, timeoutMs: number): Promise<{ pod: Pod; ms: number }> {
  const cri = env.cri!;
  const config = newPodConfig(env, name);
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(1, deadline - Date.now());
  const t0 = process.hrtime.bigint();
  let pod: Pod | undefined;
  try {
    pod = { podId: await cri.runPodSandbox(config, HANDLERS[runtime].handler, { timeoutMs: left() }) };
    const ctr = containerConfig({ name: 'idle', image: env.image!, command: ['sleep', '3600'], pod: config });
    pod.containerId = await cri.createContainer(pod.podId, ctr, config, { timeoutMs: left() });
    await cri.startContainer(pod.containerId, { timeoutMs: left() });
    const id = pod.containerId;
    await pollUntil(`container ${id} running`, left(), 10, async () => {
      const s = (await cri.containerStatus(id, false, { timeoutMs: left() })).status;
      if (s?.state === 'CONTAINER_EXITED') throw new Error(`container ${id} exited with ${s.exit_code}`);
      return s?.state === 'CONTAINER_RUNNING' ? true : undefined;
    });
    return { pod, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
  } catch (e) {
    if (pod) await removePod(env, pod).catch(() => undefined);
    throw e;
  }
}

/** Kubelet order: the container killed and removed, then the sandbox stopped and removed. */
async function removePod(env: Env, pod: Pod): Promise<void> {
  const cri = env.cri!;
  if (pod.containerId) {
    await cri.stopContainer(pod.containerId, 0);
    await cri.removeContainer(pod.containerId);
  }
  await cri.stopPodSandbox(pod.podId);
  await cri.removePodSandbox(pod.podId);
}

// ---------------------------------------------------------------- host processes and PSS

/**
 * What a process is, for the breakdown: the tern shim, the pod's pause or app
 * container (a runc container process, told apart by its cgroup path, which
 * names the container id), else its program name.
 */
function kindOf(p: Proc, pod: Pod): string {
  if (p.argv.includes('-id') && p.argv.some((a) => /containerd-shim-tern-v2|shim\.js$/.test(a))) return 'containerd-shim-tern-v2';
  const name = basename(p.argv[0] ?? p.comm);
  const cgroup = readText(`/proc/${p.pid}/cgroup`) ?? '';
  if (pod.containerId && cgroup.includes(pod.containerId)) return `container (${name})`;
  if (cgroup.includes(pod.podId)) return `pause (${name})`;
  return name;
}

/** runc: the runc shim started for the sandbox (`-id <sandbox id>`) and its descendants (pause, sleep). */
function runcPodPids(sandboxId: string, procs: Map<number, Proc>): number[] {
  const shims = [...procs.values()].filter((p) => /^containerd-shim-runc/.test(basename(p.argv[0] ?? '')) && argAfter(p.argv, '-id') === sandboxId);
  if (shims.length !== 1) throw new Error(`expected one runc shim with -id ${sandboxId}, found ${shims.length}`);
  const pids = withDescendants(shims[0]!.pid, procs);
  if (pids.length < 3) throw new Error(`runc pod ${sandboxId}: expected shim, pause and sleep, found ${pids.length} processes`);
  return pids;
}

/** One reading of the PSS of every process the runtime added for these pods. */
function readPodMemory(runtime: RuntimeName, pods: Pod[]): MemorySample {
  const procs = processTable();
  const owner = new Map<number, Pod>();
  for (const pod of pods) {
    for (const pid of runtime === 'tern' ? ternPodPids(pod.podId, procs) : runcPodPids(pod.podId, procs)) {
      if (owner.has(pid)) throw new Error(`pid ${pid} counted for two pods (${owner.get(pid)!.podId}, ${pod.podId})`);
      owner.set(pid, pod);
    }
  }
  const byKind = new Map<string, number>();
  let total = 0;
  for (const [pid, pod] of owner) {
    const kib = pssKiB(pid);
    total += kib;
    const kind = kindOf(procs.get(pid)!, pod);
    byKind.set(kind, (byKind.get(kind) ?? 0) + kib);
  }
  return { pods: pods.length, kibPerPod: total / pods.length, byKind, processes: owner.size };
}

/** Starts `count` idle pods, lets them settle, reads memory three times 1 s apart (median), removes them. */
async function measureMemory(env: Env, runtime: RuntimeName, count: number, opts: Options): Promise<MemorySample> {
  const pods: Pod[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const { pod, ms } = await startPod(env, runtime, `mem-${runtime}-${count}-${i}`, opts.timeoutMs);
      pods.push(pod);
      env.say(`${runtime}: idle pod ${i + 1}/${count} running after ${(ms / 1000).toFixed(2)} s`);
    }
    await pause(env, opts.settleMs);
    const samples: MemorySample[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await pause(env, 1000);
      samples.push(readPodMemory(runtime, pods));
    }
    samples.sort((a, b) => a.kibPerPod - b.kibPerPod);
    return samples[1]!;
  } finally {
    for (const pod of pods) {
      await removePod(env, pod).catch((e) => {
        if (!env.stop.signal.aborted) env.say(`${runtime}: removing pod ${pod.podId}: ${oneLine(e)}`);
      });
    }
  }
}

// ---------------------------------------------------------------- main

function parseOptions(): Options | number {
  const { values } = parseArgs({
    options: {
      runtimes: { type: 'string' },
      runs: { type: 'string' },
      density: { type: 'string' },
      'timeout-ms': { type: 'string' },
      'settle-ms': { type: 'string' },
      'shim-dir': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const runtimes = (values.runtimes ?? ALL_RUNTIMES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = runtimes.find((r) => !ALL_RUNTIMES.includes(r as RuntimeName));
  const opts: Options = {
    runtimes: [...new Set(runtimes)] as RuntimeName[],
    runs: Number(values.runs ?? process.env.BENCH_RUNS ?? 10),
    density: Number(values.density ?? (process.env.BENCH_DENSITY || 0)),
    timeoutMs: Number(values['timeout-ms'] ?? 180_000),
    settleMs: Number(values['settle-ms'] ?? 5_000),
    shimDirs: values['shim-dir'] ?? [join(repoRoot(), 'build', 'bin'), join(repoRoot(), 'dist')],
  };
  const intOk = (n: number, min: number) => Number.isInteger(n) && n >= min;
  if (bad !== undefined || runtimes.length === 0 || !intOk(opts.runs, 1) || !intOk(opts.density, 0) || !intOk(opts.timeoutMs, 1) || !intOk(opts.settleMs, 0)) {
    console.error(`${bad !== undefined ? `unknown runtime "${bad}"` : 'bad option value'}\n${USAGE}`);
    return 2;
  }
  return opts;
}

async function main(progress: Progress): Promise<number> {
  const parsed = parseOptions();
  if (typeof parsed === 'number') return parsed;
  const opts = parsed;
  const env: Env = {
    cniCacheExisted: existsSync(CNI_CACHE),
    cgroupRoot: `tern-bench-${randomBytes(3).toString('hex')}`,
    stop: new AbortController(),
    say: (line) => progress.print(`${line}\n`),
  };
  const interrupted = () => env.stop.signal.aborted;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted()) {
      progress.print(`${sig}: cleanup already under way\n`);
      return;
    }
    env.stop.abort();
    progress.print(`${sig}: stopping; removing pods, containerd and the network namespace\n`);
    // Cancels the call in flight; teardown removes what it leaves with a client of its own.
    env.cri?.close();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let code = 0;
  try {
    progress.begin('setting up containerd, the network namespace and the images');
    await setUp(env, opts);
    progress.done();
    console.error(`pod benchmark: ${opts.runs} runs per runtime (+1 warm-up), containerd ${env.c!.dir} in netns ${env.ns!.name}`);
    const results: RuntimeResult[] = opts.runtimes.map((name) => ({ name, timesMs: [], memory: [] }));
    // Warm-up, then runtimes interleaved run by run so that drift affects all of them alike.
    // Progress: one step per round (all runtimes once), the runtime running now as its detail.
    for (let i = -1; i < opts.runs; i++) {
      if (i < 0) progress.begin('warm-up pod');
      else progress.begin('pod start', { current: i + 1, total: opts.runs });
      for (const r of results) {
        if (r.error !== undefined || interrupted()) continue;
        const name = `lat-${r.name}-${i < 0 ? 'warmup' : i}`;
        progress.update({ detail: r.name });
        try {
          const { pod, ms } = await startPod(env, r.name, name, opts.timeoutMs);
          progress.print(`${r.name}: ${name} ${(ms / 1000).toFixed(3)} s\n`);
          if (i >= 0) r.timesMs.push(ms);
          await removePod(env, pod);
        } catch (e) {
          r.error = oneLine(e);
          if (!interrupted()) progress.print(`${r.name}: ${name} failed: ${(e as Error).message}\n`);
        }
      }
    }
    const sizes = [1, ...(opts.density > 1 ? [opts.density] : [])];
    let measured = 0;
    for (const r of results) {
      for (const n of sizes) {
        measured++;
        if (r.memoryError !== undefined || interrupted()) continue;
        progress.begin('idle memory', { current: measured, total: results.length * sizes.length }, `${r.name}, ${n} pod(s)`);
        try {
          r.memory.push(await measureMemory(env, r.name, n, opts));
        } catch (e) {
          r.memoryError = oneLine(e);
          if (!interrupted()) progress.print(`${r.name}: memory with ${n} pods failed: ${(e as Error).message}\n`);
        }
      }
    }
    progress.done();
    if (interrupted()) {
      code = 130;
    } else {
      console.log(report(results, opts));
      code = results.some((r) => r.error !== undefined || r.memoryError !== undefined) ? 1 : 0;
    }
  } finally {
    progress.begin('cleaning up');
    const problems = await tearDown(env);
    progress.done();
    for (const p of problems) console.error(`cleanup: ${p}`);
    if (problems.length > 0 && code === 0) code = 1;
    for (const s of signals) process.off(s, onSignal);
  }
  return code;
}

runMainInOwnSession(main, 'pod benchmark', 'TERN_BENCH_POD_SESSION');
