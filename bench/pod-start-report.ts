// What the pod benchmark prints: start latency per runtime (median, p90, the
// tern/runc ratio) and idle memory per pod by process kind, with the ratio to
// runc. The measuring is in pod-start.ts.
import { median, percentile } from './stats.js';

export type RuntimeName = 'tern' | 'runc';

export interface MemorySample {
  pods: number;
  /** PSS sum of every process counted, divided by the number of pods, in KiB. */
  kibPerPod: number;
  /** PSS per process kind (argv[0] basename), summed over all pods, in KiB. */
  byKind: Map<string, number>;
  processes: number;
}

export interface RuntimeResult {
  name: RuntimeName;
  timesMs: number[];
  error?: string;
  memory: MemorySample[];
  memoryError?: string;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

/** Columns padded to their widest cell, the last column left free. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (i === header.length - 1 ? 0 : row[i]!.length))));
  const line = (cols: string[]) => cols.map((c, i) => (i === cols.length - 1 ? c : pad(c, widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)];
}

const mib = (kib: number) => (kib / 1024).toFixed(1);

export function report(results: RuntimeResult[], opts: { runs: number; density: number }): string {
  const out: string[] = [];
  out.push(`pod start latency (RunPodSandbox + CreateContainer + StartContainer until RUNNING), ${opts.runs} runs + 1 warm-up`);
  out.push(
    ...table(
      ['runtime', 'runs', 'median (s)', 'p90 (s)', 'status'],
      results.map((r) =>
        r.error === undefined
          ? [r.name, String(r.timesMs.length), (median(r.timesMs) / 1000).toFixed(3), (percentile(r.timesMs, 90) / 1000).toFixed(3), 'ok']
          : [r.name, `${r.timesMs.length}/${opts.runs}`, '-', '-', `FAILED: ${r.error}`],
      ),
    ),
  );
  const tern = results.find((r) => r.name === 'tern');
  const runc = results.find((r) => r.name === 'runc');
  if (tern && runc) {
    const ok = tern.error === undefined && runc.error === undefined;
    out.push(`median ratio: tern/runc ${ok ? `${(median(tern.timesMs) / median(runc.timesMs)).toFixed(2)}x` : 'n/a'}`);
  }

  const sizes = [1, ...(opts.density > 1 ? [opts.density] : [])];
  out.push('', 'idle pod memory (PSS sum of the host processes the runtime added, per pod)');
  const rows: string[][] = [];
  for (const r of results) {
    for (const n of sizes) {
      const s = r.memory.find((m) => m.pods === n);
      if (s) {
        const parts = [...s.byKind].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${mib(v / n)}`);
        rows.push([r.name, String(n), mib(s.kibPerPod), String(s.processes), `ok: ${parts.join(' + ')}`]);
      } else if (r.memoryError !== undefined && !r.memory.some((m) => m.pods > n)) {
        rows.push([r.name, String(n), '-', '-', `FAILED: ${r.memoryError}`]);
        break;
      }
    }
  }
  out.push(...table(['runtime', 'pods', 'MiB/pod', 'procs', 'status (MiB/pod by process)'], rows));
  if (tern && runc) {
    const ratios = sizes.map((n) => {
      const t = tern.memory.find((m) => m.pods === n);
      const c = runc.memory.find((m) => m.pods === n);
      return `${n} pod${n > 1 ? 's' : ''} ${t && c ? `${(t.kibPerPod / c.kibPerPod).toFixed(1)}x` : 'n/a'}`;
    });
    out.push(`memory ratio tern/runc: ${ratios.join(', ')}`);
  }
  return out.join('\n');
}
