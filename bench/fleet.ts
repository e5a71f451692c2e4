// Fleet benchmark through ctr on a private containerd: concurrent starts and
// idle density, for tern (VMs cloned from a template, or booted cold), runc
// and gVisor in the same run.
//   concurrency: N `ctr run --rm <image> <id> /bin/true` launched at once; the
//     wall time until every one has exited (so every process has run).
//   density: N `ctr run -d <image> <id> sleep 3600` running idle; the PSS sum of
//     every host process the runtime added for them (tern: shim + QEMU; runc and
//     gVisor: the shim and everything under it), divided by N; optionally again
//     after KSM has scanned them. For tern the template's memory (a tmpfs file
//     the clones map copy-on-write) is shown on its own line: the clones' PSS
//     already carries the share of it they map.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { importTestImage, startContainerd, type Containerd } from '../test/integration/harness/containerd.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { BenchPool } from './pool.js';
import { runtimeArgs as ctrArgsFor, writeRuntimeFiles, type RuntimeFiles, type RuntimeName } from './runtimes.js';
import { runMain } from './run-main.js';
import type { Progress } from '../src/common/progress.js';
import { argAfter, hostCpuMs, processTable, pssKiB, ternPodPids, withDescendants, type Proc } from './procs.js';
import { procCpuMs } from '../src/common/proc.js';
import { defaultConfig } from '../src/common/config.js';
import { hostSubtitle, saveCharts, type ChartOutput } from './chart-out.js';
import { concurrencyChart, densityChart, type ConcurrencyRow, type DensityRow } from './plot.js';

const ALL_RUNTIMES: RuntimeName[] = ['tern-template', 'tern-pool', 'tern-cold', 'runc', 'gvisor'];
const DEFAULT_RUNTIMES: RuntimeName[] = ['tern-template', 'tern-pool', 'runc', 'gvisor'];
const KSM = '/sys/kernel/mm/ksm';
const TEMPLATE_DIR = '/run/tern/templates';

const USAGE = `usage: node dist/bench-fleet.js [--runtimes LIST] [--concurrency N,N] [--density N,N] [--ksm] [--timeout-ms MS] [--shim-dir DIR]...
  --runtimes     comma-separated subset of ${ALL_RUNTIMES.join(',')} (default: ${DEFAULT_RUNTIMES.join(',')})
                 tern-pool runs \`tern pool serve\` with as many VMs as the largest count, full before each measurement;
                 its density counts the pool process's share, and its idle VMs are shown on their own line
  --concurrency  container counts started at once (default 10,20; "" to skip)
  --density      idle container counts for the memory reading (default 10,20; "" to skip)
  --ksm          also read memory after KSM has merged pages (turns KSM on, restores it after)
  --settled-s    also read memory and idle CPU this many seconds after the starts, when the guests'
                 own after-start work (their memory reclaim after 60 quiet seconds) is done (default 75; 0 skips)
  --timeout-ms   deadline of one ctr command (default 600000)
  --shim-dir     directory holding containerd-shim-tern-v2 (repeatable; default: build/bin and dist)`;

interface Setup {
  c: Containerd;
  image: string;
  files: RuntimeFiles;
  timeoutMs: number;
  /** The warm pool for tern-pool (sized for the largest count), waited full before each of its measurements. */
  pool?: BenchPool;
}

const runtimeArgs = (r: RuntimeName, s: Setup): string[] => ctrArgsFor(r, s.files);

function oneLine(e: unknown): string {
  const line = ((e as Error).message ?? String(e)).trim().split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

async function ctrOk(s: Setup, args: string[]): Promise<string> {
  const r = await s.c.ctr(args, { timeoutMs: s.timeoutMs });
  if (r.code !== 0) throw new Error(`ctr ${args.slice(0, 2).join(' ')} exited ${r.code}: ${oneLine(r.stderr || r.stdout)}`);
  return r.stdout;
}

let seq = 0;
const newId = (r: RuntimeName, what: string) => `fleet-${r}-${what}-${++seq}`;

interface ConcurrentRun {
  wallS: number;
  /** Host CPU-seconds (every process, /proc/stat) during the run, per container. */
  hostCpuSPerStart: number;
  /** Share of the host's CPU time that was busy during the run. */
  busy: number;
}

/** N containers started at once, until all have run /bin/true and exited; and what the host's CPUs did meanwhile. */
async function concurrent(s: Setup, r: RuntimeName, n: number): Promise<ConcurrentRun> {
  if (r === 'tern-pool') await s.pool!.waitFull();
  const ids = Array.from({ length: n }, () => newId(r, `c${n}`));
  const cpu0 = hostCpuMs();
  const t0 = performance.now();
  const results = await Promise.allSettled(ids.map((id) => ctrOk(s, ['run', '--rm', ...runtimeArgs(r, s), s.image, id, '/bin/true'])));
  const ms = performance.now() - t0;
  const cpu1 = hostCpuMs();
  const failed = results.filter((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (failed.length > 0) throw new Error(`${failed.length}/${n} failed: ${oneLine(failed[0]!.reason)}`);
  const busyMs = cpu1.busyMs - cpu0.busyMs;
  return { wallS: ms / 1000, hostCpuSPerStart: busyMs / 1000 / n, busy: busyMs / Math.max(1, cpu1.totalMs - cpu0.totalMs) };
}

/** The shim of a ctr container (-id <id>) and everything below it. */
function shimTreePids(id: string, procs: Map<number, Proc>): number[] {
  const shims = [...procs.values()].filter((p) => /^containerd-shim-runc/.test(basename(p.argv[0] ?? '')) && argAfter(p.argv, '-id') === id);
  if (shims.length !== 1) throw new Error(`expected one shim with -id ${id}, found ${shims.length}`);
  return withDescendants(shims[0]!.pid, procs);
}

interface MemoryReading {
  kibPerContainer: number;
  processes: number;
  pids: number[];
}

/**
 * How long the idle pods' CPU is sampled: one health-check interval (the
 * default config's), so that the window holds each pod's check exactly once;
 * a shorter one would hold it or not, by where the starts fell.
 */
const IDLE_CPU_WINDOW_MS = defaultConfig().agent.healthIntervalMs || 20_000;
/** The first reading begins this long after the starts. */
const FIRST_READING_MS = 5_000;

interface IdleReading {
  memory: MemoryReading;
  cpuMsPerS: number;
}

/** PSS now, then the processes' host CPU over IDLE_CPU_WINDOW_MS, per container. */
async function idleReading(r: RuntimeName, ids: string[], shared: number[]): Promise<IdleReading> {
  const memory = readMemory(r, ids, shared);
  const cpu0 = cpuMsOf(memory.pids);
  await new Promise((res) => setTimeout(res, IDLE_CPU_WINDOW_MS));
  return { memory, cpuMsPerS: (cpuMsOf(memory.pids) - cpu0) / (IDLE_CPU_WINDOW_MS / 1000) / ids.length };
}

/** Host CPU (ms) the processes have used so far; one that is gone counts 0. */
function cpuMsOf(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + (procCpuMs(pid) ?? 0), 0);
}

function readMemory(r: RuntimeName, ids: string[], shared: number[] = []): MemoryReading {
  const procs = processTable();
  const pids = new Set<number>(shared);
  for (const id of ids) for (const pid of r.startsWith('tern') ? ternPodPids(id, procs) : shimTreePids(id, procs)) pids.add(pid);
  let total = 0;
  for (const pid of pids) total += pssKiB(pid);
  return { kibPerContainer: total / ids.length, processes: pids.size, pids: [...pids] };
}

function ksmValue(name: string): string {
  return readFileSync(join(KSM, name), 'utf8').trim();
}

/** Turns KSM on, fast, and waits for two full scans after the containers started. */
async function withKsm<T>(fn: () => Promise<T>): Promise<T> {
  const saved = { run: ksmValue('run'), pages: ksmValue('pages_to_scan'), sleep: ksmValue('sleep_millisecs') };
  const restore = () => {
    writeFileSync(join(KSM, 'run'), '2'); // unmerge everything
    writeFileSync(join(KSM, 'run'), saved.run === '2' ? '0' : saved.run);
    writeFileSync(join(KSM, 'pages_to_scan'), saved.pages);
    writeFileSync(join(KSM, 'sleep_millisecs'), saved.sleep);
  };
  // Also when the benchmark is interrupted (the signal handler exits the process).
  process.once('exit', restore);
  try {
    writeFileSync(join(KSM, 'pages_to_scan'), '20000');
    writeFileSync(join(KSM, 'sleep_millisecs'), '10');
    writeFileSync(join(KSM, 'run'), '1');
    const start = Number(ksmValue('full_scans'));
    const deadline = Date.now() + 300_000;
    // ksmd does not scan at all when no process has mergeable memory (runc, gVisor
    // here): then pages_scanned stands still and there is nothing to wait for.
    let scanned = ksmValue('pages_scanned');
    let stillSince = Date.now();
    while (Number(ksmValue('full_scans')) < start + 2) {
      if (Date.now() > deadline) throw new Error('KSM did not finish two full scans within 300 s');
      await new Promise((res) => setTimeout(res, 500));
      const now = ksmValue('pages_scanned');
      if (now !== scanned) {
        scanned = now;
        stillSince = Date.now();
      } else if (Date.now() - stillSince > 10_000) break;
    }
    return await fn();
  } finally {
    process.off('exit', restore);
    restore();
  }
}

async function density(
  s: Setup,
  r: RuntimeName,
  n: number,
  ksm: boolean,
  settledMs: number,
): Promise<{ plain: MemoryReading; ksm?: MemoryReading; startS: number; idleCpuMsPerS: number; settled?: IdleReading }> {
  const ids: string[] = [];
  // The pool process serves every pod on the node: its share is counted.
  const shared = r === 'tern-pool' && s.pool ? [s.pool.pid] : [];
  try {
    if (r === 'tern-pool') await s.pool!.waitFull();
    const t0 = performance.now();
    // Every start is waited for, failed or not, so that the cleanup below finds them all.
    const started = await Promise.allSettled(
      Array.from({ length: n }, async () => {
        const id = newId(r, `d${n}`);
        ids.push(id);
        // --null-io: ctr would leave its FIFO directory behind for a killed detached task.
        await ctrOk(s, ['run', '-d', '--null-io', ...runtimeArgs(r, s), s.image, id, 'sleep', '3600']);
      }),
    );
    const failed = started.filter((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed.length > 0) throw new Error(`${failed.length}/${n} failed to start: ${oneLine(failed[0]!.reason)}`);
    const startedAt = performance.now();
    const startS = (startedAt - t0) / 1000;
    await new Promise((res) => setTimeout(res, FIRST_READING_MS));
    // Idle CPU: what the same processes use while the containers sleep, per container per second.
    const first = await idleReading(r, ids, shared);
    // Settled: what an idle pod costs once the work a start leaves behind (writeback, the guest's reclaim) is done.
    let settled: IdleReading | undefined;
    if (settledMs > 0) {
      await new Promise((res) => setTimeout(res, Math.max(0, startedAt + settledMs - performance.now())));
      settled = await idleReading(r, ids, shared);
    }
    const merged = ksm ? await withKsm(async () => readMemory(r, ids, shared)) : undefined;
    return { plain: first.memory, ksm: merged, startS, idleCpuMsPerS: first.cpuMsPerS, settled };
  } finally {
    await Promise.all(
      ids.map(async (id) => {
        await s.c.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
        for (let i = 0; i < 100; i++) {
          const rm = await s.c.ctr(['task', 'rm', id]);
          if (rm.code === 0 || /not found/.test(rm.stderr)) break;
          await new Promise((res) => setTimeout(res, 300));
        }
        await s.c.ctr(['container', 'rm', id]);
      }),
    );
  }
}

/** Resident size of the templates in the store (tmpfs pages), in MiB. */
function templateMiB(): number | undefined {
  if (!existsSync(TEMPLATE_DIR)) return undefined;
  const out = spawnSync('du', ['-sk', TEMPLATE_DIR], { encoding: 'utf8' });
  const kib = Number(out.stdout.split(/\s/)[0]);
  return Number.isFinite(kib) ? kib / 1024 : undefined;
}

function counts(v: string | undefined, def: number[]): number[] {
  if (v === undefined) return def;
  return v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)
    .map(Number);
}

async function main(progress: Progress): Promise<number> {
  const { values } = parseArgs({
    options: {
      runtimes: { type: 'string' },
      concurrency: { type: 'string' },
      density: { type: 'string' },
      ksm: { type: 'boolean' },
      'settled-s': { type: 'string' },
      'timeout-ms': { type: 'string' },
      'shim-dir': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const runtimes = (values.runtimes ?? DEFAULT_RUNTIMES.join(',')).split(',').map((x) => x.trim()) as RuntimeName[];
  const conc = counts(values.concurrency, [10, 20]);
  const dens = counts(values.density, [10, 20]);
  const timeoutMs = Number(values['timeout-ms'] ?? 600_000);
  const settledS = Number(values['settled-s'] ?? 75);
  const settledOk = settledS === 0 || settledS * 1000 >= FIRST_READING_MS + IDLE_CPU_WINDOW_MS;
  if (runtimes.some((r) => !ALL_RUNTIMES.includes(r)) || [...conc, ...dens].some((n) => !Number.isInteger(n) || n < 1) || !(timeoutMs > 0) || !settledOk) {
    console.error(USAGE);
    return 2;
  }
  if (values.ksm && !existsSync(join(KSM, 'run'))) {
    console.error(`--ksm: ${KSM} is absent (kernel without KSM)`);
    return 2;
  }
  const root = repoRoot();
  progress.begin('starting containerd');
  const c = await startContainerd({ extraPath: values['shim-dir'] ?? [join(root, 'build', 'bin'), join(root, 'dist')] });
  progress.done();
  let pool: BenchPool | undefined;
  const onSignal = () => void (pool?.stop() ?? Promise.resolve()).finally(() => void c.stop().finally(() => process.exit(130)));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let failed = false;
  try {
    progress.begin('importing the test image');
    const image = await importTestImage(c);
    progress.done();
    const poolSize = Math.max(1, ...conc, ...dens);
    const files = writeRuntimeFiles(c.dir, poolSize);
    if (runtimes.includes('tern-pool')) pool = BenchPool.start(root, files.ternConfig['tern-pool'], join(c.dir, 'pool.sock'), poolSize);
    const s: Setup = { c, image, files, timeoutMs, pool };
    // One start per runtime first (it builds tern's template if there is none).
    for (const [i, r] of runtimes.entries()) {
      progress.begin('warm-up', { current: i + 1, total: runtimes.length }, r);
      await ctrOk(s, ['run', '--rm', ...runtimeArgs(r, s), image, newId(r, 'warmup'), '/bin/true']).catch((e) => {
        progress.print(`${r}: warm-up failed: ${oneLine(e)}\n`);
        failed = true;
      });
    }
    progress.done();
    // Progress: one step per measurement, counted over all runtimes and sizes.
    let step = 0;
    const lines: string[] = [];
    // What the table shows, kept for the charts: per runtime, by container count (absent where it failed).
    const concRows: ConcurrencyRow[] = [];
    const densRows: DensityRow[] = [];
    let templateStoreMiB: number | undefined;
    let poolStandingMiB: number | undefined;
    if (conc.length > 0) {
      lines.push('concurrent start (wall seconds until every container has run /bin/true and exited)');
      lines.push(['runtime'.padEnd(14), ...conc.map((n) => `n=${n}`.padStart(9))].join(''));
      const cpuLines: string[] = [];
      for (const r of runtimes) {
        const row = [r.padEnd(14)];
        const cpuRow = [r.padEnd(14)];
        const result: ConcurrencyRow = { name: r, wallS: {}, hostCpuSPerStart: {}, busy: {} };
        concRows.push(result);
        for (const n of conc) {
          progress.begin('concurrent start', { current: ++step, total: runtimes.length * conc.length }, `${r}, ${n} containers`);
          try {
            const run = await concurrent(s, r, n);
            result.wallS[n] = run.wallS;
            result.hostCpuSPerStart![n] = run.hostCpuSPerStart;
            result.busy![n] = run.busy;
            row.push(run.wallS.toFixed(2).padStart(9));
            cpuRow.push(`${run.hostCpuSPerStart.toFixed(2)} ${Math.round(run.busy * 100)}%`.padStart(12));
            progress.print(`${r}: ${n} concurrent in ${run.wallS.toFixed(2)} s\n`);
          } catch (e) {
            failed = true;
            row.push('FAILED'.padStart(9));
            cpuRow.push('FAILED'.padStart(12));
            result.error ??= oneLine(e);
            progress.print(`${r}: ${n} concurrent: ${oneLine(e)}\n`);
          }
        }
        lines.push(row.join(''));
        cpuLines.push(cpuRow.join(''));
      }
      // CPU-bound when busy is near 100%: then the wall time is the starts' CPU-seconds over the cores.
      lines.push('host CPU-seconds per start during the concurrent run (every process, /proc/stat), and how busy the CPUs were');
      lines.push(['runtime'.padEnd(14), ...conc.map((n) => `n=${n}`.padStart(12))].join(''));
      lines.push(...cpuLines);
      for (const r of runtimes.filter((x) => x.startsWith('tern'))) {
        const ratios = conc.map((n) => {
          const a = concRows.find((x) => x.name === r)?.wallS[n];
          const b = concRows.find((x) => x.name === 'runc')?.wallS[n];
          return a !== undefined && b !== undefined ? `n=${n} ${(a / b).toFixed(2)}x` : `n=${n} n/a`;
        });
        lines.push(`${r}/runc: ${ratios.join(', ')}`);
      }
    }
    if (dens.length > 0) {
      step = 0;
      lines.push('');
      lines.push(`idle density (PSS per container, MiB; sleep 3600)${values.ksm ? '; with KSM after two full scans' : ''}`);
      lines.push(['runtime'.padEnd(14), ...dens.map((n) => `n=${n}`.padStart(9)), ...(values.ksm ? dens.map((n) => `ksm n=${n}`.padStart(11)) : [])].join(''));
      const idleCpuLines: string[] = [];
      const settledLines: string[] = [];
      for (const r of runtimes) {
        const plain: string[] = [];
        const merged: string[] = [];
        const idleCpu: string[] = [];
        const settledCells: string[] = [];
        const result: DensityRow = {
          name: r,
          mib: {},
          ksmMib: values.ksm ? {} : undefined,
          idleCpuMsPerS: {},
          ...(settledS > 0 ? { settledMib: {}, settledCpuMsPerS: {} } : {}),
        };
        densRows.push(result);
        for (const n of dens) {
          progress.begin('idle density', { current: ++step, total: runtimes.length * dens.length }, `${r}, ${n} containers`);
          try {
            const d = await density(s, r, n, values.ksm ?? false, settledS * 1000);
            result.mib[n] = d.plain.kibPerContainer / 1024;
            result.idleCpuMsPerS![n] = d.idleCpuMsPerS;
            if (d.settled) {
              result.settledMib![n] = d.settled.memory.kibPerContainer / 1024;
              result.settledCpuMsPerS![n] = d.settled.cpuMsPerS;
              settledCells.push((d.settled.memory.kibPerContainer / 1024).toFixed(1).padStart(9) + d.settled.cpuMsPerS.toFixed(2).padStart(9));
            }
            if (d.ksm && result.ksmMib) result.ksmMib[n] = d.ksm.kibPerContainer / 1024;
            plain.push((d.plain.kibPerContainer / 1024).toFixed(1).padStart(9));
            idleCpu.push(d.idleCpuMsPerS.toFixed(2).padStart(9));
            if (d.ksm) merged.push((d.ksm.kibPerContainer / 1024).toFixed(1).padStart(11));
            progress.print(
              `${r}: ${n} idle: ${(d.plain.kibPerContainer / 1024).toFixed(1)} MiB/container over ${d.plain.processes} processes (started in ${d.startS.toFixed(1)} s), ${d.idleCpuMsPerS.toFixed(2)} ms/s of host CPU per container` +
                (d.ksm ? `; with KSM ${(d.ksm.kibPerContainer / 1024).toFixed(1)} MiB/container` : '') +
                (d.settled ? `; settled: ${(d.settled.memory.kibPerContainer / 1024).toFixed(1)} MiB, ${d.settled.cpuMsPerS.toFixed(2)} ms/s` : '') +
                '\n',
            );
          } catch (e) {
            failed = true;
            plain.push('FAILED'.padStart(9));
            idleCpu.push('FAILED'.padStart(9));
            if (settledS > 0) settledCells.push('FAILED'.padStart(18));
            if (values.ksm) merged.push('FAILED'.padStart(11));
            result.error ??= oneLine(e);
            progress.print(`${r}: density ${n}: ${oneLine(e)}\n`);
          }
        }
        lines.push([r.padEnd(14), ...plain, ...merged].join(''));
        idleCpuLines.push([r.padEnd(14), ...idleCpu].join(''));
        settledLines.push([r.padEnd(14), ...settledCells].join(''));
      }
      lines.push('');
      lines.push(`idle CPU (host CPU ms per second per container, over ${IDLE_CPU_WINDOW_MS / 1000} s; tern: shim + QEMU)`);
      lines.push(['runtime'.padEnd(14), ...dens.map((n) => `n=${n}`.padStart(9))].join(''));
      lines.push(...idleCpuLines);
      if (settledS > 0) {
        lines.push('');
        lines.push(
          `settled idle (${settledS} s after the starts: PSS per container in MiB, then host CPU ms per second per container over ${IDLE_CPU_WINDOW_MS / 1000} s)`,
        );
        lines.push(['runtime'.padEnd(14), ...dens.map((n) => `MiB n=${n}`.padStart(9) + `ms/s n=${n}`.padStart(9))].join(''));
        lines.push(...settledLines);
      }
      if (pool) {
        progress.begin('pool standing cost (waiting for a full pool)');
        const full = await pool.waitFull();
        const kib = pssKiB(pool.pid) + full.ready.reduce((sum, vm) => sum + pssKiB(vm.pid), 0);
        poolStandingMiB = kib / 1024;
        lines.push(`tern-pool standing cost: the pool process and its ${full.ready.length} idle VMs, ${poolStandingMiB.toFixed(1)} MiB PSS in all`);
      }
      const t = templateMiB();
      if (t !== undefined && runtimes.some((r) => r === 'tern-template' || r === 'tern-pool')) {
        templateStoreMiB = t;
        lines.push(`tern template store (${TEMPLATE_DIR}, tmpfs, shared by all clones): ${t.toFixed(1)} MiB resident`);
      }
    }
    progress.done();
    console.log(lines.join('\n'));
    const date = new Date();
    const subtitle = hostSubtitle(date);
    const meta = { date: date.toISOString(), machine: subtitle, image };
    const charts: ChartOutput[] = [];
    if (conc.length > 0) {
      charts.push({
        baseName: 'fleet-concurrency',
        svg: concurrencyChart(concRows, conc, { subtitle }),
        data: { benchmark: 'fleet-concurrency', ...meta, counts: conc, rows: concRows },
      });
    }
    if (dens.length > 0) {
      const notes = [
        templateStoreMiB !== undefined
          ? `tern template store: ${templateStoreMiB.toFixed(1)} MiB resident (tmpfs, shared by all clones; their PSS includes their share)`
          : '',
        poolStandingMiB !== undefined ? `tern-pool standing cost: ${poolStandingMiB.toFixed(1)} MiB` : '',
      ].filter(Boolean);
      charts.push({
        baseName: 'fleet-density',
        svg: densityChart(densRows, dens, { subtitle, note: notes.length > 0 ? notes.join('; ') : undefined }),
        data: { benchmark: 'fleet-density', ...meta, counts: dens, ksm: values.ksm ?? false, rows: densRows, templateStoreMiB, poolStandingMiB },
      });
    }
    saveCharts(charts);
    if (failed) {
      // What tern itself said about the failures (warnings and errors of the shims).
      const said = c
        .readLog()
        .split('\n')
        .filter((l) => /containerd-shim-tern/.test(l) && /"level":(40|50|60)/.test(l));
      if (said.length > 0) console.error(`tern warnings and errors:\n${said.slice(-40).join('\n')}`);
    }
    return failed ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool?.stop();
    await c.stop();
  }
}

runMain(main);
