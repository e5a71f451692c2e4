// The pure parts of the guest I/O benchmark (bench/guest-io.ts): the script
// each container runs, the parser of what it prints, the --variant option and
// the tables.
//
// The busybox test image's `date` has no %N (it prints "%N" as is), so the
// script times each workload with busybox's `time` applet, whose report
// ("real\t0m 0.22s", hundredths of a second) it reduces to one line per
// workload: `tern-io <workload> 0m 0.22s`, or `tern-io <workload> failed: exit N`.
import { median, percentile } from './stats.js';

export const WORKLOADS = ['shm-write', 'layer-write', 'pipe-md5'] as const;
export type Workload = (typeof WORKLOADS)[number];

/** What each workload runs in the container, for MiB mebibytes. */
export function workloadCommand(w: Workload, mib: number): string {
  switch (w) {
    case 'shm-write':
      return `dd if=/dev/zero of=/dev/shm/f bs=1M count=${mib} status=none`;
    case 'layer-write':
      // /tmp of the image is in the container's writable layer (the image has no tmpfs there).
      return `dd if=/dev/zero of=/tmp/f bs=1M count=${mib} status=none`;
    case 'pipe-md5':
      return `dd if=/dev/zero bs=1M count=${mib} status=none | md5sum`;
  }
}

/** The file a workload leaves, removed after it outside the timing. */
const LEFT_FILE: Record<Workload, string | undefined> = { 'shm-write': '/dev/shm/f', 'layer-write': '/tmp/f', 'pipe-md5': undefined };

/**
 * The `sh -c` script of one run. Each workload runs under `time sh -c`, whose
 * report goes to stderr: captured apart from the workload's own stderr (sent
 * to fd 3, the container's stderr, so that a dd error shows), with the
 * workload's stdout (md5sum's sum) discarded. pipefail makes a failed dd fail
 * the pipe. Exits 1 if a workload failed.
 */
export function guestScript(mib: number): string {
  const lines = [
    'exec 3>&2',
    'failed=0',
    'w() {',
    '  r=$(time sh -c "set -o pipefail; { $2; } 2>&3" 2>&1 >/dev/null)',
    '  s=$?',
    '  if [ "$s" -ne 0 ]; then',
    '    echo "tern-io $1 failed: exit $s"',
    '    failed=1',
    '  else',
    `    echo "tern-io $1 $(echo "$r" | sed -n 's/^real[[:space:]]*//p')"`,
    '  fi',
    '}',
  ];
  for (const w of WORKLOADS) {
    lines.push(`w ${w} '${workloadCommand(w, mib)}'`);
    const left = LEFT_FILE[w];
    if (left) lines.push(`rm -f ${left}`);
  }
  lines.push('exit $failed');
  return `${lines.join('\n')}\n`;
}

/**
 * Seconds from busybox time's elapsed-time format: "0m 0.22s" below an hour,
 * "1h 2m 03s" from an hour on; undefined for anything else.
 */
export function parseBusyboxElapsed(s: string): number | undefined {
  const m = /^(?:(\d+)h )?(\d+)m (\d+(?:\.\d+)?)s$/.exec(s.trim());
  if (!m) return undefined;
  return Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}

export interface GuestIoOutput {
  /** Seconds of each workload whose line reported a time. */
  seconds: Partial<Record<Workload, number>>;
  /** One entry per workload without a time: its line missing, repeated, failed or unparsable. */
  errors: string[];
}

/** The workload lines of a run's stdout (other lines are ignored). */
export function parseGuestIo(stdout: string): GuestIoOutput {
  const found = new Map<Workload, string[]>();
  for (const line of stdout.split('\n')) {
    const m = /^tern-io (\S+) ?(.*)$/.exec(line.trim());
    if (!m || !(WORKLOADS as readonly string[]).includes(m[1]!)) continue;
    const w = m[1] as Workload;
    found.set(w, [...(found.get(w) ?? []), m[2]!]);
  }
  const out: GuestIoOutput = { seconds: {}, errors: [] };
  for (const w of WORKLOADS) {
    const reports = found.get(w) ?? [];
    if (reports.length === 0) {
      out.errors.push(`${w}: no result line`);
      continue;
    }
    if (reports.length > 1) {
      out.errors.push(`${w}: ${reports.length} result lines`);
      continue;
    }
    const report = reports[0]!;
    const s = parseBusyboxElapsed(report);
    if (s !== undefined) out.seconds[w] = s;
    else if (report.startsWith('failed')) out.errors.push(`${w} ${report}`);
    else out.errors.push(`${w}: unparsable time ${JSON.stringify(report)}`);
  }
  return out;
}

export interface RunOutcome {
  seconds: Partial<Record<Workload, number>>;
  /** Why the run failed; absent when it succeeded. */
  error?: string;
}

function lastLine(s: string): string {
  const line =
    s
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .pop() ?? '';
  return line.length > 160 ? `${line.slice(0, 160)}...` : line;
}

/**
 * One run's outcome from ctr's exit code and output: failed if the code is not
 * 0 or a workload has no time. The error names the workloads and ends with
 * the last line of stderr (dd's or ctr's complaint), if any.
 */
export function judgeRun(code: number, stdout: string, stderr: string): RunOutcome {
  const parsed = parseGuestIo(stdout);
  const why = [...(code === 0 ? [] : [`exit code ${code}`]), ...parsed.errors];
  if (why.length === 0) return { seconds: parsed.seconds };
  const said = lastLine(stderr);
  return { seconds: parsed.seconds, error: `${why.join('; ')}${said ? ` (${said})` : ''}` };
}

// ---- --variant NAME=TOML --------------------------------------------------------

export class UsageError extends Error {}

export interface Variant {
  name: string;
  /** The TOML added to the tern-template config, with real line breaks. */
  toml: string;
}

/** A name that is also safe in a file name and, with the row's other parts, a containerd id. */
const VARIANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * True if the TOML sets [factory] or [pool] (a table header, or a dotted key
 * before any header): the benchmark's own sections, which a variant must not change.
 */
function namesOwnSection(toml: string): boolean {
  let topLevel = true;
  for (const line of toml.split('\n')) {
    const t = line.trim();
    if (t.startsWith('[')) {
      if (/^\[\[?\s*"?(factory|pool)"?\s*[\].]/.test(t)) return true;
      topLevel = false;
    } else if (topLevel && /^"?(factory|pool)"?\s*[.=]/.test(t)) return true;
  }
  return false;
}

/** One `--variant NAME=TOML` ("\n" in TOML standing for a line break, as in BENCH_TERN_CONFIG). */
export function parseVariant(spec: string): Variant {
  const eq = spec.indexOf('=');
  if (eq < 0) throw new UsageError(`--variant ${JSON.stringify(spec)}: want NAME=TOML`);
  const name = spec.slice(0, eq).trim();
  if (name === '') throw new UsageError(`--variant ${JSON.stringify(spec)}: the NAME before "=" is empty`);
  if (!VARIANT_NAME.test(name)) throw new UsageError(`--variant ${name}: NAME may hold letters, digits, ".", "_" and "-" (not first)`);
  const toml = spec.slice(eq + 1).replace(/\\n/g, '\n');
  if (namesOwnSection(toml)) throw new UsageError(`--variant ${name}: [factory] and [pool] are the benchmark's own; set other sections`);
  return { name, toml: toml && !toml.endsWith('\n') ? `${toml}\n` : toml };
}

/** Every --variant, in order; a NAME given twice is a usage error. */
export function parseVariants(specs: string[]): Variant[] {
  const out: Variant[] = [];
  for (const spec of specs) {
    const v = parseVariant(spec);
    if (out.some((o) => o.name === v.name)) throw new UsageError(`--variant ${v.name}: given twice`);
    out.push(v);
  }
  return out;
}

/** The row name of a variant. */
export function variantRowName(v: Variant): string {
  return `tern-template:${v.name}`;
}

/** A variant's config file: the tern-template config with the variant's TOML after it. */
export function variantConfig(base: string, v: Variant): string {
  return `${base}${base && !base.endsWith('\n') ? '\n' : ''}${v.toml}`;
}

// ---- tables -------------------------------------------------------------------

export interface IoRow {
  name: string;
  /** The variant's TOML (tern-template:NAME rows only). */
  variant?: string;
  /** The config file the row's tern runs read (tern rows only). */
  configPath?: string;
  /** Seconds per workload, one per successful run. */
  seconds: Record<Workload, number[]>;
  /** One per failed run: why. */
  failures: string[];
}

function ratio(a: number[], b: number[] | undefined): string {
  if (!b || a.length === 0 || b.length === 0) return 'n/a';
  return `${(median(a) / median(b)).toFixed(2)}x`;
}

function table(head: string[], rows: string[][]): string[] {
  // The last column (status) is not padded: a long error does not widen the others.
  const widths = head.map((h, i) => (i === head.length - 1 ? 0 : Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)];
}

/**
 * One table per workload: per row the runs that succeeded (ok/total when some
 * failed), median and p90 (nearest rank) in seconds, MiB/s at the median, the
 * median's ratio to runc's (when a runc row is there) and, for variant rows,
 * to the first tern row without a variant ("vs default"), and the status.
 */
export function ioTables(rows: IoRow[], runs: number, mib: number): string {
  const runc = rows.find((r) => r.name === 'runc');
  const base = rows.find((r) => r.variant === undefined && r.name.startsWith('tern'));
  const withVariants = rows.some((r) => r.variant !== undefined);
  const out: string[] = [];
  for (const w of WORKLOADS) {
    const head = ['row', 'runs', 'median (s)', 'p90 (s)', 'MiB/s'];
    if (runc) head.push('vs runc');
    if (withVariants) head.push('vs default');
    head.push('status');
    const cells = rows.map((r) => {
      const xs = r.seconds[w];
      const total = xs.length + r.failures.length;
      const row = [r.name, r.failures.length === 0 ? String(xs.length) : `${xs.length}/${total}`];
      if (xs.length === 0) row.push('-', '-', '-');
      else row.push(median(xs).toFixed(3), percentile(xs, 90).toFixed(3), median(xs) > 0 ? (mib / median(xs)).toFixed(1) : 'inf');
      if (runc) row.push(r === runc ? '-' : ratio(xs, runc.seconds[w]));
      if (withVariants) row.push(r.variant === undefined ? '-' : ratio(xs, base?.seconds[w]));
      row.push(r.failures.length === 0 ? 'ok' : `FAILED ${r.failures.length} of ${total} runs: ${r.failures[0]}`);
      return row;
    });
    if (out.length > 0) out.push('');
    out.push(`${w}: ${workloadCommand(w, mib)} (${runs} runs per row)`);
    out.push(...table(head, cells));
  }
  const variants = rows.filter((r) => r.variant !== undefined);
  if (variants.length > 0) {
    out.push('', base ? `vs default: ratio of the median to ${base.name}'s` : 'vs default: n/a, no tern row without a variant ran');
    for (const v of variants) {
      out.push(`${v.name}: ${base ? `${base.name}'s config` : 'the tern-template config'} plus`);
      out.push(
        ...v
          .variant!.trimEnd()
          .split('\n')
          .map((l) => `    ${l}`),
      );
      if (v.configPath) out.push(`  ctr run --rm --runtime io.containerd.tern.v2 --runtime-config-path ${v.configPath} <image> <id> sh -c <script>`);
    }
  }
  return out.join('\n');
}
