// The "memory after a burst" table: per runtime, what was measured and its
// value before the burst, at its peak and a while after the reader's exit
// (MiB), or why the runtime has no figures.
export type BurstRuntime = 'tern' | 'runc' | 'gvisor';

export interface BurstFigures {
  beforeMiB: number;
  peakMiB: number;
  afterMiB: number;
}

export interface BurstResult {
  runtime: BurstRuntime;
  measure: string;
  figures?: BurstFigures;
  error?: string;
}

function pad(cells: string[], widths: number[]): string {
  return cells
    .map((c, i) => c.padEnd(widths[i] ?? 0))
    .join('  ')
    .trimEnd();
}

/** The table, one line per runtime, for stdout. */
export function burstReport(results: BurstResult[], workload: string, afterS: number): string {
  const head = ['runtime', 'measured', 'before', 'peak', `${afterS} s after`, 'status'];
  const rows = results.map((r) =>
    r.figures
      ? [r.runtime, r.measure, r.figures.beforeMiB.toFixed(1), r.figures.peakMiB.toFixed(1), r.figures.afterMiB.toFixed(1), 'ok']
      : [r.runtime, r.measure, '-', '-', '-', `FAILED: ${r.error ?? 'unknown'}`],
  );
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (i < row.length - 1 ? (row[i] ?? '').length : 0))));
  return [`memory after a burst (MiB): ${workload}`, pad(head, widths), ...rows.map((row) => pad(row, widths))].join('\n');
}
