// Where the benchmarks leave their charts and raw results: build/bench/ of the
// repository (git-ignored), as <name>.svg, <name>.png where a converter is
// installed, and <name>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectAccel } from '../src/hypervisor/accel.js';
import { repoRoot } from '../test/integration/harness/paths.js';
import { machineSubtitle, writeChart } from './plot.js';

export function benchOutDir(): string {
  return join(repoRoot(), 'build', 'bench');
}

/** The charts' machine line: cores, how tern's QEMU runs on this host (as the shim decides it by default), date. */
export function hostSubtitle(date: Date): string {
  const accel = detectAccel().accel === 'kvm' ? "tern's QEMU under KVM" : "tern's QEMU under TCG (no usable KVM)";
  return machineSubtitle(accel, date);
}

export interface ChartOutput {
  baseName: string;
  svg: string;
  /** The raw results behind the chart, written as <baseName>.json. */
  data: unknown;
}

/**
 * Writes each chart (SVG, and PNG where possible) and its data into build/bench/
 * and prints the paths on stderr. A failure to write is reported on stderr and
 * does not fail the benchmark, whose results are already printed.
 */
export function saveCharts(charts: ChartOutput[]): string[] {
  const written: string[] = [];
  try {
    const dir = benchOutDir();
    mkdirSync(dir, { recursive: true });
    for (const c of charts) {
      written.push(...writeChart(dir, c.baseName, c.svg));
      const json = join(dir, `${c.baseName}.json`);
      writeFileSync(json, `${JSON.stringify(c.data, null, 2)}\n`);
      written.push(json);
    }
  } catch (e) {
    console.error(`charts: could not write: ${(e as Error).message}`);
  }
  if (written.length > 0) console.error(`charts written:\n${written.map((p) => `  ${p}`).join('\n')}`);
  return written;
}
