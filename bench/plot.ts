// SVG charts of the benchmarks' results, drawn here without any library: start
// latency per runtime (every run a dot, the median a bar mark, log-scale seconds),
// concurrent start wall times (grouped bars, log scale) and idle memory per
// container (grouped bars, linear MiB, a reference line at RunD's 24 MiB).
// Each function takes plain data and returns a self-contained SVG document (fixed
// 900 px width, sans-serif, no external fonts or scripts); writeChart saves it and,
// where a converter is installed, a PNG beside it.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { median, percentile } from "./stats.js";

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
  error?: string;
}

export interface DensityRow {
  name: string;
  /** MiB PSS per idle container by container count. */
  mib: Record<number, number | undefined>;
  /** The same after KSM merged pages, when measured. */
  ksmMib?: Record<number, number | undefined>;
  error?: string;
}

export interface ChartOptions {
  /** Overrides the chart's default title. */
  title?: string;
  /** The line under the title: the machine (see machineSubtitle). */
  subtitle?: string;
  /** A footnote under the axis. */
  note?: string;
}

export const CHART_WIDTH = 900;
/** RunD's reported memory overhead per secure container, drawn on the density chart. */
export const RUND_MIB = 24;

const FONT = "Helvetica, Arial, sans-serif";
const X0 = 160; // plot area's left edge (runtime names to its left)
const TEXT = "#222";
const MUTED = "#666";
const FAIL = "#b91c1c";
const REFERENCE = "#6d28d9";
const GRID = "#e2e2e2";
const GRID_MAJOR = "#c4c4c4";
const COUNT_COLORS = ["#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#0891b2"];
const RUNTIME_COLORS: Record<string, string> = {
  "tern-cold": "#1e3a8a",
  "tern-template": "#2563eb",
  "tern-pool": "#7c3aed",
  runc: "#15803d",
  gvisor: "#ea580c",
};
const FALLBACK_COLORS = ["#0891b2", "#be185d", "#854d0e", "#4b5563"];

// ---- text -------------------------------------------------------------------------

/** Text made safe for XML character data and attribute values. */
export function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffe\uffff]/g, "")
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

function clip(s: string, max: number): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length > max ? one.slice(0, max - 3) + "..." : one;
}

/** Text broken at spaces into at most maxLines lines of about width characters (the last one clipped). */
function wrap(s: string, width: number, maxLines: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of s.replace(/\s+/g, " ").trim().split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  if (lines.length <= maxLines) return lines;
  return [...lines.slice(0, maxLines - 1), clip(lines.slice(maxLines - 1).join(" "), width)];
}

/** A coordinate, rounded to 0.1 px. */
function n(v: number): string {
  return String(Math.round(v * 10) / 10);
}

type Attrs = Record<string, string | number | undefined>;

function attrs(a: Attrs): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${typeof v === "number" ? n(v) : escapeXml(v!)}"`)
    .join("");
}

function text(x: number, y: number, s: string, a: Attrs = {}): string {
  return `<text${attrs({ x, y, ...a })}>${escapeXml(s)}</text>`;
}

function tspan(s: string, a: Attrs = {}): string {
  return `<tspan${attrs(a)}>${escapeXml(s)}</tspan>`;
}

/** Rough width of a text in px (for placing labels; no font metrics here). */
function textWidth(s: string, size: number): number {
  return s.length * size * 0.56;
}

function runtimeColor(name: string, index: number): string {
  return RUNTIME_COLORS[name] ?? FALLBACK_COLORS[index % FALLBACK_COLORS.length]!;
}

const isTern = (name: string) => name.startsWith("tern");

/** "2 cores, QEMU under TCG, 2025-01-31 12:00 UTC": the machine line of a chart. */
export function machineSubtitle(accelNote: string, date: Date = new Date(), cores: number = cpus().length): string {
  const when = date.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  return [`${cores} ${cores === 1 ? "core" : "cores"}`, accelNote, when].filter(Boolean).join(", ");
}

// ---- scales -------------------------------------------------------------------------

interface Scale {
  lo: number;
  hi: number;
  /** Pixel x of a value (clamped to the domain). */
  x(v: number): number;
  /** Labelled ticks. */
  ticks: number[];
  /** Unlabelled grid lines. */
  minor: number[];
}

/** m * 10^e, exact for negative e too (3 / 10, not 3 * 0.1). */
function pow10(m: number, e: number): number {
  return e < 0 ? m / 10 ** -e : m * 10 ** e;
}

/** Every m * 10^e with m from mantissas, within [lo, hi]. */
function decadeSteps(lo: number, hi: number, mantissas: number[]): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e++) {
    for (const m of mantissas) {
      const v = pow10(m, e);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    }
  }
  return out;
}

/** A log scale over positive values from x0 to x1, its ends on the 1-3-10 sequence. */
function logScale(values: number[], x0: number, x1: number): Scale {
  const pos = values.filter((v) => v > 0 && Number.isFinite(v));
  const min = pos.length ? Math.min(...pos) / 1.15 : 0.1;
  const max = pos.length ? Math.max(...pos) * 1.15 : 10;
  const candidates = decadeSteps(min / 10, max * 10, [1, 3]);
  const lo = [...candidates].reverse().find((v) => v <= min) ?? candidates[0]!;
  let hi = candidates.find((v) => v >= max) ?? candidates[candidates.length - 1]!;
  if (hi <= lo) hi = lo * 10;
  // Under two decades, 2 and 5 get labels too (0.1 0.2 0.3 0.5 1).
  const labelled = hi / lo < 30 ? [1, 2, 3, 5] : [1, 3];
  const ll = Math.log10(lo);
  const span = Math.log10(hi) - ll;
  return {
    lo,
    hi,
    x: (v) => x0 + ((Math.log10(Math.min(hi, Math.max(lo, v))) - ll) / span) * (x1 - x0),
    ticks: decadeSteps(lo, hi, labelled),
    minor: decadeSteps(lo, hi, [1, 2, 3, 4, 5, 6, 7, 8, 9].filter((m) => !labelled.includes(m))),
  };
}

/** A linear scale from 0 over values (and the extra ones that must show), ticks at 1-2-5 steps. */
function linearScale(values: number[], x0: number, x1: number): Scale {
  const max = Math.max(1, ...values.filter((v) => Number.isFinite(v))) * 1.05;
  const raw = max / 8;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let i = 0; i * step <= hi * (1 + 1e-9); i++) ticks.push(Number((i * step).toPrecision(12)));
  return {
    lo: 0,
    hi,
    x: (v) => x0 + (Math.min(hi, Math.max(0, v)) / hi) * (x1 - x0),
    ticks,
    minor: [],
  };
}

/** A tick value as text: 0.1, 0.3, 1, 30, 2000. */
function tickLabel(v: number): string {
  return String(Number(v.toPrecision(6)));
}

/** Grid lines over [top, bottom] and the labelled axis under them. */
function axis(s: Scale, top: number, bottom: number, label: string): string[] {
  const out: string[] = [];
  for (const v of s.minor) out.push(`<line${attrs({ x1: s.x(v), x2: s.x(v), y1: top, y2: bottom, stroke: GRID })}/>`);
  for (const v of s.ticks) {
    out.push(`<line${attrs({ x1: s.x(v), x2: s.x(v), y1: top, y2: bottom, stroke: GRID_MAJOR })}/>`);
    out.push(`<line${attrs({ x1: s.x(v), x2: s.x(v), y1: bottom, y2: bottom + 5, stroke: TEXT })}/>`);
    out.push(text(s.x(v), bottom + 18, tickLabel(v), { "text-anchor": "middle", "font-size": 12, fill: TEXT }));
  }
  out.push(`<line${attrs({ x1: s.x(s.lo), x2: s.x(s.hi), y1: bottom, y2: bottom, stroke: TEXT })}/>`);
  out.push(text((s.x(s.lo) + s.x(s.hi)) / 2, bottom + 38, label, { "text-anchor": "middle", "font-size": 12, fill: MUTED }));
  return out;
}

// ---- document ---------------------------------------------------------------------

/** The SVG document: white background, title, subtitle, body, optional footnote. */
function svgDocument(title: string, opts: ChartOptions, body: string[], bodyBottom: number): string {
  const noteY = bodyBottom + 20;
  const note = opts.note ? wrap(opts.note, 135, 3) : [];
  const height = Math.ceil(note.length > 0 ? noteY + (note.length - 1) * 15 + 16 : bodyBottom + 14);
  const head = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg"${attrs({ width: CHART_WIDTH, height, viewBox: `0 0 ${CHART_WIDTH} ${height}`, "font-family": FONT, role: "img" })}>`,
    `<title>${escapeXml(title)}</title>`,
    ...(opts.subtitle ? [`<desc>${escapeXml(opts.subtitle)}</desc>`] : []),
    `<rect${attrs({ x: 0, y: 0, width: CHART_WIDTH, height, fill: "#ffffff" })}/>`,
    text(20, 30, clip(title, 80), { "font-size": 18, "font-weight": "bold", fill: TEXT }),
    ...(opts.subtitle ? [text(20, 50, clip(opts.subtitle, 140), { "font-size": 12, fill: MUTED })] : []),
  ];
  const tail = note.map((line, i) => text(20, noteY + i * 15, line, { "font-size": 11, fill: MUTED }));
  return [...head, ...body, ...tail, "</svg>", ""].join("\n");
}

const STRIPE = "#f6f7f9";

/** Every second row on a light grey band. */
function stripe(i: number, y: number, h: number): string[] {
  return i % 2 === 1 ? [`<rect${attrs({ x: 10, y, width: CHART_WIDTH - 20, height: h, fill: STRIPE })}/>`] : [];
}

/** An outline in the row's background colour, keeping a label readable over grid and reference lines. */
function halo(i: number): Attrs {
  return { stroke: i % 2 === 1 ? STRIPE : "#ffffff", "stroke-width": 3, "stroke-linejoin": "round", "paint-order": "stroke" };
}

function failedLabel(x: number, y: number, error: string | undefined, room: number, row: number): string {
  const why = error ? tspan(clip(error, Math.max(10, Math.floor(room / 6.2))), { dx: 8, fill: MUTED, "font-weight": "normal", "font-size": 11 }) : "";
  return `<text${attrs({ x, y, "font-size": 13, "font-weight": "bold", fill: FAIL, ...halo(row) })}>${escapeXml("FAILED")}${why}</text>`;
}

function legendSwatches(y: number, items: { label: string; color: string; faded?: boolean }[]): string[] {
  const out: string[] = [];
  let x = X0;
  for (const it of items) {
    out.push(
      `<rect${attrs({ x, y: y - 10, width: 12, height: 12, fill: it.color, "fill-opacity": it.faded ? 0.35 : 1, stroke: it.color, "stroke-dasharray": it.faded ? "3 2" : undefined })}/>`,
    );
    out.push(text(x + 17, y, it.label, { "font-size": 12, fill: TEXT }));
    x += 17 + textWidth(it.label, 12) + 22;
  }
  return out;
}

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
  const scale = logScale(results.filter(ok).flatMap((r) => r.timesMs.map((ms) => ms / 1000)), X0, x1);
  const runc = results.find((r) => r.name === "runc" && ok(r));
  const bottom = top + Math.max(1, results.length) * ROW;
  const body: string[] = [];

  // Legend: what a dot and a bar mean.
  body.push(`<circle${attrs({ cx: X0 + 6, cy: 70, r: 4, fill: "#555", "fill-opacity": 0.55, stroke: "#555" })}/>`);
  body.push(text(X0 + 16, 74, "one run", { "font-size": 12, fill: TEXT }));
  body.push(`<rect${attrs({ x: X0 + 86, y: 62, width: 3, height: 16, fill: "#111" })}/>`);
  body.push(text(X0 + 96, 74, "median", { "font-size": 12, fill: TEXT }));
  body.push(text(x1 + 16, 74, runc && results.some((r) => isTern(r.name)) ? "median (tern: ratio to runc)" : "median", { "font-size": 12, fill: MUTED }));

  results.forEach((r, i) => body.push(...stripe(i, top + i * ROW, ROW)));
  body.push(...axis(scale, top, bottom, "wall time of one start, seconds (log scale)"));
  if (results.length === 0) body.push(text(X0 + 8, top + ROW / 2 + 4, "no runtimes measured", { "font-size": 13, fill: MUTED }));

  results.forEach((r, i) => {
    const cy = top + i * ROW + ROW / 2;
    const color = runtimeColor(r.name, i);
    body.push(text(X0 - 12, cy + 5, r.name, { "text-anchor": "end", "font-size": 14, "font-weight": "bold", fill: TEXT }));
    if (!ok(r)) {
      const done = r.timesMs.length > 0 ? `after ${r.timesMs.length} ${r.timesMs.length === 1 ? "run" : "runs"}: ` : "";
      body.push(failedLabel(X0 + 8, cy + 5, `${done}${r.error ?? "no runs"}`, CHART_WIDTH - X0 - 40, i));
      return;
    }
    r.timesMs.forEach((ms, j) => {
      const dy = (((j * 7) % 5) - 2) * 3.5; // spread the dots a little so that equal times stay visible
      body.push(`<circle${attrs({ cx: scale.x(ms / 1000), cy: cy + dy, r: 4, fill: color, "fill-opacity": 0.5, stroke: color, "stroke-width": 1 })}/>`);
    });
    const med = median(r.timesMs);
    body.push(`<rect${attrs({ x: scale.x(med / 1000) - 1.5, y: cy - 14, width: 3, height: 28, fill: "#111" })}/>`);
    const ratio = isTern(r.name) && runc ? tspan(`${formatRatio(med / median(runc.timesMs))} runc`, { dx: 10, fill: color, "font-weight": "bold" }) : "";
    body.push(`<text${attrs({ x: x1 + 16, y: cy - 2, "font-size": 14, fill: TEXT })}>${tspan(formatSeconds(med), { "font-weight": "bold" })}${ratio}</text>`);
    const runs = `${r.timesMs.length} ${r.timesMs.length === 1 ? "run" : "runs"}`;
    body.push(text(x1 + 16, cy + 13, `p90 ${formatSeconds(percentile(r.timesMs, 90))}, ${runs}`, { "font-size": 11, fill: MUTED }));
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
  groups.forEach((_, i) => body.push(...stripe(i, spans[i]!.at, spans[i]!.h)));
  body.push(...axis(scale, top, bottom, axisLabel), ...underlay(bottom));
  if (groups.length === 0) body.push(text(X0 + 8, top + 22, "no runtimes measured", { "font-size": 13, fill: MUTED }));
  groups.forEach((g, i) => {
    const { at, h } = spans[i]!;
    body.push(text(X0 - 12, at + h / 2 + 5, g.name, { "text-anchor": "end", "font-size": 14, "font-weight": "bold", fill: TEXT }));
    if (g.failed) {
      body.push(failedLabel(X0 + 8, at + h / 2 + 5, g.error, CHART_WIDTH - X0 - 40, i));
      return;
    }
    g.bars.forEach((b, j) => {
      const by = at + GROUP_PAD + j * (BAR + BAR_GAP);
      const ty = by + BAR / 2 + 4.5;
      if (b.value === undefined || !Number.isFinite(b.value)) {
        body.push(`<text${attrs({ x: X0 + 6, y: ty, "font-size": 12, fill: TEXT, ...halo(i) })}>${escapeXml(`${b.label}:`)}${tspan("FAILED", { dx: 5, fill: FAIL, "font-weight": "bold" })}</text>`);
        return;
      }
      const end = scale.x(b.value);
      body.push(
        `<rect${attrs({ x: X0, y: by, width: Math.max(1, end - X0), height: BAR, fill: b.color, "fill-opacity": b.faded ? 0.35 : 0.9, stroke: b.color, "stroke-dasharray": b.faded ? "4 2" : undefined })}/>`,
      );
      const label = `${b.label}: ${format(b.value)}`;
      const width = textWidth(label, 12) + (b.extra ? 8 + textWidth(b.extra, 12) : 0);
      // Right of the bar where it fits, else inside its end (without the extra text).
      const inside = end + 6 + width > CHART_WIDTH - 8 && end - X0 > textWidth(label, 12) + 12;
      const extra = b.extra && !inside ? tspan(b.extra, { dx: 8, fill: MUTED }) : "";
      body.push(
        `<text${attrs({ x: inside ? end - 6 : end + 6, y: ty, "font-size": 12, fill: inside ? "#ffffff" : TEXT, "text-anchor": inside ? "end" : undefined, ...(inside ? {} : halo(i)) })}>${tspan(label, { "font-weight": "bold" })}${extra}</text>`,
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
  const title = opts.title ?? "Concurrent start: wall time until all N containers have run";
  const top = 100;
  const x1 = 700;
  const values = rows.flatMap((r) => counts.map((c) => r.wallS[c]).filter((v): v is number => v !== undefined));
  const scale = logScale(values, X0, x1);
  const runc = rows.find((r) => r.name === "runc");
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
  const axisLabel = "wall seconds until every container has run /bin/true and exited (log scale)";
  const { body: bars, bottom } = barGroups(groups, scale, top, axisLabel, (v) => `${v.toFixed(2)} s`);
  const legend = legendSwatches(76, counts.map((c, j) => ({ label: `N = ${c} at once`, color: countColor(j) })));
  return svgDocument(title, opts, [...legend, ...bars], bottom + 42);
}

/**
 * Idle density: for each runtime one bar per container count N of the PSS per idle
 * container in MiB (and again after KSM where measured), on a linear axis with a
 * reference line at RunD's 24 MiB.
 */
export function densityChart(rows: DensityRow[], counts: number[], opts: ChartOptions = {}): string {
  const title = opts.title ?? "Memory per idle container (PSS, MiB) by number of containers";
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
    `<line${attrs({ x1: rx, x2: rx, y1: top - 6, y2: bottom, stroke: REFERENCE, "stroke-width": 1.5, "stroke-dasharray": "6 4" })}/>`,
    text(rx + 4, top - 8, `RunD ${RUND_MIB} MiB`, { "font-size": 12, "font-weight": "bold", fill: REFERENCE }),
  ];
  const axisLabel = "MiB PSS per idle container (linear scale)";
  const { body: bars, bottom } = barGroups(groups, scale, top, axisLabel, (v) => `${v.toFixed(1)} MiB`, reference);
  const legend = [
    ...counts.map((c, j) => ({ label: `${c} idle`, color: countColor(j) })),
    ...(anyKsm ? counts.map((c, j) => ({ label: `${c} idle, after KSM`, color: countColor(j), faded: true })) : []),
  ];
  return svgDocument(title, opts, [...legendSwatches(74, legend), ...bars], bottom + 42);
}

// ---- files ----------------------------------------------------------------------------

export interface PngConverter {
  name: "rsvg-convert" | "convert";
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
  const key = env.PATH ?? "";
  if (converterCache.has(key)) return converterCache.get(key);
  const probe = (cmd: string, arg: string) => spawnSync(cmd, [arg], { env, encoding: "utf8", timeout: 10_000 });
  let found: PngConverter | undefined;
  const rsvg = probe("rsvg-convert", "--version");
  if (!rsvg.error && rsvg.status === 0) {
    found = { name: "rsvg-convert", args: (svg, png) => ["--format", "png", "--background-color", "white", "--output", png, svg] };
  } else {
    const im = probe("convert", "-version");
    if (!im.error && im.status === 0 && /ImageMagick/i.test(im.stdout)) {
      found = { name: "convert", args: (svg, png) => ["-background", "white", svg, png] };
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
  writeFileSync(svgPath, svg, "utf8");
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
  const r = spawnSync(conv.name, conv.args(svgPath, pngPath), { env, encoding: "utf8", timeout: 60_000 });
  if (r.error || r.status !== 0 || !existsSync(pngPath)) {
    const why = r.error ? r.error.message : r.status !== 0 ? `exit ${r.status ?? r.signal}: ${clip(r.stderr ?? "", 200)}` : "no file written";
    process.stderr.write(`charts: ${conv.name} failed for ${svgPath} (${why}); no PNG\n`);
    rmSync(pngPath, { force: true });
    return written;
  }
  written.push(pngPath);
  return written;
}
