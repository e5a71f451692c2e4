// Start-latency benchmark: wall time of `ctr run --rm <image> <id> /bin/true` on a
// private containerd, for tern, runc and gVisor (runsc behind the runc shim), printing
// median and p90 per runtime and the tern/runc and tern/gVisor ratios in one table.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { importTestImage, startContainerd, type Containerd } from '../test/integration/harness/containerd.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { median, percentile } from './stats.js';
import { runMain } from './run-main.js';
import type { Progress } from '../src/common/progress.js';
import { BenchPool } from './pool.js';
import { hostSubtitle, saveCharts } from './chart-out.js';
import { latencyChart } from './plot.js';
import { runtimeArgs, TERN_PATHS, writeRuntimeFiles, type RuntimeFiles, type RuntimeName } from './runtimes.js';
import { createSplit, phaseTable, type RunWindow } from './phase-table.js';

const ALL_RUNTIMES: RuntimeName[] = ['tern-cold', 'tern-template', 'tern-pool', 'runc', 'gvisor'];

interface RuntimeResult {
  name: RuntimeName;
  timesMs: number[];
  error?: string;
}

const USAGE = `usage: node dist/bench.js [--runtimes tern-cold,tern-template,tern-pool,runc,gvisor] [--runs N] [--timeout-ms MS] [--shim-dir DIR]...
  --runtimes    comma-separated subset of ${ALL_RUNTIMES.join(',')} (default: all)
                tern-pool runs \`tern pool serve\` (2 VMs); each of its runs waits, unmeasured, for a full pool
  --runs        measured runs per runtime (default: env BENCH_RUNS or 10); one unmeasured warm-up run precedes them
  --timeout-ms  deadline of one run (default 120000)
  --shim-dir    directory holding containerd-shim-tern-v2, put first on containerd's PATH
                (repeatable; default: build/bin and dist of the repository)
  --beside-pod  keep one tern pod (a template clone running sleep) up during the runs, as on a node
                with pods: each tern start then joins its running shim process instead of starting one`;

/** The pod --beside-pod keeps up. */
const BESIDE_POD = 'bench-beside-pod';

function firstLine(s: string): string {
  const line = s.trim().split('\n').filter(Boolean).pop() ?? '';
  return line.length > 160 ? `${line.slice(0, 160)}...` : line;
}

async function runOnce(c: Containerd, runtime: RuntimeName, setup: RuntimeFiles, image: string, id: string, timeoutMs: number): Promise<number> {
  const start = process.hrtime.bigint();
  const r = await c.ctr(['run', '--rm', ...runtimeArgs(runtime, setup), image, id, '/bin/true'], { timeoutMs });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.code !== 0) throw new Error(`ctr exited ${r.code}: ${firstLine(r.stderr || r.stdout)}`);
  return ms;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function report(results: RuntimeResult[], runs: number): string {
  const ok = (name: RuntimeName) => results.find((r) => r.name === name && r.error === undefined);
  const ratio = (a: RuntimeName, b: RuntimeName): string => {
    const x = ok(a);
    const y = ok(b);
    if (!x || !y) return 'n/a';
    return `${(median(x.timesMs) / median(y.timesMs)).toFixed(2)}x`;
  };
  const header = ['runtime', 'runs', 'median (s)', 'p90 (s)', 'status'];
  const rows = results.map((r) =>
    r.error === undefined
      ? [r.name, String(r.timesMs.length), (median(r.timesMs) / 1000).toFixed(3), (percentile(r.timesMs, 90) / 1000).toFixed(3), 'ok']
      : [r.name, `${r.timesMs.length}/${runs}`, '-', '-', `FAILED: ${r.error}`],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (i === 4 ? 0 : row[i]!.length))));
  const line = (cols: string[]) => cols.map((c, i) => (i === cols.length - 1 ? c : pad(c, widths[i]!))).join('  ');
  const out = [line(header), ...rows.map(line)];
  const names = results.map((r) => r.name);
  const ratios: string[] = [];
  for (const t of TERN_PATHS.filter((n) => names.includes(n))) {
    for (const other of ['runc', 'gvisor'] as RuntimeName[]) if (names.includes(other)) ratios.push(`${t}/${other} ${ratio(t, other)}`);
  }
  if (ratios.length > 0) out.push(`median ratio: ${ratios.join(', ')}`);
  return out.join('\n');
}

/**
 * tern's guest-boot split, from the shim's own log lines in containerd's log
 * ("container started" carries the phases, in ms since the sandbox boot began).
 */
function bootSplit(log: string, path: RuntimeName): string | undefined {
  const keys = ['poolTaken', 'templateReady', 'vmLaunched', 'agentAnswered', 'identityAdopted', 'sinceBootMs'] as const;
  const phases: Record<(typeof keys)[number], number[]> = {
    poolTaken: [],
    templateReady: [],
    vmLaunched: [],
    agentAnswered: [],
    identityAdopted: [],
    sinceBootMs: [],
  };
  for (const line of log.split('\n')) {
    if (!line.includes('"msg":"container started"') || !line.includes(`"container":"bench-${path}-`)) continue;
    if (line.includes('warmup')) continue;
    try {
      const rec = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, number>;
      for (const k of keys) if (typeof rec[k] === 'number') phases[k].push(rec[k]);
    } catch {
      /* not one of ours */
    }
  }
  if (phases.sinceBootMs.length === 0) return undefined;
  const m = (xs: number[]) => (xs.length ? (median(xs) / 1000).toFixed(3) : '-');
  const lines = [`${path} guest-boot split (median over ${phases.sinceBootMs.length} runs, seconds since the shim began the boot):`];
  if (phases.poolTaken.length) lines.push(`  VM taken from the pool  ${m(phases.poolTaken)}`);
  if (phases.templateReady.length) lines.push(`  template found          ${m(phases.templateReady)}`);
  const launched = phases.poolTaken.length ? ' adopted (QMP up)' : phases.templateReady.length ? ' + restored' : ' (QMP up)';
  lines.push(`  QEMU launched${launched}  ${m(phases.vmLaunched)}`);
  lines.push(`  agent answered          ${m(phases.agentAnswered)}`);
  if (phases.identityAdopted.length) lines.push(`  identity adopted        ${m(phases.identityAdopted)}`);
  lines.push(`  container started       ${m(phases.sinceBootMs)}`);
  return lines.join('\n');
}

async function main(progress: Progress): Promise<number> {
  const { values } = parseArgs({
    options: {
      runtimes: { type: 'string' },
      runs: { type: 'string' },
      'timeout-ms': { type: 'string' },
      'shim-dir': { type: 'string', multiple: true },
      'beside-pod': { type: 'boolean' },
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
  for (const r of runtimes) {
    if (!ALL_RUNTIMES.includes(r as RuntimeName)) {
      console.error(`unknown runtime "${r}"\n${USAGE}`);
      return 2;
    }
  }
  const runs = Number(values.runs ?? process.env.BENCH_RUNS ?? 10);
  const timeoutMs = Number(values['timeout-ms'] ?? 120_000);
  if (!Number.isInteger(runs) || runs < 1 || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    console.error(`bad --runs or --timeout-ms\n${USAGE}`);
    return 2;
  }
  const root = repoRoot();
  const shimDirs = values['shim-dir'] ?? [join(root, 'build', 'bin'), join(root, 'dist')];

  progress.begin('starting containerd');
  const c = await startContainerd({ extraPath: shimDirs });
  progress.done();
  let pool: BenchPool | undefined;
  const onSignal = () => {
    void (pool?.stop() ?? Promise.resolve()).finally(() => void c.stop().finally(() => process.exit(130)));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    progress.begin('importing the test image');
    const image = await importTestImage(c);
    progress.done();
    const setup = writeRuntimeFiles(c.dir);

    const windows = new Map<string, RunWindow>();
    const results: RuntimeResult[] = (runtimes as RuntimeName[]).map((name) => ({ name, timesMs: [] }));
    pool = runtimes.includes('tern-pool') ? BenchPool.start(root, setup.ternConfig['tern-pool'], join(c.dir, 'pool.sock'), 2) : undefined;
    if (values['beside-pod']) {
      progress.begin('starting the pod kept up beside the runs');
      const r = await c.ctr(['run', '-d', '--null-io', ...runtimeArgs('tern-template', setup), image, BESIDE_POD, 'sleep', '100000'], { timeoutMs });
      if (r.code !== 0) throw new Error(`--beside-pod: ctr run exited ${r.code}: ${firstLine(r.stderr || r.stdout)}`);
      progress.done();
    }
    const beside = values['beside-pod'] ? ', beside one running tern pod' : '';
    console.error(`start latency: ${runs} runs per runtime (+1 warm-up)${beside}, image ${image}, containerd ${c.dir}`);
    // Warm-up, then runtimes interleaved run by run so that drift affects all of them alike.
    // Progress: one step per round (all runtimes once), the runtime running now as its detail.
    for (let i = -1; i < runs; i++) {
      if (i < 0) progress.begin('warm-up run');
      else progress.begin('run', { current: i + 1, total: runs });
      for (const r of results) {
        if (r.error !== undefined) continue;
        const id = `bench-${r.name}-${i < 0 ? 'warmup' : i}`;
        try {
          if (r.name === 'tern-pool') {
            progress.update({ detail: `${r.name} (waiting for a full pool)` });
            await pool!.waitFull();
          }
          progress.update({ detail: r.name });
          const spawned = Date.now();
          const ms = await runOnce(c, r.name, setup, image, id, timeoutMs);
          if (i >= 0) windows.set(id, { start: spawned, end: Date.now() });
          if (i >= 0) r.timesMs.push(ms);
        } catch (e) {
          r.error = (e as Error).message.split('\n')[0];
          progress.print(`${r.name}: run ${id} failed: ${(e as Error).message}\n`);
        }
      }
    }
    progress.done();
    if (values['beside-pod']) {
      await c.ctr(['task', 'kill', '-s', 'SIGKILL', BESIDE_POD]);
      await c.ctr(['task', 'delete', '-f', BESIDE_POD]);
      await c.ctr(['container', 'rm', BESIDE_POD]);
      console.log('(tern starts beside one running tern pod: each joined its shim process)');
    }
    console.log(report(results, runs));
    for (const path of TERN_PATHS) {
      const split = bootSplit(c.readLog(), path);
      if (split) console.log(split);
      const table = phaseTable(c.readLog(), `bench-${path}-`, windows);
      if (table) console.log(table);
      const creates = createSplit(c.readLog(), `bench-${path}-`);
      if (creates) console.log(creates);
    }
    const date = new Date();
    const subtitle = hostSubtitle(date);
    const title = `Start latency of one container: ctr run --rm ${image.split('/').pop()} /bin/true`;
    saveCharts([
      {
        baseName: 'start-latency',
        svg: latencyChart(results, title, { subtitle }),
        data: { benchmark: 'start-latency', date: date.toISOString(), machine: subtitle, image, runs, results },
      },
    ]);
    return results.some((r) => r.error !== undefined) ? 1 : 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pool?.stop();
    await c.stop();
  }
}

runMain(main);
