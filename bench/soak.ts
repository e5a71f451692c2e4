// Soak benchmark: N tern pods under CPU, memory and stdout load for a
// duration, through ctr on a private containerd (bench/soak-load.ts does the
// work). Prints a table; exit code 1 when a line was lost, duplicated or
// garbled, a pod stopped, a new pod failed to start or a shim's RSS grew past
// --max-growth-mib; 130 when interrupted; 2 for a usage error.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { importTestImage, startContainerd, type Containerd } from '../test/integration/harness/containerd.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { runMainInOwnSession } from './run-main.js';
import { DEFAULT_SOAK, runSoak, TERN_RUNTIME } from './soak-load.js';
import { soakFailures, soakTable } from './soak-report.js';

const D = DEFAULT_SOAK;
const USAGE = `usage: node dist/bench-soak.js [--pods N] [--duration S] [--rate-mbps MB/s] [--line-bytes B] [--mem-mib M]
       [--sample-s S] [--probes N] [--max-growth-mib M] [--shim-dir DIR]...
  --pods            tern pods under load (default ${D.pods})
  --duration        seconds each pod's writer runs (default ${D.durationS})
  --rate-mbps       target stdout rate per pod, MB/s (10^6 bytes; default ${D.rateBytesPerS / 1e6})
  --line-bytes      length of a line (default ${D.lineBytes})
  --mem-mib         memory toucher's buffer per pod, MiB (default ${D.memMiB})
  --sample-s        seconds between shim memory samples (default ${D.sampleEveryS})
  --probes          new pods started during the load, per runtime (tern and runc; default ${D.probes})
  --max-growth-mib  fail when a shim's RSS grew more from first to last sample (default 32)
  --shim-dir        directory holding containerd-shim-tern-v2 (repeatable; default: build/bin and dist)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      pods: { type: 'string' },
      duration: { type: 'string' },
      'rate-mbps': { type: 'string' },
      'line-bytes': { type: 'string' },
      'mem-mib': { type: 'string' },
      'sample-s': { type: 'string' },
      probes: { type: 'string' },
      'max-growth-mib': { type: 'string' },
      'shim-dir': { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const num = (v: string | undefined, def: number) => (v === undefined ? def : Number(v));
  const opts = {
    ...D,
    pods: num(values.pods, D.pods),
    durationS: num(values.duration, D.durationS),
    rateBytesPerS: num(values['rate-mbps'], D.rateBytesPerS / 1e6) * 1e6,
    lineBytes: num(values['line-bytes'], D.lineBytes),
    memMiB: num(values['mem-mib'], D.memMiB),
    sampleEveryS: num(values['sample-s'], D.sampleEveryS),
    probes: num(values.probes, D.probes),
  };
  const maxGrowth = num(values['max-growth-mib'], 32);
  const ints = [opts.pods, opts.durationS, opts.lineBytes, opts.memMiB, opts.probes];
  if (
    ints.some((n) => !Number.isInteger(n) || n < 0) ||
    opts.pods < 1 ||
    opts.durationS < 1 ||
    opts.lineBytes < 16 ||
    !(opts.rateBytesPerS > 0) ||
    !(opts.sampleEveryS > 0) ||
    !(maxGrowth > 0)
  ) {
    console.error(USAGE);
    return 2;
  }
  const root = repoRoot();
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) return;
    console.error(`${sig}: stopping; removing the pods and containerd`);
    stop.abort();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let c: Containerd | undefined;
  let code = 0;
  try {
    c = await startContainerd({ extraPath: values['shim-dir'] ?? [join(root, 'build', 'bin'), join(root, 'dist')] });
    const image = await importTestImage(c);
    // One start first: it builds tern's template if there is none.
    const warm = await c.ctr(['run', '--rm', '--runtime', TERN_RUNTIME, image, 'soak-warmup', 'true'], { timeoutMs: 600_000 });
    if (warm.code !== 0) throw new Error(`warm-up tern pod failed (${warm.code}): ${warm.stderr.trim()}`);
    if (stop.signal.aborted) return 130;
    const r = await runSoak(c, image, { ...opts, log: (m) => console.error(m), signal: stop.signal });
    console.log(soakTable(r));
    const failures = soakFailures(r, maxGrowth);
    for (const f of failures) console.error(`FAILED: ${f}`);
    code = failures.length > 0 ? 1 : 0;
  } catch (e) {
    if (!stop.signal.aborted) throw e;
    code = 130;
  } finally {
    await c?.stop();
    for (const s of signals) process.off(s, onSignal);
  }
  return code;
}

runMainInOwnSession(main, 'soak benchmark', 'TERN_BENCH_SOAK_SESSION');
