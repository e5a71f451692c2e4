// Where a tern start's time and CPU go, phase by phase: from the shim's own
// log lines in containerd's log (their times, and the CPU the shim and its
// QEMU had used by each phase, which the shim notes in them) and from when
// the benchmark ran `ctr` and when it returned. Medians over the runs of one
// start path; each row is the step from the row above.
import { median } from './stats.js';

export interface RunWindow {
  /** Epoch ms when `ctr run` was spawned and when it exited. */
  start: number;
  end: number;
}

interface Cpu {
  shimMs?: number;
  vmMs?: number | null;
}

interface Row {
  phase: string;
  at: number;
  cpu?: Cpu;
}

/** The boot's phases as the shim names them, in the order they happen, with their labels. */
const BOOT_PHASES: Array<[key: string, label: string]> = [
  ['poolTaken', 'VM taken from the pool'],
  ['templateReady', 'template found'],
  ['networkReady', 'pod network wired'],
  ['vmLaunched', 'QEMU launched (restored/adopted)'],
  ['agentAnswered', 'agent answered'],
  ['identityAdopted', 'identity adopted'],
  ['networkConfigured', 'guest network configured'],
  ['vmReady', 'VM ready'],
];

type Line = Record<string, unknown> & { time: number; msg: string };

function parse(log: string): Line[] {
  const out: Line[] = [];
  for (const text of log.split('\n')) {
    const i = text.indexOf('{"level"');
    if (i < 0) continue;
    try {
      const rec = JSON.parse(text.slice(i)) as Line;
      if (typeof rec.time === 'number' && typeof rec.msg === 'string') out.push(rec);
    } catch {
      /* not one of the shim's */
    }
  }
  return out;
}

/** The first row a shim process writes for a pod: the CPU it had used for other pods by then is not this run's. */
const SHIM_TOOK_POD = 'shim took the pod (began, or joined)';

/** One run's rows, or undefined when its lines are not all there. */
function runRows(lines: Line[], id: string, w: RunWindow): Row[] | undefined {
  const mine = lines.filter((l) => l.sandbox === id);
  const find = (msg: string) => mine.find((l) => l.msg === msg);
  const serving = find('shim serving');
  const started = find('container started');
  const created = find('container created');
  const exited = find('process exited');
  const destroying = find('destroying sandbox');
  const destroyed = find('sandbox destroyed');
  if (!serving || !started || !created || !exited || !destroying || !destroyed) return undefined;
  const rows: Row[] = [{ phase: 'ctr run spawned', at: w.start }];
  // The shim process began, or (a pod joining a running one) its request reached it, with the process's CPU by then.
  if (typeof serving.startedAt === 'string') {
    const before = (serving.startedCpu as Cpu | undefined)?.shimMs ?? 0;
    rows.push({ phase: SHIM_TOOK_POD, at: Date.parse(serving.startedAt), cpu: { shimMs: before } });
  }
  rows.push({ phase: 'shim serving (Task API up)', at: serving.time, cpu: serving.cpu as Cpu });
  const bootAt = started.time - Number(started.sinceBootMs);
  rows.push({ phase: 'boot began (first Create)', at: bootAt });
  const phaseCpu = (started.phaseCpu ?? {}) as Record<string, Cpu>;
  for (const [key, label] of BOOT_PHASES) {
    const ms = started[key];
    if (typeof ms === 'number') rows.push({ phase: label, at: bootAt + ms, cpu: phaseCpu[key] });
  }
  rows.push({ phase: 'container created (layers, volumes, agent)', at: created.time, cpu: created.cpu as Cpu });
  rows.push({ phase: 'container started', at: started.time, cpu: started.cpu as Cpu });
  rows.push({ phase: 'exit reported', at: exited.time, cpu: exited.cpu as Cpu });
  rows.push({ phase: 'delete: VM teardown began', at: destroying.time, cpu: destroying.cpu as Cpu });
  rows.push({ phase: 'delete: sandbox gone', at: destroyed.time, cpu: destroyed.cpu as Cpu });
  rows.push({ phase: 'ctr returned', at: w.end });
  return rows;
}

/** The table for the runs whose ids start with `prefix`, or undefined when none has its lines. */
export function phaseTable(log: string, prefix: string, windows: ReadonlyMap<string, RunWindow>): string | undefined {
  const lines = parse(log);
  const perPhase = new Map<string, { wall: number[]; shim: number[]; vm: number[]; at: number[] }>();
  let runs = 0;
  for (const [id, w] of windows) {
    if (!id.startsWith(prefix)) continue;
    const rows = runRows(lines, id, w);
    if (!rows) continue;
    runs++;
    let prevAt = w.start;
    let prevShim = rows.find((r) => r.phase === SHIM_TOOK_POD)?.cpu?.shimMs ?? 0;
    let prevVm: number | null = null;
    for (const r of rows) {
      const e = perPhase.get(r.phase) ?? { wall: [], shim: [], vm: [], at: [] };
      perPhase.set(r.phase, e);
      e.at.push(r.at - w.start);
      e.wall.push(r.at - prevAt);
      prevAt = r.at;
      if (typeof r.cpu?.shimMs === 'number') {
        e.shim.push(r.cpu.shimMs - prevShim);
        prevShim = r.cpu.shimMs;
      }
      if (typeof r.cpu?.vmMs === 'number') {
        // The first reading of QEMU's CPU counts from its launch (a pooled VM's: from its boot in the pool).
        e.vm.push(r.cpu.vmMs - (prevVm ?? 0));
        prevVm = r.cpu.vmMs;
      }
    }
  }
  if (runs === 0) return undefined;
  const m = (xs: number[]) => (xs.length ? String(Math.round(median(xs))) : '');
  const header = ['phase', 'at ms', 'step ms', 'shim CPU ms', 'QEMU CPU ms'];
  const body = [...perPhase.entries()].map(([phase, e]) => [phase, m(e.at), m(e.wall), m(e.shim), m(e.vm)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const total = (k: 'shim' | 'vm') => Math.round([...perPhase.values()].reduce((a, e) => a + (e[k].length ? median(e[k]) : 0), 0));
  return [
    `${prefix.replace(/^bench-|-$/g, '')} phases (median of ${runs} runs; each row is the step since the row above; shim CPU is the serve process's, not the short \`start\` process's):`,
    fmt(header),
    ...body.map(fmt),
    `sum of the medians: shim ${total('shim')} ms CPU, QEMU ${total('vm')} ms CPU`,
  ].join('\n');
}

/**
 * Where the first container's create went, for the runs whose ids start with
 * `prefix`: the host's steps (ms since its create began, at each step's end:
 * layers attached, writable layer in, volumes, the agent's answer) and the
 * guest's (ms since the agent's create began), as medians over the runs.
 * Undefined when no run's "container created" line carries them.
 */
export function createSplit(log: string, prefix: string): string | undefined {
  const per = { host: new Map<string, number[]>(), guest: new Map<string, number[]>() };
  let runs = 0;
  for (const l of parse(log)) {
    if (l.msg !== 'container created' || typeof l.sandbox !== 'string' || !l.sandbox.startsWith(prefix) || l.sandbox.endsWith('-warmup')) continue;
    const split = l.createMs as { host?: Record<string, unknown>; guest?: Record<string, unknown> } | undefined;
    if (!split?.host) continue;
    runs++;
    for (const side of ['host', 'guest'] as const) {
      for (const [step, ms] of Object.entries(split[side] ?? {})) {
        if (typeof ms !== 'number') continue;
        const xs = per[side].get(step) ?? [];
        xs.push(ms);
        per[side].set(step, xs);
      }
    }
  }
  if (runs === 0) return undefined;
  const row = (m: Map<string, number[]>) => [...m.entries()].map(([step, xs]) => `${step} ${Math.round(median(xs))}`).join(', ') || '(none)';
  return [
    `${prefix.replace(/^bench-|-$/g, '')} "container created" split (median of ${runs} runs; ms since that side's create began, at the end of each step):`,
    `  host:  ${row(per.host)}`,
    `  guest: ${row(per.guest)}`,
  ].join('\n');
}
