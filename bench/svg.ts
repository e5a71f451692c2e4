// SVG drawing for the benchmark charts: text (escaped, clipped, wrapped),
// attributes, colours per runtime, log and linear scales with their axes, the
// document frame, row stripes, legends and FAILED labels. plot.ts draws the
// charts themselves from these.
import { cpus } from 'node:os';

export interface ChartOptions {
  /** Overrides the chart's default title. */
  title?: string;
  /** The line under the title: the machine (see machineSubtitle). */
  subtitle?: string;
  /** A footnote under the axis. */
  note?: string;
}

export const CHART_WIDTH = 900;

const FONT = 'Helvetica, Arial, sans-serif';
export const X0 = 160; // plot area's left edge (runtime names to its left)
export const TEXT = '#222';
export const MUTED = '#666';
export const FAIL = '#b91c1c';
export const REFERENCE = '#6d28d9';
const GRID = '#e2e2e2';
const GRID_MAJOR = '#c4c4c4';
export const COUNT_COLORS = ['#2563eb', '#f59e0b', '#10b981', '#8b5cf6', '#ef4444', '#0891b2'];
const RUNTIME_COLORS: Record<string, string> = {
  'tern-cold': '#1e3a8a',
  'tern-template': '#2563eb',
  'tern-pool': '#7c3aed',
  runc: '#15803d',
  gvisor: '#ea580c',
};
const FALLBACK_COLORS = ['#0891b2', '#be185d', '#854d0e', '#4b5563'];

// ---- text -------------------------------------------------------------------------

/** Text made safe for XML character data and attribute values. */
export function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffe\uffff]/g, '')
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

export function clip(s: string, max: number): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max - 3)}...` : one;
}

/** Text broken at spaces into at most maxLines lines of about width characters (the last one clipped). */
function wrap(s: string, width: number, maxLines: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of s.replace(/\s+/g, ' ').trim().split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  if (lines.length <= maxLines) return lines;
  return [...lines.slice(0, maxLines - 1), clip(lines.slice(maxLines - 1).join(' '), width)];
}

/** A coordinate, rounded to 0.1 px. */
function n(v: number): string {
  return String(Math.round(v * 10) / 10);
}

type Attrs = Record<string, string | number | undefined>;

export function attrs(a: Attrs): string {
  return Object.entries(a)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${typeof v === 'number' ? n(v) : escapeXml(v!)}"`)
    .join('');
}

export function text(x: number, y: number, s: string, a: Attrs = {}): string {
  return `<text${attrs({ x, y, ...a })}>${escapeXml(s)}</text>`;
}

export function tspan(s: string, a: Attrs = {}): string {
  return `<tspan${attrs(a)}>${escapeXml(s)}</tspan>`;
}

/** Rough width of a text in px (for placing labels; no font metrics here). */
export function textWidth(s: string, size: number): number {
  return s.length * size * 0.56;
}

export function runtimeColor(name: string, index: number): string {
  return RUNTIME_COLORS[name] ?? FALLBACK_COLORS[index % FALLBACK_COLORS.length]!;
}

export const isTern = (name: string) => name.startsWith('tern');

/** "2 cores, QEMU under TCG, 2025-01-31 12:00 UTC": the machine line of a chart. */
export function machineSubtitle(accelNote: string, date: Date = new Date(), cores: number = cpus().length): string {
  const when = `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return [`${cores} ${cores === 1 ? 'core' : 'cores'}`, accelNote, when].filter(Boolean).join(', ');
}

// ---- scales -------------------------------------------------------------------------

export interface Scale {
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
export function logScale(values: number[], x0: number, x1: number): Scale {
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
    minor: decadeSteps(
      lo,
      hi,
      [1, 2, 3, 4, 5, 6, 7, 8, 9].filter((m) => !labelled.includes(m)),
    ),
  };
}

/** A linear scale from 0 over values (and the extra ones that must show), ticks at 1-2-5 steps. */
export function linearScale(values: number[], x0: number, x1: number): Scale {
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
export function axis(s: Scale, top: number, bottom: number, label: string): string[] {
  const out: string[] = [];
  for (const v of s.minor) out.push(`<line${attrs({ x1: s.x(v), x2: s.x(v), y1: top, y2: bottom, stroke: GRID })}/>`);
  for (const v of s.ticks) {
    out.push(`<line${attrs({ x1: s.x(v), x2: s.x(v), y1: top, y2: bottom, stroke: GRID_MAJOR })}/>`);
    out.push(`<line${attrs({ x1: s.x(v), x2: s.x(v), y1: bottom, y2: bottom + 5, stroke: TEXT })}/>`);
    out.push(text(s.x(v), bottom + 18, tickLabel(v), { 'text-anchor': 'middle', 'font-size': 12, fill: TEXT }));
  }
  out.push(`<line${attrs({ x1: s.x(s.lo), x2: s.x(s.hi), y1: bottom, y2: bottom, stroke: TEXT })}/>`);
  out.push(text((s.x(s.lo) + s.x(s.hi)) / 2, bottom + 38, label, { 'text-anchor': 'middle', 'font-size': 12, fill: MUTED }));
  return out;
}

// ---- document ---------------------------------------------------------------------

/** The SVG document: white background, title, subtitle, body, optional footnote. */
export function svgDocument(title: string, opts: ChartOptions, body: string[], bodyBottom: number): string {
  const noteY = bodyBottom + 20;
  const note = opts.note ? wrap(opts.note, 135, 3) : [];
  const height = Math.ceil(note.length > 0 ? noteY + (note.length - 1) * 15 + 16 : bodyBottom + 14);
  const head = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg"${attrs({ width: CHART_WIDTH, height, viewBox: `0 0 ${CHART_WIDTH} ${height}`, 'font-family': FONT, role: 'img' })}>`,
    `<title>${escapeXml(title)}</title>`,
    ...(opts.subtitle ? [`<desc>${escapeXml(opts.subtitle)}</desc>`] : []),
    `<rect${attrs({ x: 0, y: 0, width: CHART_WIDTH, height, fill: '#ffffff' })}/>`,
    text(20, 30, clip(title, 80), { 'font-size': 18, 'font-weight': 'bold', fill: TEXT }),
    ...(opts.subtitle ? [text(20, 50, clip(opts.subtitle, 140), { 'font-size': 12, fill: MUTED })] : []),
  ];
  const tail = note.map((line, i) => text(20, noteY + i * 15, line, { 'font-size': 11, fill: MUTED }));
  return [...head, ...body, ...tail, '</svg>', ''].join('\n');
}

const STRIPE = '#f6f7f9';

/** Every second row on a light grey band. */
export function stripe(i: number, y: number, h: number): string[] {
  return i % 2 === 1 ? [`<rect${attrs({ x: 10, y, width: CHART_WIDTH - 20, height: h, fill: STRIPE })}/>`] : [];
}

/** An outline in the row's background colour, keeping a label readable over grid and reference lines. */
export function halo(i: number): Attrs {
  return { stroke: i % 2 === 1 ? STRIPE : '#ffffff', 'stroke-width': 3, 'stroke-linejoin': 'round', 'paint-order': 'stroke' };
}

export function failedLabel(x: number, y: number, error: string | undefined, room: number, row: number): string {
  const why = error ? tspan(clip(error, Math.max(10, Math.floor(room / 6.2))), { dx: 8, fill: MUTED, 'font-weight': 'normal', 'font-size': 11 }) : '';
  return `<text${attrs({ x, y, 'font-size': 13, 'font-weight': 'bold', fill: FAIL, ...halo(row) })}>${escapeXml('FAILED')}${why}</text>`;
}

export function legendSwatches(y: number, items: { label: string; color: string; faded?: boolean }[]): string[] {
  const out: string[] = [];
  let x = X0;
  for (const it of items) {
    out.push(
      `<rect${attrs({ x, y: y - 10, width: 12, height: 12, fill: it.color, 'fill-opacity': it.faded ? 0.35 : 1, stroke: it.color, 'stroke-dasharray': it.faded ? '3 2' : undefined })}/>`,
    );
    out.push(text(x + 17, y, it.label, { 'font-size': 12, fill: TEXT }));
    x += 17 + textWidth(it.label, 12) + 22;
  }
  return out;
}
