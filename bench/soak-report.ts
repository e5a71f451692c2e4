// What a soak run printed and whether it passed: shim memory per pod (first,
// max, last sample), the failures (lost or duplicated lines, a task no longer
// running, shim memory growth past a bound) and the summary table `make soak`
// prints. The run itself is in soak-load.ts.
import type { SoakResult } from './soak-load.js';
import { median } from './stats.js';

const mib = (kib: number) => kib / 1024;

/** Per pod: first, max and last shim RSS (KiB) over the samples. */
export function shimMemory(r: SoakResult, kind: 'rssKiB' | 'pssKiB' = 'rssKiB'): { first: number; max: number; last: number }[] {
  return r.pods.map((_, i) => {
    const xs = r.samples.map((s) => s[kind][i]).filter((x): x is number => x !== undefined);
    return xs.length === 0 ? { first: NaN, max: NaN, last: NaN } : { first: xs[0]!, max: Math.max(...xs), last: xs[xs.length - 1]! };
  });
}

/** What went wrong: lost, duplicated or garbled lines, a pod not running at the end, a failed probe. */
export function soakFailures(r: SoakResult, maxGrowthMiB?: number): string[] {
  const out: string[] = [];
  for (const p of r.pods) {
    if (p.lost > 0 || p.duplicated > 0 || p.malformed > 0) out.push(`${p.id}: ${p.lost} lost, ${p.duplicated} duplicated, ${p.malformed} malformed lines`);
    if (p.endSeq === undefined) out.push(`${p.id}: no END line`);
    else if (p.lines !== p.endSeq) out.push(`${p.id}: ${p.lines} lines received, the writer printed ${p.endSeq}`);
    if (p.finalStatus !== 'RUNNING') out.push(`${p.id}: task ${p.finalStatus} at the end, not RUNNING`);
    if (p.badStatuses.length > 0) out.push(`${p.id}: not RUNNING at samples: ${p.badStatuses.join(', ')}`);
  }
  for (const p of r.probes) if (!p.ok) out.push(`new ${p.runtime} pod failed: ${p.error}`);
  if (maxGrowthMiB !== undefined) {
    shimMemory(r).forEach((m, i) => {
      if (!(mib(m.last - m.first) < maxGrowthMiB))
        out.push(`${r.pods[i]!.id}: shim RSS grew ${mib(m.last - m.first).toFixed(1)} MiB (first ${mib(m.first).toFixed(1)}, last ${mib(m.last).toFixed(1)})`);
    });
  }
  return out;
}

/** The final table. */
export function soakTable(r: SoakResult): string {
  const o = r.options;
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const med = (xs: number[]) => (xs.length > 0 ? median(xs) : NaN);
  const min = (xs: number[]) => (xs.length > 0 ? Math.min(...xs) : NaN);
  const bytes = r.pods.map((p) => p.bytes);
  const lines = r.pods.map((p) => p.lines);
  const rates = r.pods.map((p) => p.bytesPerS / 1e6);
  const totalBytes = bytes.reduce((a, b) => a + b, 0);
  const rss = shimMemory(r, 'rssKiB');
  const pss = shimMemory(r, 'pssKiB');
  const probe = (rt: 'tern' | 'runc') => {
    const ok = r.probes.filter((p) => p.runtime === rt && p.ok);
    const all = r.probes.filter((p) => p.runtime === rt);
    return `${fmt(med(ok.map((p) => p.ms / 1000)), 3)} s (${ok.length}/${all.length} ok, ${ok.filter((p) => p.inLoad).length} during the load)`;
  };
  const memRow = (name: string, m: { first: number; max: number; last: number }[]) => {
    const f = m.map((x) => mib(x.first));
    const mx = m.map((x) => mib(x.max));
    const l = m.map((x) => mib(x.last));
    const g = m.map((x) => mib(x.last - x.first));
    return `  ${name}  first ${fmt(med(f))}  max ${fmt(Math.max(...mx))}  last ${fmt(med(l))}  growth first->last median ${fmt(med(g))}, max ${fmt(Math.max(...g))}`;
  };
  const sumLost = r.pods.reduce((a, p) => a + p.lost, 0);
  const sumDup = r.pods.reduce((a, p) => a + p.duplicated, 0);
  const sumBad = r.pods.reduce((a, p) => a + p.malformed, 0);
  return [
    `soak: ${o.pods} tern pods, ${o.durationS} s writer each (load ${fmt(r.loadS)} s after ${fmt(r.startAllS)} s to start them all)`,
    `  per pod: CPU burner + ${o.memMiB} MiB memory toucher + stdout at ${fmt(o.rateBytesPerS / 1e6, 2)} MB/s target in ${o.lineBytes}-byte lines`,
    `metric                         median        min`,
    `bytes received per pod    ${String(med(bytes)).padStart(11)} ${String(min(bytes)).padStart(10)}`,
    `lines received per pod    ${String(med(lines)).padStart(11)} ${String(min(lines)).padStart(10)}`,
    `achieved MB/s per pod     ${fmt(med(rates), 3).padStart(11)} ${fmt(min(rates), 3).padStart(10)}`,
    `achieved MB/s all pods    ${fmt(totalBytes / 1e6 / r.loadS, 3).padStart(11)}`,
    `lost / duplicated / malformed lines (all pods): ${sumLost} / ${sumDup} / ${sumBad}`,
    `tasks RUNNING at the end: ${r.pods.filter((p) => p.finalStatus === 'RUNNING').length}/${o.pods}`,
    `shim memory (MiB per shim; first/last: median over pods; max: over pods and ${r.samples.length} samples, every ${o.sampleEveryS} s):`,
    memRow('RSS', rss),
    memRow('PSS', pss),
    `new-pod start under load (ctr run --rm ... true, median):`,
    `  tern ${probe('tern')}`,
    `  runc ${probe('runc')}`,
  ].join('\n');
}
