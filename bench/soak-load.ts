// Soak load through ctr on a private containerd, shared by `make soak`
// (bench/soak.ts) and its short version in the integration tests
// (test/integration/soak.test.ts).
//
// N tern pods, each started with `ctr run --rm` in the foreground, so that the
// container's stdout comes back through the shim, containerd's FIFO and ctr
// into a pipe read here. Inside each container: a CPU burner, a memory toucher
// (dd's buffer of M MiB allocated and filled again and again) and a writer
// (busybox awk) printing sequence-numbered lines at a target byte rate for a
// duration, then `END <last sequence number>`, after which the container idles.
// The host checks that every line arrives once and in order, samples each
// shim's RSS/PSS, and meanwhile measures how long a new pod takes to start
// (tern, and runc as the reference).
import { spawn, type ChildProcess } from 'node:child_process';
import { basename, join } from 'node:path';
import type { Containerd } from '../test/integration/harness/containerd.js';
import { ternRunDir } from '../test/integration/harness/leaks.js';
import { processTable, readText } from './procs.js';
import { median } from './stats.js';
import { readdirSync, existsSync } from 'node:fs';

export const TERN_RUNTIME = 'io.containerd.tern.v2';
export const RUNC_RUNTIME = 'io.containerd.runc.v2';

export interface SoakOptions {
  pods: number;
  /** How long each pod's writer runs, from its own start. */
  durationS: number;
  /** Target stdout rate of one pod, bytes per second. */
  rateBytesPerS: number;
  /** Length of one line including its newline. */
  lineBytes: number;
  /** Size of the memory toucher's buffer. */
  memMiB: number;
  /** Seconds between shim memory samples. */
  sampleEveryS: number;
  /** New-pod starts measured during the load, per runtime (tern, runc). */
  probes: number;
  /** Deadline for the pods to print their first line. */
  startTimeoutMs: number;
  /** Progress messages. */
  log: (msg: string) => void;
  /** Aborting stops the run early (it then rejects after cleaning up). */
  signal?: AbortSignal;
  /** ctr run options for the tern pods (default: just the runtime). */
  ternArgs?: string[];
}

export const DEFAULT_SOAK: Omit<SoakOptions, 'log'> = {
  pods: 20,
  durationS: 600,
  rateBytesPerS: 50 * 1000 * 1000,
  lineBytes: 128,
  memMiB: 64,
  sampleEveryS: 30,
  probes: 3,
  startTimeoutMs: 900_000,
};

/**
 * The container's command: burner and toucher at the lowest priority (the guest
 * has one vCPU; the writer is what is measured), then the writer in the
 * foreground. The writer paces itself with /proc/uptime: every round it writes
 * the lines due so far (at most `chunk` at once, then looks at the clock again)
 * and sleeps 20 ms when it is ahead.
 */
export function podScript(o: Pick<SoakOptions, 'durationS' | 'rateBytesPerS' | 'lineBytes' | 'memMiB'>): string {
  const linesPerS = Math.max(1, o.rateBytesPerS / o.lineBytes);
  // Line: "<seq> <pad>\n"; pad sized for a 7-digit sequence number.
  const padLen = Math.max(1, o.lineBytes - 9);
  const awk = [
    'function now(  l, a) { getline l < "/proc/uptime"; close("/proc/uptime"); split(l, a, " "); return a[1] + 0 }',
    'BEGIN {',
    '  pad = "x"; while (length(pad) < padlen) pad = pad pad; pad = substr(pad, 1, padlen)',
    '  t0 = now(); seq = 0',
    '  for (;;) {',
    '    t = now() - t0',
    '    if (t >= d) break',
    '    due = int(t * rate) + 1',
    '    if (seq >= due) { system("sleep 0.02"); continue }',
    '    n = 0',
    '    while (seq < due && n < 5000) { seq++; n++; printf "%d %s\\n", seq, pad }',
    '    fflush()',
    '  }',
    '  printf "END %d\\n", seq; fflush()',
    '}',
  ].join('\n');
  return [
    '(while :; do :; done) & burn=$!',
    `(while :; do dd if=/dev/zero of=/dev/null bs=${o.memMiB}M count=1 2>/dev/null; done) & mem=$!`,
    'renice -n 19 -p $burn $mem >/dev/null',
    `awk -v d=${o.durationS} -v rate=${linesPerS} -v padlen=${padLen} '${awk}'`,
    'kill $burn $mem',
    'exec sleep 1000000',
  ].join('\n');
}

/** Checks one pod's stdout stream: every sequence number once, in order, then END. */
export class LineChecker {
  lines = 0;
  bytes = 0;
  lost = 0;
  duplicated = 0;
  malformed = 0;
  last = 0;
  /** The writer's last sequence number, from its END line. */
  endSeq?: number;
  firstAt?: number;
  lastAt?: number;
  endAt?: number;
  private rest: Buffer = Buffer.alloc(0);

  feed(chunk: Buffer, at = performance.now()): void {
    const buf = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      this.line(buf, start, nl, at);
      start = nl + 1;
    }
    this.rest = Buffer.from(buf.subarray(start));
  }

  private line(buf: Buffer, start: number, nl: number, at: number): void {
    if (buf[start] === 0x45 /* E */) {
      const m = /^END (\d+)$/.exec(buf.toString('latin1', start, nl));
      if (m && this.endSeq === undefined) {
        this.endSeq = Number(m[1]);
        this.endAt = at;
        if (this.endSeq > this.last) this.lost += this.endSeq - this.last;
        else if (this.endSeq < this.last) this.malformed++;
        return;
      }
    }
    let seq = 0;
    let i = start;
    for (; i < nl; i++) {
      const c = buf[i]!;
      if (c === 0x20) break;
      if (c < 0x30 || c > 0x39) {
        seq = -1;
        break;
      }
      seq = seq * 10 + (c - 0x30);
    }
    if (seq <= 0 || i === start || i === nl || this.endSeq !== undefined) {
      this.malformed++;
      return;
    }
    this.lines++;
    this.bytes += nl - start + 1;
    this.firstAt ??= at;
    this.lastAt = at;
    if (seq === this.last + 1) this.last = seq;
    else if (seq > this.last + 1) {
      this.lost += seq - this.last - 1;
      this.last = seq;
    } else this.duplicated++; // seen before, or out of order
  }

  /** Text after the last newline (a stream that ends mid-line). */
  get partial(): number {
    return this.rest.length;
  }
}

export interface MemSample {
  atS: number;
  /** Per pod: shim RSS and PSS in KiB (undefined when it could not be read). */
  rssKiB: (number | undefined)[];
  pssKiB: (number | undefined)[];
}

export interface ProbeResult {
  runtime: 'tern' | 'runc';
  ms: number;
  ok: boolean;
  /** Finished while every pod was still writing. */
  inLoad: boolean;
  error?: string;
}

export interface PodResult {
  id: string;
  lines: number;
  bytes: number;
  lost: number;
  duplicated: number;
  malformed: number;
  endSeq?: number;
  /** Bytes per second between its first and last line, host side. */
  bytesPerS: number;
  /** Seconds from `ctr run` to its first line. */
  firstLineS?: number;
  /** ctr task ls status when every writer had finished. */
  finalStatus: string;
  /** Statuses other than RUNNING seen at the samples. */
  badStatuses: string[];
  error?: string;
}

export interface SoakResult {
  options: Omit<SoakOptions, 'log' | 'signal' | 'ternArgs'>;
  pods: PodResult[];
  samples: MemSample[];
  probes: ProbeResult[];
  /** Seconds from the first line of the last pod to start until the last END. */
  loadS: number;
  /** Seconds to get every pod writing. */
  startAllS: number;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

function oneLine(e: unknown): string {
  const line = ((e as Error)?.message ?? String(e)).trim().split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

/** The shim pid of a tern sandbox, from <run dir>/sb/<hash>/sandbox.json (checked to be a tern shim). */
export function ternShimPid(sandboxId: string): number | undefined {
  const sbRoot = join(ternRunDir(), 'sb');
  const procs = processTable();
  for (const dir of existsSync(sbRoot) ? readdirSync(sbRoot) : []) {
    const raw = readText(join(sbRoot, dir, 'sandbox.json'));
    if (raw === undefined) continue;
    try {
      const rec = JSON.parse(raw) as { id?: string; shimPid?: number };
      if (rec.id !== sandboxId) continue;
      const p = procs.get(rec.shimPid ?? -1);
      // One shim process serves many pods: its command line names the first of them.
      return p && /^containerd-shim-tern/.test(basename(p.argv[0] ?? p.comm)) ? p.pid : undefined;
    } catch {}
  }
  return undefined;
}

/** Rss and Pss of a process in KiB, from /proc/<pid>/smaps_rollup. */
export function rssPssKiB(pid: number): { rss: number; pss: number } | undefined {
  const text = readText(`/proc/${pid}/smaps_rollup`);
  const rss = text && /^Rss:\s+(\d+) kB/m.exec(text);
  const pss = text && /^Pss:\s+(\d+) kB/m.exec(text);
  return rss && pss ? { rss: Number(rss[1]), pss: Number(pss[1]) } : undefined;
}

/** `ctr task ls`: id -> status. */
async function taskStatuses(c: Containerd): Promise<Map<string, string>> {
  const r = await c.ctr(['task', 'ls'], { timeoutMs: 60_000 });
  const out = new Map<string, string>();
  for (const l of r.stdout.split('\n').slice(1)) {
    const f = l.trim().split(/\s+/);
    if (f.length >= 3) out.set(f[0]!, f[2]!);
  }
  return out;
}

interface Pod {
  id: string;
  child: ChildProcess;
  check: LineChecker;
  startedAt: number;
  stderr: string;
  exited?: { code: number | null; signal: NodeJS.Signals | null };
  shimPid?: number;
  badStatuses: string[];
  finalStatus: string;
}

/** Runs the soak on a containerd that has `image` and containerd-shim-tern-v2 on its PATH. */
export async function runSoak(c: Containerd, image: string, opts: SoakOptions): Promise<SoakResult> {
  const { log, signal } = opts;
  const tag = Math.random().toString(16).slice(2, 8);
  const script = podScript(opts);
  const pods: Pod[] = [];
  const samples: MemSample[] = [];
  const probes: ProbeResult[] = [];
  const aborted = () => signal?.aborted === true;
  const t0 = performance.now();
  const sinceS = () => (performance.now() - t0) / 1000;
  try {
    for (let i = 0; i < opts.pods; i++) {
      const id = `soak-${tag}-${i}`;
      const child = spawn(
        'ctr',
        ['--address', c.address, '-n', c.namespace, 'run', '--rm', ...(opts.ternArgs ?? ['--runtime', TERN_RUNTIME]), image, id, 'sh', '-c', script],
        // Own process group: a terminal's Ctrl-C reaches the benchmark, which removes the pods.
        { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
      );
      const pod: Pod = { id, child, check: new LineChecker(), startedAt: performance.now(), stderr: '', badStatuses: [], finalStatus: '?' };
      child.stdout!.on('data', (b: Buffer) => pod.check.feed(b));
      child.stderr!.on('data', (b: Buffer) => (pod.stderr = (pod.stderr + b.toString()).slice(-4000)));
      child.on('exit', (code, sig) => (pod.exited = { code, signal: sig }));
      child.on('error', (e) => (pod.stderr += `\nspawn: ${e.message}`));
      pods.push(pod);
    }
    log(`soak: ${opts.pods} pods started with ctr run (${(opts.rateBytesPerS / 1e6).toFixed(2)} MB/s target each, ${opts.durationS} s)`);

    // Every pod writing.
    const startDeadline = performance.now() + opts.startTimeoutMs;
    for (;;) {
      if (aborted()) throw new Error('interrupted');
      const dead = pods.find((p) => p.exited !== undefined);
      if (dead) throw new Error(`pod ${dead.id}: ctr run exited ${dead.exited!.code ?? dead.exited!.signal} before the end: ${oneLine(dead.stderr)}`);
      const waiting = pods.filter((p) => p.check.firstAt === undefined).length;
      if (waiting === 0) break;
      if (performance.now() > startDeadline) throw new Error(`${waiting} of ${opts.pods} pods printed nothing within ${opts.startTimeoutMs} ms`);
      await sleep(250, signal);
    }
    const startAllS = sinceS();
    const loadStart = performance.now();
    log(`soak: all ${opts.pods} pods writing after ${startAllS.toFixed(1)} s`);
    for (const p of pods) p.shimPid = ternShimPid(p.id);
    const noShim = pods.filter((p) => p.shimPid === undefined);
    if (noShim.length > 0) log(`soak: no shim pid found for ${noShim.map((p) => p.id).join(', ')}`);

    const allEnded = () => pods.every((p) => p.check.endSeq !== undefined);
    const anyEnded = () => pods.some((p) => p.check.endSeq !== undefined);
    const checkAlive = () => {
      const dead = pods.find((p) => p.exited !== undefined);
      if (dead) throw new Error(`pod ${dead.id}: ctr run exited ${dead.exited!.code ?? dead.exited!.signal} before the end: ${oneLine(dead.stderr)}`);
    };
    const sample = async (): Promise<void> => {
      const s: MemSample = { atS: (performance.now() - loadStart) / 1000, rssKiB: [], pssKiB: [] };
      for (const p of pods) {
        const m = p.shimPid !== undefined ? rssPssKiB(p.shimPid) : undefined;
        s.rssKiB.push(m?.rss);
        s.pssKiB.push(m?.pss);
      }
      samples.push(s);
      const st = await taskStatuses(c).catch(() => undefined);
      for (const p of pods) {
        const v = st?.get(p.id);
        // UNKNOWN: containerd's State call to a shim busy under the load ran past its short
        // deadline, not a stop; the end-of-run status (which must be RUNNING) still counts
        if (st && v !== 'RUNNING' && v !== 'UNKNOWN') p.badStatuses.push(`${v ?? 'absent'} at ${s.atS.toFixed(0)} s`);
      }
      const rss = s.rssKiB.filter((x): x is number => x !== undefined);
      const lines = pods.reduce((a, p) => a + p.check.lines, 0);
      log(
        `soak: t=${s.atS.toFixed(0)} s shim RSS median ${(median(rss) / 1024).toFixed(1)} MiB, max ${(Math.max(...rss) / 1024).toFixed(1)} MiB; ${lines} lines received`,
      );
    };

    // Probes: new pods started during the load, tern then runc, spread over the first 80% of it.
    const probing = (async () => {
      const gap = (opts.durationS * 800) / Math.max(1, opts.probes) / 2;
      for (let i = 0; i < opts.probes && !aborted(); i++) {
        for (const rt of ['tern', 'runc'] as const) {
          if (aborted()) return;
          const id = `soak-${tag}-probe-${rt}-${i}`;
          const args = ['run', '--rm', ...(rt === 'tern' ? (opts.ternArgs ?? ['--runtime', TERN_RUNTIME]) : ['--runtime', RUNC_RUNTIME]), image, id, 'true'];
          const a = performance.now();
          const r = await c.ctr(args, { timeoutMs: 600_000 }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
          const ms = performance.now() - a;
          const ok = r.code === 0;
          probes.push({ runtime: rt, ms, ok, inLoad: !anyEnded(), error: ok ? undefined : `exit ${r.code}: ${oneLine(r.stderr)}` });
          log(`soak: new ${rt} pod ${ok ? 'started and exited' : 'FAILED'} in ${(ms / 1000).toFixed(2)} s${ok ? '' : `: ${oneLine(r.stderr)}`}`);
          if (!ok) await c.ctr(['container', 'rm', id]).catch(() => undefined);
          await sleep(gap, signal);
        }
      }
    })();

    await sample();
    const endDeadline = loadStart + (opts.durationS + 600) * 1000;
    let nextSample = performance.now() + opts.sampleEveryS * 1000;
    while (!allEnded()) {
      if (aborted()) throw new Error('interrupted');
      checkAlive();
      if (performance.now() > endDeadline) {
        throw new Error(
          `${pods.filter((p) => p.check.endSeq === undefined).length} pods did not print END within ${opts.durationS + 600} s of the load's start`,
        );
      }
      if (performance.now() >= nextSample) {
        await sample();
        nextSample += opts.sampleEveryS * 1000;
      }
      await sleep(200, signal);
    }
    const loadS = (performance.now() - loadStart) / 1000;
    // Every writer done and its container idling: still running, and one last memory sample.
    await sample();
    checkAlive();
    const st = await taskStatuses(c);
    for (const p of pods) p.finalStatus = st.get(p.id) ?? 'absent';
    log(`soak: every pod printed END after ${loadS.toFixed(1)} s of load; waiting for the last probes`);
    await probing;

    return {
      options: {
        pods: opts.pods,
        durationS: opts.durationS,
        rateBytesPerS: opts.rateBytesPerS,
        lineBytes: opts.lineBytes,
        memMiB: opts.memMiB,
        sampleEveryS: opts.sampleEveryS,
        probes: opts.probes,
        startTimeoutMs: opts.startTimeoutMs,
      },
      pods: pods.map((p) => {
        const k = p.check;
        const spanS = k.firstAt !== undefined && k.lastAt !== undefined ? (k.lastAt - k.firstAt) / 1000 : 0;
        return {
          id: p.id,
          lines: k.lines,
          bytes: k.bytes,
          lost: k.lost,
          duplicated: k.duplicated,
          malformed: k.malformed + (k.partial > 0 ? 1 : 0),
          endSeq: k.endSeq,
          bytesPerS: spanS > 0 ? k.bytes / spanS : 0,
          firstLineS: k.firstAt !== undefined ? (k.firstAt - p.startedAt) / 1000 : undefined,
          finalStatus: p.finalStatus,
          badStatuses: p.badStatuses,
        };
      }),
      samples,
      probes,
      loadS,
      startAllS,
    };
  } finally {
    await removePods(c, pods, log);
  }
}

/** Kills every pod's task; ctr run --rm then removes it. Waits for each ctr to exit; removes what is left. */
async function removePods(c: Containerd, pods: Pod[], log: (m: string) => void): Promise<void> {
  await Promise.all(
    pods.map(async (p) => {
      if (p.exited === undefined) {
        const exited = new Promise<void>((r) => (p.exited !== undefined ? r() : p.child.once('exit', () => r())));
        await c.ctr(['task', 'kill', '-s', 'SIGKILL', p.id], { timeoutMs: 60_000 }).catch(() => undefined);
        const timer = new Promise<boolean>((r) => setTimeout(() => r(false), 120_000).unref());
        const done = await Promise.race([exited.then(() => true), timer]);
        if (!done && p.child.pid !== undefined) {
          log(`soak: ctr run of ${p.id} did not exit after its task was killed; killing ctr (pid ${p.child.pid})`);
          try {
            process.kill(p.child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
      // ctr run --rm normally removed both; a failed or killed run may leave them.
      const tasks = await c.ctr(['task', 'ls', '-q']).catch(() => ({ stdout: '' }));
      if (tasks.stdout.split('\n').includes(p.id)) {
        await c.ctr(['task', 'kill', '-s', 'SIGKILL', p.id]).catch(() => undefined);
        for (let i = 0; i < 100; i++) {
          const rm = await c.ctr(['task', 'rm', '-f', p.id]).catch(() => ({ code: 1, stderr: '' }));
          if (rm.code === 0 || /not found/.test(rm.stderr)) break;
          await sleep(300);
        }
      }
      const cs = await c.ctr(['container', 'ls', '-q']).catch(() => ({ stdout: '' }));
      if (cs.stdout.split('\n').includes(p.id)) await c.ctr(['container', 'rm', p.id]).catch(() => undefined);
    }),
  );
}
