// Guest I/O benchmark: memory and write throughput inside a container, per
// runtime, on a private containerd. Under TCG the guest's CPU model decides
// how fast the guest kernel zeroes and copies pages (with ERMS it uses
// byte-wise `rep stosb`/`rep movsb`, emulated one byte at a time), so tern's
// in-container work depends on [hypervisor] tcg_cpu_model; --variant rows
// compare such a setting with the default in one run, beside runc (and gVisor).
// Each run is `ctr run --rm <image> <id> sh -c <script>`, the script timing three
// workloads of --mib MiB each (bench/guest-io-report.ts): a write to /dev/shm,
// a write to the container's writable layer, and a pipe into md5sum.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseConfig } from '../src/common/config.js';
import type { Progress } from '../src/common/progress.js';
import { importTestImage, startContainerd, type Containerd } from '../test/integration/harness/containerd.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { benchOutDir, hostSubtitle } from './chart-out.js';
import {
  guestScript,
  ioTables,
  judgeRun,
  parseVariants,
  UsageError,
  variantConfig,
  variantRowName,
  WORKLOADS,
  type IoRow,
  type RunOutcome,
  type Variant,
  type Workload,
} from './guest-io-report.js';
import { runMainInOwnSession } from './run-main.js';
import { runtimeArgs, writeRuntimeFiles, type RuntimeName } from './runtimes.js';

const ALL_RUNTIMES = ['tern-template', 'runc', 'gvisor'] as const;
type IoRuntime = (typeof ALL_RUNTIMES)[number];
const DEFAULT_RUNTIMES: IoRuntime[] = ['tern-template', 'runc'];

const USAGE = `usage: node dist/bench-io.js [--runtimes tern-template,runc,gvisor] [--variant NAME=TOML]... [--runs N] [--mib N] [--timeout-ms MS] [--shim-dir DIR]...
  --runtimes    comma-separated subset of ${ALL_RUNTIMES.join(',')} (default: ${DEFAULT_RUNTIMES.join(',')})
  --variant     one more row, tern-template:NAME, whose config is tern-template's plus TOML ("\\n" for a line
                break; any section but [factory] and [pool]), e.g. 'cpu-max=[hypervisor]\\ntcg_cpu_model = "max"'
                (repeatable)
  --runs        measured rounds, every row once per round (default: env BENCH_RUNS or 5); an unmeasured
                warm-up run of each tern row (/bin/true, which builds its template) precedes them
  --mib         MiB each workload writes (default 64; a runc container's /dev/shm holds 64)
  --timeout-ms  deadline of one run (default 300000; the warm-up gets at least 600000)
  --shim-dir    directory holding containerd-shim-tern-v2, put first on containerd's PATH
                (repeatable; default: build/bin and dist of the repository)`;

interface Row {
  name: string;
  runtime: IoRuntime;
  /** The ctr run options selecting the runtime (and, for tern, the row's config). */
  args: string[];
  /** Set when the warm-up failed: the row is not run again. */
  broken?: string;
  result: IoRow;
  /** Every measured run as it came, for the JSON. */
  runs: (RunOutcome & { round: number; ms: number })[];
}

interface Options {
  runtimes: IoRuntime[];
  variants: Variant[];
  runs: number;
  mib: number;
  timeoutMs: number;
  shimDirs: string[];
}

/** The options, or the exit code (0 for --help, 2 for a usage error, printed). */
function parseOptions(argv: string[]): Options | number {
  const options = {
    runtimes: { type: 'string' },
    variant: { type: 'string', multiple: true },
    runs: { type: 'string' },
    mib: { type: 'string' },
    'timeout-ms': { type: 'string' },
    'shim-dir': { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h' },
  } as const;
  let values: ReturnType<typeof parseArgs<{ args: string[]; options: typeof options }>>['values'];
  try {
    values = parseArgs({ args: argv, options }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const runtimes = (values.runtimes ?? DEFAULT_RUNTIMES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const r of runtimes) {
    if (!(ALL_RUNTIMES as readonly string[]).includes(r)) {
      console.error(`unknown runtime "${r}"\n${USAGE}`);
      return 2;
    }
  }
  if (new Set(runtimes).size !== runtimes.length) {
    console.error(`a runtime is named twice in --runtimes\n${USAGE}`);
    return 2;
  }
  let variants: Variant[];
  try {
    variants = parseVariants(values.variant ?? []);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${e.message}\n${USAGE}`);
    return 2;
  }
  if (runtimes.length === 0 && variants.length === 0) {
    console.error(`no rows to run\n${USAGE}`);
    return 2;
  }
  const runs = Number(values.runs ?? process.env.BENCH_RUNS ?? 5);
  const mib = Number(values.mib ?? 64);
  const timeoutMs = Number(values['timeout-ms'] ?? 300_000);
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(mib) || mib < 1 || !Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    console.error(`--runs, --mib and --timeout-ms want whole numbers above 0\n${USAGE}`);
    return 2;
  }
  const root = repoRoot();
  return {
    runtimes: runtimes as IoRuntime[],
    variants,
    runs,
    mib,
    timeoutMs,
    shimDirs: values['shim-dir'] ?? [join(root, 'build', 'bin'), join(root, 'dist')],
  };
}

function emptySeconds(): Record<Workload, number[]> {
  return Object.fromEntries(WORKLOADS.map((w) => [w, []])) as unknown as Record<Workload, number[]>;
}

/** A containerd id for a row's run: the row's name (":" is not allowed in one), made unique by the row's index. */
function runId(rowIndex: number, name: string, round: number): string {
  return `bench-io-${rowIndex}-${name.replace(/[^A-Za-z0-9]+/g, '-')}-${round < 0 ? 'warmup' : round}`;
}

/** Removes what a run that failed may leave (ctr run --rm removes nothing when it is killed or the start fails). */
async function removeRun(c: Containerd, id: string): Promise<void> {
  await c.ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], { timeoutMs: 10_000 }).catch(() => undefined);
  await c.ctr(['tasks', 'delete', '-f', id], { timeoutMs: 30_000 }).catch(() => undefined);
  await c.ctr(['containers', 'delete', id], { timeoutMs: 30_000 }).catch(() => undefined);
}

function clip(line: string): string {
  return line.length > 160 ? `${line.slice(0, 160)}...` : line;
}

function oneLine(e: unknown): string {
  return clip(((e as Error).message ?? String(e)).split('\n')[0] ?? '');
}

function lastLine(s: string): string {
  return clip(s.trim().split('\n').pop()?.trim() ?? '');
}

function formatSeconds(o: RunOutcome): string {
  return WORKLOADS.map((w) => `${w} ${o.seconds[w]?.toFixed(2) ?? '-'} s`).join(', ');
}

async function main(progress: Progress): Promise<number> {
  const opts = parseOptions(process.argv.slice(2));
  if (typeof opts === 'number') return opts;

  progress.begin('starting containerd');
  const c = await startContainerd({ extraPath: opts.shimDirs });
  progress.done();
  // One teardown, whoever asks first: a signal, or the end of main; both wait for it to finish.
  let teardown: Promise<void> | undefined;
  const stopContainerd = () => (teardown ??= c.stop());
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    progress.print(`${sig}: stopping; removing the containers and containerd\n`);
    // Removes the task in flight too, so its ctr run returns at once.
    void stopContainerd()
      .catch((e: Error) => console.error(`cleanup: ${e.message}`))
      .finally(() => process.exit(130));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    progress.begin('importing the test image');
    const image = await importTestImage(c);
    progress.done();
    const setup = writeRuntimeFiles(c.dir);
    const templateConfig = readFileSync(setup.ternConfig['tern-template'], 'utf8');

    const rows: Row[] = [];
    const addRow = (name: string, runtime: IoRuntime, args: string[], configPath?: string, variant?: string) =>
      rows.push({ name, runtime, args, result: { name, variant, configPath, seconds: emptySeconds(), failures: [] }, runs: [] });
    for (const r of opts.runtimes) {
      addRow(r, r, runtimeArgs(r as RuntimeName, setup), r === 'tern-template' ? setup.ternConfig['tern-template'] : undefined);
    }
    for (const v of opts.variants) {
      const path = join(c.dir, `tern-template-${v.name}.toml`);
      const text = variantConfig(templateConfig, v);
      // Checked here, not by the shim at the first run: a mistake is a usage error, not a failed row.
      try {
        parseConfig(text, `--variant ${v.name}`);
      } catch (e) {
        console.error(`${(e as Error).message}\n(the config: tern-template's, with BENCH_TERN_CONFIG, plus the variant's TOML)\n${USAGE}`);
        return 2;
      }
      writeFileSync(path, text);
      addRow(variantRowName(v), 'tern-template', ['--runtime', 'io.containerd.tern.v2', '--runtime-config-path', path], path, v.toml);
    }

    const script = guestScript(opts.mib);
    console.error(
      `guest I/O: ${opts.runs} rounds of ${rows.length} rows (+1 warm-up per tern row), ${opts.mib} MiB per workload, image ${image}, containerd ${c.dir}`,
    );
    // The warm-up, then rows in turn within each round, so that drift on the machine affects them alike.
    for (let round = -1; round < opts.runs && !interrupted; round++) {
      if (round < 0) progress.begin("warm-up (builds each tern row's template)");
      else progress.begin('round', { current: round + 1, total: opts.runs });
      for (const [i, row] of rows.entries()) {
        if (interrupted || row.broken !== undefined) continue;
        if (round < 0 && row.runtime !== 'tern-template') continue;
        const id = runId(i, row.name, round);
        progress.update({ detail: row.name });
        const command = round < 0 ? ['/bin/true'] : ['sh', '-c', script];
        const timeoutMs = round < 0 ? Math.max(opts.timeoutMs, 600_000) : opts.timeoutMs;
        const start = Date.now();
        let outcome: RunOutcome;
        try {
          const r = await c.ctr(['run', '--rm', ...row.args, image, id, ...command], { timeoutMs });
          outcome =
            round >= 0
              ? judgeRun(r.code, r.stdout, r.stderr)
              : r.code === 0
                ? { seconds: {} }
                : { seconds: {}, error: `exit code ${r.code}: ${lastLine(r.stderr)}` };
          // After a signal the teardown removes everything; a ctr of this loop could outlive it.
          if (r.code !== 0 && !interrupted) await removeRun(c, id);
        } catch (e) {
          outcome = { seconds: {}, error: oneLine(e) };
          if (!interrupted) await removeRun(c, id);
        }
        if (interrupted) break;
        if (round < 0) {
          if (outcome.error !== undefined) {
            row.broken = `warm-up: ${outcome.error}`;
            row.result.failures.push(row.broken);
            progress.print(`${row.name}: warm-up ${id} failed, the row is not run: ${outcome.error}\n`);
          }
          continue;
        }
        row.runs.push({ ...outcome, round, ms: Date.now() - start });
        if (outcome.error === undefined) {
          for (const w of WORKLOADS) row.result.seconds[w].push(outcome.seconds[w]!);
          progress.print(`${row.name}: ${formatSeconds(outcome)}\n`);
        } else {
          row.result.failures.push(`run ${round + 1}: ${outcome.error}`);
          progress.print(`${row.name}: run ${id} failed: ${outcome.error}\n`);
        }
      }
    }
    progress.done();
    if (interrupted) return 130;

    console.log(
      ioTables(
        rows.map((r) => r.result),
        opts.runs,
        opts.mib,
      ),
    );
    const date = new Date();
    try {
      const dir = benchOutDir();
      mkdirSync(dir, { recursive: true });
      const file = join(dir, 'guest-io.json');
      const data = {
        benchmark: 'guest-io',
        date: date.toISOString(),
        machine: hostSubtitle(date),
        image,
        mib: opts.mib,
        runs: opts.runs,
        script,
        rows: rows.map((r) => ({
          name: r.name,
          runtime: r.runtime,
          args: r.args,
          config: r.result.configPath ? readFileSync(r.result.configPath, 'utf8') : undefined,
          variant: r.result.variant,
          seconds: r.result.seconds,
          failures: r.result.failures,
          runs: r.runs,
        })),
      };
      writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
      console.error(`results written: ${file}`);
    } catch (e) {
      // The table is printed already: a failure to write the JSON does not fail the benchmark.
      console.error(`results: could not write: ${(e as Error).message}`);
    }
    return rows.some((r) => r.result.failures.length > 0) ? 1 : 0;
  } finally {
    await stopContainerd();
    for (const s of signals) process.off(s, onSignal);
  }
}

runMainInOwnSession(main, 'bench-io', 'TERN_BENCH_IO_SESSION');
