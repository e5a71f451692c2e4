// What `tern sandboxes` reports, read from disk and /proc: every directory
// <stateDir>/sb/<hash>/ with its sandbox.json (written by the shim when the
// VM boots), vm/qemu.pid and vm/vm.json (written by the QEMU driver),
// containers.json, and the live processes' PSS.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TernConfig } from '../common/config';
import { procAlive, procStartTime } from '../common/proc';
import { createDriver } from '../hypervisor/index';
import type { SandboxRecord } from '../shim/sandbox-record';
import { processArgv, processPssKiB, resourcesFromArgv, tailLines } from './proc-facts';

export interface ProcessView {
  pid: number | null;
  alive: boolean;
  pssKiB: number | null;
}

export interface ContainerView {
  id: string;
  pid: number;
  bundle?: string;
}

export interface SandboxView {
  /** The sandbox directory, <stateDir>/sb/<hash>. */
  dir: string;
  namespace: string | null;
  id: string | null;
  createdAt: string | null;
  uptimeSeconds: number | null;
  shim: ProcessView;
  qemu: ProcessView;
  vcpus: number;
  memoryMiB: number;
  /** Where vcpus/memory came from: vm.json, the live QEMU command line, or the config. */
  resourcesFrom: 'vm.json' | 'qemu' | 'config';
  /** PSS of QEMU + shim in KiB (the live ones), null when neither is readable; listSandboxes counts a shim process serving n of them 1/n each. */
  pssKiB: number | null;
  /** How its VM came up: from the warm pool, a template clone, a cold boot; null while booting or unknown. */
  startPath: 'pool' | 'template' | 'cold' | null;
  /** The shim's task socket: from sandbox.json, else the `address` file containerd's bundle of a container has. */
  shimSocket: string | null;
  containers: ContainerView[];
  /** Files that were missing or unreadable. */
  problems: string[];
}

function readJson(path: string): { value?: unknown; error?: string } {
  try {
    return { value: JSON.parse(readFileSync(path, 'utf8')) as unknown };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { error: e.code === 'ENOENT' ? 'missing' : e.message };
  }
}

function asRecord(v: unknown): Partial<SandboxRecord> {
  return typeof v === 'object' && v !== null ? (v as Partial<SandboxRecord>) : {};
}

function asContainers(v: unknown): ContainerView[] {
  if (!Array.isArray(v)) return [];
  return v
    .filter((c): c is { id: string; pid?: unknown; bundle?: unknown } => typeof c === 'object' && c !== null && typeof (c as { id?: unknown }).id === 'string')
    .map((c) => ({ id: c.id, pid: typeof c.pid === 'number' ? c.pid : 0, ...(typeof c.bundle === 'string' ? { bundle: c.bundle } : {}) }));
}

/** A unix socket path from "unix:///p", "unix:/p" or "/p"; null for anything else. */
export function socketFromAddress(address: string): string | null {
  const path = address.trim().replace(/^unix:(\/\/)?/, '');
  return path.startsWith('/') ? path : null;
}

function shimSocketOf(r: Partial<SandboxRecord>, containers: readonly ContainerView[]): string | null {
  if (typeof r.shimSocket === 'string') return socketFromAddress(r.shimSocket);
  for (const c of containers) {
    if (!c.bundle) continue;
    try {
      return socketFromAddress(readFileSync(join(c.bundle, 'address'), 'utf8'));
    } catch {
      /* the next container's bundle */
    }
  }
  return null;
}

function positiveInt(v: unknown): number | null {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : null;
}

/**
 * The shim is alive when its pid runs and started when the record says (a
 * reused pid did not). An older record without the time: when the command
 * line names the sandbox id.
 */
function shimAlive(pid: number | null, id: string | null, startTime: string | null): boolean {
  if (pid === null || !procAlive(pid)) return false;
  if (startTime !== null) return procStartTime(pid) === startTime;
  const argv = processArgv(pid);
  return argv !== null && (id === null || argv.includes(id));
}

export function readSandbox(dir: string, cfg: TernConfig, now = Date.now()): SandboxView {
  const problems: string[] = [];
  const rec = readJson(join(dir, 'sandbox.json'));
  if (rec.error) problems.push(`sandbox.json: ${rec.error}`);
  const r = asRecord(rec.value);
  const namespace = typeof r.namespace === 'string' ? r.namespace : null;
  const id = typeof r.id === 'string' ? r.id : null;
  const vmDir = typeof r.vmDir === 'string' && r.vmDir ? r.vmDir : join(dir, 'vm');
  const createdAt = typeof r.createdAt === 'string' ? r.createdAt : null;

  const shimPid = positiveInt(r.shimPid);
  const shimUp = shimAlive(shimPid, id, typeof r.shimStartTime === 'string' ? r.shimStartTime : null);

  const rawVmJson = readJson(join(vmDir, 'vm.json')).value as Record<string, unknown> | undefined;
  const { pid: qemuPid, running: qemuUp } = createDriver(cfg.hypervisor.driver).processOnDisk(vmDir);

  let vcpus: number | null = positiveInt(rawVmJson?.vcpus);
  let memoryMiB: number | null = positiveInt(rawVmJson?.memoryMiB);
  let resourcesFrom: SandboxView['resourcesFrom'] = 'vm.json';
  if (vcpus === null || memoryMiB === null) {
    const argv = qemuUp ? processArgv(qemuPid!) : null;
    const fromArgv = argv ? resourcesFromArgv(argv) : { vcpus: null, memoryMiB: null };
    if (fromArgv.vcpus !== null && fromArgv.memoryMiB !== null) {
      vcpus ??= fromArgv.vcpus;
      memoryMiB ??= fromArgv.memoryMiB;
      resourcesFrom = 'qemu';
    } else {
      vcpus ??= cfg.hypervisor.vcpus;
      memoryMiB ??= cfg.hypervisor.memoryMiB;
      resourcesFrom = 'config';
    }
  }

  const shimPss = shimUp ? processPssKiB(shimPid!) : null;
  const qemuPss = qemuUp ? processPssKiB(qemuPid!) : null;
  const pssKiB = shimPss === null && qemuPss === null ? null : (shimPss ?? 0) + (qemuPss ?? 0);

  const started = createdAt ? Date.parse(createdAt) : Number.NaN;
  const uptimeSeconds = Number.isFinite(started) && (shimUp || qemuUp) ? Math.max(0, Math.round((now - started) / 1000)) : null;

  const cj = readJson(join(dir, 'containers.json'));
  if (cj.error && cj.error !== 'missing') problems.push(`containers.json: ${cj.error}`);
  const containers = asContainers(cj.value);

  return {
    dir,
    namespace,
    id,
    createdAt,
    uptimeSeconds,
    shim: { pid: shimPid, alive: shimUp, pssKiB: shimPss },
    qemu: { pid: qemuPid, alive: qemuUp, pssKiB: qemuPss },
    vcpus,
    memoryMiB,
    resourcesFrom,
    startPath: r.startPath === 'pool' || r.startPath === 'template' || r.startPath === 'cold' ? r.startPath : null,
    pssKiB,
    shimSocket: shimSocketOf(r, containers),
    containers,
    problems,
  };
}

/** Every sandbox directory under <stateDir>/sb, sorted by namespace then id. */
export function listSandboxes(cfg: TernConfig, now = Date.now()): SandboxView[] {
  const root = join(cfg.runtime.stateDir, 'sb');
  let names: string[];
  try {
    names = readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
  const views = names.map((n) => readSandbox(join(root, n), cfg, now));
  // One shim process serves many pods (shim-daemon.ts): each pod's total holds its share of it, not all of it.
  const sharing = new Map<number, number>();
  for (const v of views) if (v.shim.alive && v.shim.pid !== null) sharing.set(v.shim.pid, (sharing.get(v.shim.pid) ?? 0) + 1);
  for (const v of views) {
    const n = v.shim.pid !== null && v.shim.alive ? (sharing.get(v.shim.pid) ?? 1) : 1;
    if (n > 1 && v.shim.pssKiB !== null) v.pssKiB = Math.round(v.shim.pssKiB / n) + (v.qemu.pssKiB ?? 0);
  }
  return views.sort((a, b) => (a.namespace ?? '').localeCompare(b.namespace ?? '') || (a.id ?? '').localeCompare(b.id ?? ''));
}

/** The sandbox's guest console log (the VM's run directory: vm/, or the pooled VM's), as sandbox.json says now. */
export function consoleLogPath(view: Pick<SandboxView, 'dir'>): string {
  const rec = asRecord(readJson(join(view.dir, 'sandbox.json')).value);
  const vmDir = typeof rec.vmDir === 'string' && rec.vmDir ? rec.vmDir : join(view.dir, 'vm');
  return join(vmDir, 'console.log');
}

/** The last n lines of the sandbox's console log, or null when there is none. */
export function consoleTail(view: SandboxView, n = 20): string[] | null {
  try {
    return tailLines(readFileSync(consoleLogPath(view), 'utf8'), n);
  } catch {
    return null;
  }
}
