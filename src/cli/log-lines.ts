// The lines `tern logs` shows, from two files of one sandbox: shim.log (the
// shim's pino JSON lines, `time` in ms) and the VM's console.log, the guest's
// serial console: the agent's pino lines and kernel lines ("[    1.234567] ..."
// in seconds since boot), either of them glued to the firmware's output
// before it (which ends without a line end), and anything else (firmware,
// /init, tern-init).
//
// Every line gets a sort key so the two files can be merged in time order
// while each keeps its own order: a line's own time; for a kernel line, the
// guest's boot time plus its seconds, once an agent line has told the boot
// time (`time` - `uptimeMs`); otherwise its file neighbour's key (the line
// before it, or the first timed line after it). A key is never below the
// key of a line before it in the same file.

export type LogSource = 'shim' | 'guest';
/** json: a pino line; kernel: "[ seconds] ..." from the guest kernel; text: anything else. */
export type EntryKind = 'json' | 'kernel' | 'text';

export interface LogEntry {
  source: LogSource;
  kind: EntryKind;
  /** The line as written, without its line end (json: the JSON text alone). */
  text: string;
  record?: Record<string, unknown>;
  /** Wall-clock ms: the line's own `time`, or for a kernel line the boot time plus its seconds; absent otherwise. */
  time?: number;
  /** Kernel lines: seconds since the guest booted. */
  uptime?: number;
  /** Where the line sorts (see above); absent while nothing in its file has a time. */
  key?: number;
}

/** What one file's lines carry over to the file's next lines (follow mode reads a file in batches). */
export interface SourceState {
  /** The key of the last line that was given one. */
  lastKey?: number;
  /** The guest's boot time in ms, from an agent line with both `time` and `uptimeMs`. */
  bootMs?: number;
}

/** printk's time stamp, "[%5lu.%06lu]". */
const KERNEL_STAMP = /\[\s*(\d+\.\d{6})\]/;
/** How every pino line begins (pino writes `level` first). */
const PINO_START = '{"level":';

/** Lines of a text: line ends (\n, \r\n, stray \r of the serial console) removed, the last line kept only if it has text. */
export function splitLines(text: string): string[] {
  const lines = text.split('\n').map((l) => l.replace(/\r+$/, ''));
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function objectOf(text: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function num(r: Record<string, unknown> | undefined, key: string): number | undefined {
  const v = r?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** True when a line has something to show once escape sequences and control characters are gone. */
function hasText(line: string): boolean {
  return /[^\s]/.test(
    line
      .replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '')
      .replace(/\x1b[ -~]?/g, '')
      .replace(/[\x00-\x1f\x7f]/g, ''),
  );
}

function jsonEntry(source: LogSource, text: string, record: Record<string, unknown>): LogEntry {
  const time = num(record, 'time');
  return { source, kind: 'json', text, record, ...(time !== undefined ? { time } : {}) };
}

function textEntry(source: LogSource, text: string): LogEntry {
  const m = KERNEL_STAMP.exec(text);
  return m?.index === 0 ? { source, kind: 'kernel', text, uptime: Number(m[1]) } : { source, kind: 'text', text };
}

/** A console line that is not JSON: a kernel line, with what was glued before its stamp as a text line of its own. */
function consoleTextEntries(line: string): LogEntry[] {
  const m = KERNEL_STAMP.exec(line);
  if (!m || m.index === 0) return [textEntry('guest', line)];
  const before = line.slice(0, m.index);
  const kernel = textEntry('guest', line.slice(m.index));
  return hasText(before) ? [textEntry('guest', before), kernel] : [kernel];
}

/** shim.log's lines (pino JSON; anything else is kept as text). */
export function shimEntries(lines: readonly string[]): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of lines) {
    if (!hasText(line)) continue;
    const record = line.startsWith('{') ? objectOf(line) : undefined;
    out.push(record ? jsonEntry('shim', line, record) : textEntry('shim', line));
  }
  return out;
}

/** console.log's lines: agent lines (split from output glued before them), kernel lines, other text; blank lines dropped. */
export function consoleEntries(lines: readonly string[]): LogEntry[] {
  const out: LogEntry[] = [];
  for (const line of lines) {
    const at = line.indexOf(PINO_START);
    const record = at >= 0 ? objectOf(line.slice(at)) : undefined;
    if (record) {
      const before = line.slice(0, at);
      if (hasText(before)) out.push(...consoleTextEntries(before));
      out.push(jsonEntry('guest', line.slice(at), record));
    } else if (hasText(line)) {
      out.push(...consoleTextEntries(line));
    }
  }
  return out;
}

/** Gives each entry of one file (in file order) its time where it can be told, and its key; updates `state`. */
export function assignKeys(entries: LogEntry[], state: SourceState = {}): LogEntry[] {
  if (state.bootMs === undefined) {
    for (const e of entries) {
      const uptimeMs = num(e.record, 'uptimeMs');
      if (e.time !== undefined && uptimeMs !== undefined) {
        state.bootMs = e.time - uptimeMs;
        break;
      }
    }
  }
  let waiting: LogEntry[] = [];
  for (const e of entries) {
    if (e.kind === 'kernel' && e.time === undefined && state.bootMs !== undefined) e.time = Math.round(state.bootMs + e.uptime! * 1000);
    if (e.time === undefined) {
      if (state.lastKey !== undefined) e.key = state.lastKey;
      else waiting.push(e);
      continue;
    }
    const key = state.lastKey === undefined ? e.time : Math.max(e.time, state.lastKey);
    e.key = key;
    for (const w of waiting) w.key = key;
    waiting = [];
    state.lastKey = key;
  }
  return entries;
}

/**
 * One list in time order from lists each in file order with keys assigned:
 * by key, each file's order kept; on equal keys the earlier list first;
 * lines without a key come after the lines with one, in their file's order.
 */
export function mergeByTime(lists: readonly (readonly LogEntry[])[]): LogEntry[] {
  const all = lists.flatMap((list, i) => list.map((e, j) => ({ e, i, j })));
  const k = (e: LogEntry) => e.key ?? Number.POSITIVE_INFINITY;
  all.sort((a, b) => {
    const ka = k(a.e);
    const kb = k(b.e);
    if (ka !== kb) return ka < kb ? -1 : 1;
    return a.i - b.i || a.j - b.j;
  });
  return all.map((x) => x.e);
}

/** Entries at or after `sinceMs`; those whose time cannot be told at all are kept. */
export function since(entries: readonly LogEntry[], sinceMs: number | undefined): LogEntry[] {
  if (sinceMs === undefined) return [...entries];
  return entries.filter((e) => e.key === undefined || e.key >= sinceMs);
}
