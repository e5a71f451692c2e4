// SVG charts of the benchmarks' results, drawn here without any library: start
// latency per runtime (every run a dot, the median a bar mark, log-scale seconds),
// concurrent start wall times (grouped bars, log scale) and idle memory per
// container (grouped bars, linear MiB, a reference line at RunD's 24 MiB).
// Each function takes plain data and returns a self-contained SVG document (fixed
// 900 px width, sans-serif, no external fonts or scripts); writeChart saves it and,
// where a converter is installed, a PNG beside it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median, percentile } from './stats.js';
import {
  attrs,
  axis,
  CHART_WIDTH,
  clip,
  COUNT_COLORS,
  escapeXml,
  FAIL,
  failedLabel,
  halo,
  isTern,
  legendSwatches,
  linearScale,
  logScale,
  MUTED,
  REFERENCE,
  runtimeColor,
  stripe,
  svgDocument,
  TEXT,
  text,
  textWidth,
  tspan,
  X0,
  type ChartOptions,
  type Scale,
} from './svg.js';

export { CHART_WIDTH, escapeXml, machineSubtitle, type ChartOptions } from './svg.js';

export interface LatencySeries {
  name: string;
  timesMs: number[];
  /** Why the runtime failed; such a row is drawn as FAILED (as is one without runs). */
  error?: string;
}

export interface ConcurrencyRow {
  name: string;
  /** Wall seconds by container count; undefined (or absent) where that count failed. */
  wallS: Record<number, number | undefined>;
  /** Host CPU-seconds (all processes) during the run, per container, and the share of CPU time busy, by count. */
  hostCpuSPerStart?: Record<number, number | undefined>;
  busy?: Record<number, number | undefined>;
  error?: string;
}

export interface DensityRow {
  name: string;
  /** MiB PSS per idle container by container count. */
  mib: Record<number, number | undefined>;
  /** The same after KSM merged pages, when measured. */
  ksmMib?: Record<number, number | undefined>;
  /** Host CPU ms per second per idle container, from 5 s after the starts. */
  idleCpuMsPerS?: Record<number, number | undefined>;
  /** PSS and host CPU per container again once the pods have settled (fleet's --settled-s). */
  settledMib?: Record<number, number | undefined>;
  settledCpuMsPerS?: Record<number, number | undefined>;
  error?: string;
}

/** RunD's reported memory overhead per secure container, drawn on the density chart. */
export const RUND_MIB = 24;

// ---- start latency ----------------------------------------------------------------

/** Latency values as in the benchmark's table: seconds with 3 decimals. */
export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(3)} s`;
}

function formatRatio(r: number): string {
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}\u00d7`;
}

/**
 * Start latency per runtime, one row each: every run a dot, the median a dark bar
 * mark, on a log-scale axis in seconds; at the right the median (and for tern rows
 * its ratio to runc's median when runc has one), p90 and the number of runs.
 */
export function latencyChart(results: LatencySeries[], title: string, opts: ChartOptions = {}): string {
  const ROW = 40;
  const top = 92;
  const x1 = 640;
  const ok = (r: LatencySeries) => r.error === undefined && r.timesMs.length > 0;
  const scale = logScale(
    results.filter(ok).flatMap((r) => r.timesMs.map((ms) => ms / 1000)),
    X0,
    x1,
  );
  const runc = results.find((r) => r.name === 'runc' && ok(r));
  const bottom = top + Math.max(1, results.length) * ROW;
  const body: string[] = [];

  // Legend: what a dot and a bar mean.
  body.push(`<circle${attrs({ cx: X0 + 6, cy: 70, r: 4, fill: '#555', 'fill-opacity': 0.55, stroke: '#555' })}/>`);
  body.push(text(X0 + 16, 74, 'one run', { 'font-size': 12, fill: TEXT }));
  body.push(`<rect${attrs({ x: X0 + 86, y: 62, width: 3, height: 16, fill: '#111' })}/>`);
  body.push(text(X0 + 96, 74, 'median', { 'font-size': 12, fill: TEXT }));
  body.push(text(x1 + 16, 74, runc && results.some((r) => isTern(r.name)) ? 'median (tern: ratio to runc)' : 'median', { 'font-size': 12, fill: MUTED }));

  results.forEach((_r, i) => {
    body.push(...stripe(i, top + i * ROW, ROW));
  });
  body.push(...axis(scale, top, bottom, 'wall time of one start, seconds (log scale)'));
  if (results.length === 0) body.push(text(X0 + 8, top + ROW / 2 + 4, 'no runtimes measured', { 'font-size': 13, fill: MUTED }));

  results.forEach((r, i) => {
    const cy = top + i * ROW + ROW / 2;
    const color = runtimeColor(r.name, i);
    body.push(text(X0 - 12, cy + 5, r.name, { 'text-anchor': 'end', 'font-size': 14, 'font-weight': 'bold', fill: TEXT }));
    if (!ok(r)) {
      const done = r.timesMs.length > 0 ? `after ${r.timesMs.length} ${r.timesMs.length === 1 ? 'run' : 'runs'}: ` : '';
      body.push(failedLabel(X0 + 8, cy + 5, `${done}${r.error ?? 'no runs'}`, CHART_WIDTH - X0 - 40, i));
      return;
    }
    r.timesMs.forEach((ms, j) => {
      const dy = (((j * 7) % 5) - 2) * 3.5; // spread the dots a little so that equal times stay visible
      body.push(`<circle${attrs({ cx: scale.x(ms / 1000), cy: cy + dy, r: 4, fill: color, 'fill-opacity': 0.5, stroke: color, 'stroke-width': 1 })}/>`);
    });
    const med = median(r.timesMs);
    body.push(`<rect${attrs({ x: scale.x(med / 1000) - 1.5, y: cy - 14, width: 3, height: 28, fill: '#111' })}/>`);
    const ratio = isTern(r.name) && runc ? tspan(`${formatRatio(med / median(runc.timesMs))} runc`, { dx: 10, fill: color, 'font-weight': 'bold' }) : '';
    body.push(`<text${attrs({ x: x1 + 16, y: cy - 2, 'font-size': 14, fill: TEXT })}>${tspan(formatSeconds(med), { 'font-weight': 'bold' })}${ratio}</text>`);
    const runs = `${r.timesMs.length} ${r.timesMs.length === 1 ? 'run' : 'runs'}`;
    body.push(text(x1 + 16, cy + 13, `p90 ${formatSeconds(percentile(r.timesMs, 90))}, ${runs}`, { 'font-size': 11, fill: MUTED }));
  });
  return svgDocument(title, opts, body, bottom + 42);
}

// ---- grouped bars -------------------------------------------------------------------

interface Bar {
  label: string;
  value: number | undefined;
  color: string;
  faded?: boolean;
  /** Text after the value (e.g. a ratio). */
  extra?: string;
}

interface Group {
  name: string;
  bars: Bar[];
  /** The whole row failed: drawn as one FAILED label. */
  failed: boolean;
  error?: string;
}

const BAR = 16;
const BAR_GAP = 5;
const GROUP_PAD = 14;

function groupHeight(g: Group): number {
  return g.failed ? 36 : g.bars.length * (BAR + BAR_GAP) - BAR_GAP + GROUP_PAD * 2;
}

/**
 * Horizontal grouped bars from the scale's low end, each labelled with its value or
 * FAILED, over row stripes and the axis' grid. Returns the elements and the axis' y.
 */
function barGroups(
  groups: Group[],
  scale: Scale,
  top: number,
  axisLabel: string,
  format: (v: number) => string,
  underlay: (bottom: number) => string[] = () => [],
): { body: string[]; bottom: number } {
  let y = top;
  const spans = groups.map((g) => {
    const h = groupHeight(g);
    const at = y;
    y += h;
    return { at, h };
  });
  const bottom = Math.max(y, top + 36);
  const body: string[] = [];
  groups.forEach((_, i) => {
    body.push(...stripe(i, spans[i]!.at, spans[i]!.h));
  });
  body.push(...axis(scale, top, bottom, axisLabel), ...underlay(bottom));
  if (groups.length === 0) body.push(text(X0 + 8, top + 22, 'no runtimes measured', { 'font-size': 13, fill: MUTED }));
  groups.forEach((g, i) => {
    const { at, h } = spans[i]!;
    body.push(text(X0 - 12, at + h / 2 + 5, g.name, { 'text-anchor': 'end', 'font-size': 14, 'font-weight': 'bold', fill: TEXT }));
    if (g.failed) {
      body.push(failedLabel(X0 + 8, at + h / 2 + 5, g.error, CHART_WIDTH - X0 - 40, i));
      return;
    }
    g.bars.forEach((b, j) => {
      const by = at + GROUP_PAD + j * (BAR + BAR_GAP);
      const ty = by + BAR / 2 + 4.5;
      if (b.value === undefined || !Number.isFinite(b.value)) {
        body.push(
          `<text${attrs({ x: X0 + 6, y: ty, 'font-size': 12, fill: TEXT, ...halo(i) })}>${escapeXml(`${b.label}:`)}${tspan('FAILED', { dx: 5, fill: FAIL, 'font-weight': 'bold' })}</text>`,
        );
        return;
      }
      const end = scale.x(b.value);
      body.push(
        `<rect${attrs({ x: X0, y: by, width: Math.max(1, end - X0), height: BAR, fill: b.color, 'fill-opacity': b.faded ? 0.35 : 0.9, stroke: b.color, 'stroke-dasharray': b.faded ? '4 2' : undefined })}/>`,
      );
      const label = `${b.label}: ${format(b.value)}`;
      const width = textWidth(label, 12) + (b.extra ? 8 + textWidth(b.extra, 12) : 0);
      // Right of the bar where it fits, else inside its end (without the extra text).
      const inside = end + 6 + width > CHART_WIDTH - 8 && end - X0 > textWidth(label, 12) + 12;
      const extra = b.extra && !inside ? tspan(b.extra, { dx: 8, fill: MUTED }) : '';
      body.push(
        `<text${attrs({ x: inside ? end - 6 : end + 6, y: ty, 'font-size': 12, fill: inside ? '#ffffff' : TEXT, 'text-anchor': inside ? 'end' : undefined, ...(inside ? {} : halo(i)) })}>${tspan(label, { 'font-weight': 'bold' })}${extra}</text>`,
      );
    });
  });
  return { body, bottom };
}

function countColor(j: number): string {
  return COUNT_COLORS[j % COUNT_COLORS.length]!;
}

/**
 * Concurrent start: for each runtime one bar per container count N, the wall time
 * until all N containers had run, on a log-scale axis in seconds; tern rows also
 * give their ratio to runc at the same N.
 */
export function concurrencyChart(rows: ConcurrencyRow[], counts: number[], opts: ChartOptions = {}): string {
  const title = opts.title ?? 'Concurrent start: wall time until all N containers have run';
  const top = 100;
  const x1 = 700;
  const values = rows.flatMap((r) => counts.map((c) => r.wallS[c]).filter((v): v is number => v !== undefined));
  const scale = logScale(values, X0, x1);
  const runc = rows.find((r) => r.name === 'runc');
  const groups: Group[] = rows.map((r) => ({
    name: r.name,
    failed: counts.every((c) => r.wallS[c] === undefined),
    error: r.error,
    bars: counts.map((c, j) => {
      const v = r.wallS[c];
      const base = runc?.wallS[c];
      return {
        label: `n=${c}`,
        value: v,
        color: countColor(j),
        extra: isTern(r.name) && v !== undefined && base !== undefined && base > 0 ? `${formatRatio(v / base)} runc` : undefined,
      };
    }),
  }));
  const axisLabel = 'wall seconds until every container has run /bin/true and exited (log scale)';
  const { body: bars, bottom } = barGroups(groups, scale, top, axisLabel, (v) => `${v.toFixed(2)} s`);
  const legend = legendSwatches(
    76,
    counts.map((c, j) => ({ label: `N = ${c} at once`, color: countColor(j) })),
  );
  return svgDocument(title, opts, [...legend, ...bars], bottom + 42);
}

/**
 * Idle density: for each runtime one bar per container count N of the PSS per idle
 * container in MiB (and again after KSM where measured), on a linear axis with a
 * reference line at RunD's 24 MiB.
 */
export function densityChart(rows: DensityRow[], counts: number[], opts: ChartOptions = {}): string {
  const title = opts.title ?? 'Memory per idle container (PSS, MiB) by number of containers';
  const top = 104;
  const x1 = 700;
  const anyKsm = rows.some((r) => r.ksmMib !== undefined);
  const values = rows.flatMap((r) => counts.flatMap((c) => [r.mib[c], r.ksmMib?.[c]]).filter((v): v is number => v !== undefined));
  const scale = linearScale([...values, RUND_MIB * 1.15], X0, x1);
  const groups: Group[] = rows.map((r) => ({
    name: r.name,
    failed: counts.every((c) => r.mib[c] === undefined && r.ksmMib?.[c] === undefined),
    error: r.error,
    bars: [
      ...counts.map((c, j) => ({ label: `n=${c}`, value: r.mib[c], color: countColor(j) })),
      ...(r.ksmMib ? counts.map((c, j) => ({ label: `n=${c} + KSM`, value: r.ksmMib![c], color: countColor(j), faded: true })) : []),
    ],
  }));
  const rx = scale.x(RUND_MIB);
  const reference = (bottom: number) => [
    `<line${attrs({ x1: rx, x2: rx, y1: top - 6, y2: bottom, stroke: REFERENCE, 'stroke-width': 1.5, 'stroke-dasharray': '6 4' })}/>`,
    text(rx + 4, top - 8, `RunD ${RUND_MIB} MiB`, { 'font-size': 12, 'font-weight': 'bold', fill: REFERENCE }),
  ];
  const axisLabel = 'MiB PSS per idle container (linear scale)';
  const { body: bars, bottom } = barGroups(groups, scale, top, axisLabel, (v) => `${v.toFixed(1)} MiB`, reference);
  const legend = [
    ...counts.map((c, j) => ({ label: `${c} idle`, color: countColor(j) })),
    ...(anyKsm ? counts.map((c, j) => ({ label: `${c} idle, after KSM`, color: countColor(j), faded: true })) : []),
  ];
  return svgDocument(title, opts, [...legendSwatches(74, legend), ...bars], bottom + 42);
}

// ---- files ----------------------------------------------------------------------------

export interface PngConverter {
  name: 'rsvg-convert' | 'convert';
  /** The arguments turning svg into png. */
  args(svg: string, png: string): string[];
}

const converterCache = new Map<string, PngConverter | undefined>();

/**
 * The SVG-to-PNG converter on PATH: rsvg-convert (Debian: librsvg2-bin), else
 * ImageMagick's convert (only if `convert -version` says ImageMagick: other
 * programs share the name). undefined when there is none.
 */
export function pngConverter(env: NodeJS.ProcessEnv = process.env): PngConverter | undefined {
  const key = env.PATH ?? '';
  if (converterCache.has(key)) return converterCache.get(key);
  const probe = (cmd: string, arg: string) => spawnSync(cmd, [arg], { env, encoding: 'utf8', timeout: 10_000 });
  let found: PngConverter | undefined;
  const rsvg = probe('rsvg-convert', '--version');
  if (!rsvg.error && rsvg.status === 0) {
    found = { name: 'rsvg-convert', args: (svg, png) => ['--format', 'png', '--background-color', 'white', '--output', png, svg] };
  } else {
    const im = probe('convert', '-version');
    if (!im.error && im.status === 0 && /ImageMagick/i.test(im.stdout)) {
      found = { name: 'convert', args: (svg, png) => ['-background', 'white', svg, png] };
    }
  }
  converterCache.set(key, found);
  return found;
}

let saidNoConverter = false;

/**
 * Writes <dir>/<baseName>.svg (creating dir) and, where a converter is on PATH,
 * <dir>/<baseName>.png beside it. Without one, or when it fails, there is no PNG
 * (an older one is removed) and stderr says why, the lack of a converter only once.
 * Returns the paths written.
 */
export function writeChart(dir: string, baseName: string, svg: string, env: NodeJS.ProcessEnv = process.env): string[] {
  mkdirSync(dir, { recursive: true });
  const svgPath = join(dir, `${baseName}.svg`);
  writeFileSync(svgPath, svg, 'utf8');
  const written = [svgPath];
  const pngPath = join(dir, `${baseName}.png`);
  const conv = pngConverter(env);
  // A PNG left by an earlier run would no longer match the SVG.
  rmSync(pngPath, { force: true });
  if (!conv) {
    if (!saidNoConverter) {
      process.stderr.write("charts: no PNG written: neither rsvg-convert (librsvg2-bin) nor ImageMagick's convert is on PATH\n");
      saidNoConverter = true;
    }
    return written;
  }
  const r = spawnSync(conv.name, conv.args(svgPath, pngPath), { env, encoding: 'utf8', timeout: 60_000 });
  if (r.error || r.status !== 0 || !existsSync(pngPath)) {
    const why = r.error ? r.error.message : r.status !== 0 ? `exit ${r.status ?? r.signal}: ${clip(r.stderr ?? '', 200)}` : 'no file written';
    process.stderr.write(`charts: ${conv.name} failed for ${svgPath} (${why}); no PNG\n`);
    rmSync(pngPath, { force: true });
    return written;
  }
  written.push(pngPath);
  return written;
}
