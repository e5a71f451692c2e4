// Pressure stall information (PSI): a cgroup's cpu.pressure, memory.pressure
// and io.pressure, and the whole guest's /proc/pressure/{cpu,memory,io}, in
// tern.agent.v1.PressureStats shape. Each file has a `some` line and (for
// memory and io, and for cpu since Linux 5.13) a `full` line:
//   some avg10=0.12 avg60=0.04 avg300=0.00 total=123456
// averages in percent of wall time, total in microseconds. A file that is
// missing (a kernel without PSI, or booted with psi=0) is absent and costs no
// log line; a malformed one is absent and logged at debug. Read only when
// stats are asked for, never on the container start path.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Msg } from '../../common/proto-service.js';
import type { ProcessLog } from './guest-process.js';

export type PressureLine = Msg<'tern.agent.v1.PressureLine'>;
export type Pressure = Msg<'tern.agent.v1.Pressure'>;
export type PressureStats = Msg<'tern.agent.v1.PressureStats'>;

export const PRESSURE_RESOURCES = ['cpu', 'memory', 'io'] as const;
export type PressureResource = (typeof PRESSURE_RESOURCES)[number];

export const GUEST_PRESSURE_DIR = '/proc/pressure';

export type ParsedPressure = { ok: true; pressure: Pressure } | { ok: false; reason: string };

const AVG = /^\d+(\.\d+)?$/;
const TOTAL = /^\d+$/;
const FIELDS = ['avg10', 'avg60', 'avg300', 'total'] as const;

function parseLine(words: string[]): PressureLine | string {
  if (words.length !== FIELDS.length) return `${words.length} fields, want ${FIELDS.join(' ')}`;
  const values: string[] = [];
  for (const [i, field] of FIELDS.entries()) {
    const w = words[i]!;
    const eq = w.indexOf('=');
    if (eq < 0 || w.slice(0, eq) !== field) return `${JSON.stringify(w)} where ${field}= belongs`;
    const v = w.slice(eq + 1);
    if (!(field === 'total' ? TOTAL : AVG).test(v)) return `${field} ${JSON.stringify(v)} is not a number`;
    values.push(v);
  }
  const total = Number(values[3]);
  if (!Number.isSafeInteger(total)) return `total ${values[3]} is too large`;
  return { avg10: Number(values[0]), avg60: Number(values[1]), avg300: Number(values[2]), total_usec: total };
}

/** One PSI file's text; a file without a `some` line, with a line of another kind, twice the same kind or a field out of place is malformed. */
export function parsePressure(text: string): ParsedPressure {
  const out: Pressure = { some: null, full: null };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const [kind, ...words] = line.split(/\s+/);
    if (kind !== 'some' && kind !== 'full') return { ok: false, reason: `line ${JSON.stringify(line)}: not some or full` };
    if (out[kind] !== null) return { ok: false, reason: `two ${kind} lines` };
    const parsed = parseLine(words);
    if (typeof parsed === 'string') return { ok: false, reason: `${kind} line: ${parsed}` };
    out[kind] = parsed;
  }
  if (out.some === null) return { ok: false, reason: 'no some line' };
  return { ok: true, pressure: out };
}

/** The text of a file, or undefined when it is not there (or PSI is off: the kernel refuses the read). */
async function readIfThere(file: string, log: ProcessLog): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EOPNOTSUPP' && code !== 'ENOTSUP') log.debug({ file, err: (err as Error).message }, 'pressure file unreadable');
    return undefined;
  }
}

async function readPressureFile(file: string, log: ProcessLog): Promise<Pressure | null> {
  const text = await readIfThere(file, log);
  if (text === undefined) return null;
  const r = parsePressure(text);
  if (r.ok) return r.pressure;
  log.debug({ file, reason: r.reason }, 'malformed pressure file skipped');
  return null;
}

/** The three files `name` gives (a cgroup's cpu.pressure etc., or /proc/pressure/cpu etc.), read at once. */
async function readStats(name: (r: PressureResource) => string, log: ProcessLog): Promise<PressureStats> {
  const [cpu, memory, io] = await Promise.all(PRESSURE_RESOURCES.map((r) => readPressureFile(name(r), log)));
  return { cpu: cpu ?? null, memory: memory ?? null, io: io ?? null };
}

/** A cgroup v2 directory's cpu.pressure, memory.pressure, io.pressure. */
export function readCgroupPressure(cgroupDir: string, log: ProcessLog): Promise<PressureStats> {
  return readStats((r) => path.join(cgroupDir, `${r}.pressure`), log);
}

/** The whole guest's /proc/pressure/{cpu,memory,io} (`dir` only differs in tests). */
export function readGuestPressure(log: ProcessLog, dir = GUEST_PRESSURE_DIR): Promise<PressureStats> {
  return readStats((r) => path.join(dir, r), log);
}
