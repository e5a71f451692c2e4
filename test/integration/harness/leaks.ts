// Leak detector for integration tests: records the host resources tern could leave
// behind (processes, mounts, run-dir entries, shim sockets, network interfaces and
// namespaces, cgroups) and reports what is new after a test.
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { repoRoot } from './paths.js';

const DEFAULT_SCRATCH_DIR = '/var/lib/tern/scratch';

export interface ProcessRecord {
  description: string;
  /** Whether the process (or an ancestor) mentions a scope string; true when no scope was given. */
  inScope: boolean;
}

export interface Snapshot {
  /** "pid:starttime" -> record */
  processes: Map<string, ProcessRecord>;
  /** mount descriptions (mount point, type, source), with multiplicity */
  mounts: string[];
  /** paths of non-directory entries under the tern run dir and containerd's shim/fifo/runc dirs */
  files: Set<string>;
  interfaces: Set<string>;
  netns: Set<string>;
  cgroups: Set<string>;
}

export interface SnapshotOptions {
  /** Extra patterns; a process matches when one matches argv[0]'s basename. */
  extraProcessNames?: RegExp[];
  /**
   * Strings that attribute a resource to the test (e.g. the private containerd's dir and
   * the tern run dir), so that other work on the same host is not reported. A process is
   * in scope when its command line or environment, or an ancestor's, contains one; a mount
   * when its mount point or source does. Without a scope, everything new is reported.
   * Files, interfaces, network namespaces and cgroups are not filtered.
   */
  scope?: string[];
}

/** Directory tern keeps its runtime state in: env TERN_RUN_DIR, else /run/tern. */
export function ternRunDir(): string {
  return process.env.TERN_RUN_DIR ?? '/run/tern';
}

/**
 * The VM template store (factory.template_dir, default <run dir>/templates):
 * a cache built once and kept on purpose, like containerd's image content,
 * so neither its tmpfs nor its templates are leaks. An unfinished build or
 * removal (.build-*, .trash-*) left in it is.
 */
export function templateStoreDir(): string {
  return join(ternRunDir(), 'templates');
}

function isTemplateCache(path: string): boolean {
  const store = templateStoreDir();
  if (path === store) return true;
  if (!path.startsWith(`${store}/`)) return false;
  const top = path.slice(store.length + 1).split('/')[0] ?? '';
  return !top.startsWith('.build-') && !top.startsWith('.trash-');
}

/**
 * The shims' record of starts for `tern metrics` (<run dir>/metrics/events.jsonl
 * and its rotated .1): kept on purpose across sandboxes, like the template
 * store, so not a leak.
 */
function isStartEventsRecord(path: string): boolean {
  const dir = join(ternRunDir(), 'metrics');
  return path === join(dir, 'events.jsonl') || path === join(dir, 'events.jsonl.1');
}

/** ctr namespaces whose cgroup parent containerd creates and never removes. */
const NAMESPACE_CGROUPS = new Set(['tern-test', 'k8s.io', 'default']);

const PROCESS_NAMES: RegExp[] = [/^qemu-system/, /virtiofsd/, /^containerd-shim-tern/, /^tern/];

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

interface ProcInfo {
  ppid: number;
  startTime: string;
  state: string;
  comm: string;
  argv: string[];
}

function procInfo(pid: number): ProcInfo | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  const raw = readText(`/proc/${pid}/cmdline`);
  if (stat === undefined || raw === undefined) return undefined;
  // Fields after the command name, which is in parentheses and may contain spaces.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    state: rest[0] ?? '?',
    ppid: Number(rest[1] ?? 0),
    startTime: rest[19] ?? '0',
    comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
    argv: raw.split('\0').filter((a) => a.length > 0),
  };
}

/** Whether pid or one of its ancestors mentions a scope string in its cmdline or environment. */
function inScope(pid: number, info: ProcInfo, scope: string[]): boolean {
  let cur: number = pid;
  let curInfo: ProcInfo | undefined = info;
  for (let hops = 0; hops < 64 && cur > 1 && curInfo !== undefined; hops++) {
    const text = `${curInfo.argv.join('\0')}\0${readText(`/proc/${cur}/environ`) ?? ''}`;
    if (scope.some((s) => text.includes(s))) return true;
    cur = curInfo.ppid;
    curInfo = procInfo(cur);
  }
  return false;
}

function processes(opts: SnapshotOptions): Map<string, ProcessRecord> {
  const names = [...PROCESS_NAMES, ...(opts.extraProcessNames ?? [])];
  const distDir = `${join(repoRoot(), 'dist')}/`;
  const out = new Map<string, ProcessRecord>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const info = procInfo(pid);
    if (info === undefined) continue;
    const { argv, comm } = info;
    const argv0 = argv.length > 0 ? basename(argv[0]!) : comm;
    const isOurNode = argv0.startsWith('node') && argv.slice(1).some((a) => a.startsWith(distDir));
    if (!isOurNode && !names.some((re) => re.test(argv0))) continue;
    const cmd = argv.length > 0 ? argv.join(' ') : `[${comm}]`;
    const description = `process ${pid} (state ${info.state}): ${cmd.length > 200 ? `${cmd.slice(0, 200)}...` : cmd}`;
    const scoped = opts.scope === undefined || inScope(pid, info, opts.scope);
    out.set(`${pid}:${info.startTime}`, { description, inScope: scoped });
  }
  return out;
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function mounts(scope: string[] | undefined): string[] {
  const runDir = ternRunDir();
  const out: string[] = [];
  for (const line of (readText('/proc/self/mountinfo') ?? '').split('\n')) {
    if (line.length === 0) continue;
    const fields = line.split(' ');
    const point = unescapeMountPath(fields[4] ?? '');
    const sep = fields.indexOf('-');
    const fstype = fields[sep + 1] ?? '?';
    const source = unescapeMountPath(fields[sep + 2] ?? '?');
    const relevant =
      /tern/.test(point) || /tern/.test(source) || point.startsWith(`${runDir}/`) || point.startsWith('/run/containerd/') || point.startsWith('/run/netns/');
    const scoped = scope === undefined || scope.some((s) => point.includes(s) || source.includes(s));
    if (relevant && scoped && !isTemplateCache(point)) out.push(`mount ${point} type ${fstype} source ${source}`);
  }
  return out.sort();
}

function walkFiles(dir: string, depth: number, out: Set<string>): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    const path = join(dir, name);
    let isDir = false;
    try {
      isDir = lstatSync(path).isDirectory();
    } catch {
      continue;
    }
    if (isDir) {
      if (depth > 1) walkFiles(path, depth - 1, out);
      else out.add(`${path}/`);
    } else {
      out.add(path);
    }
  }
}

function files(): Set<string> {
  const out = new Set<string>();
  // Empty directories are not reported: a run dir may keep its skeleton between runs.
  walkFiles(ternRunDir(), 6, out);
  for (const p of [...out]) if (isTemplateCache(p.replace(/\/$/, '')) || isStartEventsRecord(p)) out.delete(p);
  // The containers' writable layers under the default cache_dir (a test with its own cache checks its own).
  walkFiles(DEFAULT_SCRATCH_DIR, 2, out);
  walkFiles('/run/containerd/s', 1, out);
  // Per-run FIFO directories of ctr, and per-container state dirs of the runc shims.
  for (const d of ['/run/containerd/fifo']) {
    if (existsSync(d)) for (const n of readdirSync(d)) out.add(join(d, n));
  }
  for (const ns of existsSync('/run/containerd/runc') ? readdirSync('/run/containerd/runc') : []) {
    const d = join('/run/containerd/runc', ns);
    try {
      for (const n of readdirSync(d)) out.add(join(d, n));
    } catch {
      // not a directory
    }
  }
  return out;
}

function interfaces(): Set<string> {
  return new Set(existsSync('/sys/class/net') ? readdirSync('/sys/class/net') : []);
}

function netns(): Set<string> {
  return new Set(existsSync('/run/netns') ? readdirSync('/run/netns') : []);
}

function cgroups(): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string, depth: number, ours: boolean): void => {
    let entries: string[];
    try {
      entries = readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name);
    } catch {
      return;
    }
    for (const name of entries) {
      const path = join(dir, name);
      const mine = ours || name.startsWith('tern');
      if (mine && !NAMESPACE_CGROUPS.has(name)) out.add(path);
      if (depth > 1) walk(path, depth - 1, mine);
    }
  };
  walk('/sys/fs/cgroup', 5, false);
  return out;
}

export async function snapshot(opts: SnapshotOptions = {}): Promise<Snapshot> {
  return {
    processes: processes(opts),
    mounts: mounts(opts.scope),
    files: files(),
    interfaces: interfaces(),
    netns: netns(),
    cgroups: cgroups(),
  };
}

/** Describes everything present in `after` that was not in `before`. */
export function diff(before: Snapshot, after: Snapshot): string[] {
  const out: string[] = [];
  for (const [key, rec] of after.processes) {
    if (rec.inScope && !before.processes.has(key)) out.push(rec.description);
  }
  const remaining = new Map<string, number>();
  for (const m of before.mounts) remaining.set(m, (remaining.get(m) ?? 0) + 1);
  for (const m of after.mounts) {
    const n = remaining.get(m) ?? 0;
    if (n > 0) remaining.set(m, n - 1);
    else out.push(m);
  }
  for (const f of after.files) if (!before.files.has(f)) out.push(`file ${f}`);
  for (const i of after.interfaces) if (!before.interfaces.has(i)) out.push(`network interface ${i}`);
  for (const n of after.netns) if (!before.netns.has(n)) out.push(`network namespace /run/netns/${n}`);
  for (const c of after.cgroups) if (!before.cgroups.has(c)) out.push(`cgroup ${c}`);
  return out;
}

export interface ExpectNoLeaksOptions extends SnapshotOptions {
  /** How long to wait for asynchronous teardown; default 5000 ms. */
  timeoutMs?: number;
}

/** Polls until nothing new is left since `before`, or throws listing every leftover. */
export async function expectNoLeaks(before: Snapshot, opts: ExpectNoLeaksOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 5_000);
  for (;;) {
    const leaks = diff(before, await snapshot(opts));
    if (leaks.length === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(`leaked resources (${leaks.length}):\n  ${leaks.join('\n  ')}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
