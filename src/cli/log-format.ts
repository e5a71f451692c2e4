// How `tern logs` prints a line. Human-readable: time (UTC, ms; blank when
// the line has none of its own), source, level (KERN for kernel lines),
// message, then the ids (sandbox, container, exec) and the other fields as
// key=value. --json: one JSON object per line: a pino line as written with
// "source" added in front; other lines as {source, kind, time?, uptime?, msg}.
import { printable } from './format';
import type { LogEntry } from './log-lines';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Shown in their own columns, or the same on every line of a file (pino's base fields). */
const NOT_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name', 'namespace', 'sandbox', 'container', 'exec']);
const IDS = ['sandbox', 'container', 'exec'] as const;
const TIME_WIDTH = 24;

function timeCell(ms: number | undefined): string {
  if (ms === undefined) return ''.padEnd(TIME_WIDTH);
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? ''.padEnd(TIME_WIDTH) : d.toISOString();
}

function levelName(v: unknown): string {
  if (typeof v === 'number') return LEVELS[v] ?? String(v);
  return typeof v === 'string' ? v.toUpperCase() : '-';
}

function valueText(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** The fields of a pino line after its message: ids first, then the rest in their order. */
function fieldsText(entry: LogEntry): string {
  const r = entry.record!;
  const parts: string[] = [];
  for (const id of IDS) if (r[id] !== undefined) parts.push(`${id}=${valueText(r[id])}`);
  for (const [k, v] of Object.entries(r)) if (!NOT_FIELDS.has(k)) parts.push(`${k}=${valueText(v)}`);
  // A second "pid" (a process's, after pino's own) is the one JSON.parse kept: worth showing.
  if (r.pid !== undefined && entry.text.indexOf('"pid":') !== entry.text.lastIndexOf('"pid":')) parts.push(`pid=${valueText(r.pid)}`);
  return parts.join(' ');
}

export function formatHuman(e: LogEntry): string {
  const head = `${timeCell(e.time)}  ${e.source.padEnd(5)}  `;
  if (e.kind !== 'json') return printable(`${head}${(e.kind === 'kernel' ? 'KERN' : '-').padEnd(5)}  ${e.text}`);
  const r = e.record!;
  const msg = typeof r.msg === 'string' ? r.msg : '';
  const fields = fieldsText(e);
  return printable(`${head}${levelName(r.level).padEnd(5)}  ${msg}${fields ? `  ${fields}` : ''}`);
}

export function formatJson(e: LogEntry): string {
  const source = JSON.stringify(e.source);
  if (e.kind === 'json') {
    // As written (a line may hold a key twice, as pino's pid and a process's): only "source" is added.
    const body = e.text.trim().slice(1);
    return body.trimStart().startsWith('}') ? `{"source":${source}}` : `{"source":${source},${body}`;
  }
  return JSON.stringify({
    source: e.source,
    kind: e.kind,
    ...(e.time !== undefined ? { time: e.time } : {}),
    ...(e.uptime !== undefined ? { uptime: e.uptime } : {}),
    msg: e.text,
  });
}
