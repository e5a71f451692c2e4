// One teardown order for a sandbox. Every resource the sandbox acquires on the
// host is appended here, with what undoing it needs, before it is acquired:
// a JSON line in <sandbox dir>/ledger.jsonl. destroy(), a failed boot and
// `delete` after a dead shim all undo the same steps, newest first; the
// sandbox directory itself (and the host volumes bound under it) goes last,
// after the ledger. The live shim and `delete` differ only in how a step is
// undone (a live VM is asked to stop; a dead shim's is killed from its files),
// never in which steps or in what order.
import { appendFileSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { unavailable } from '../common/errors';
import type { LogSink } from '../common/log-sink';
import { stateFileError } from './state-file';
import type { PodNetwork } from './network';

export type LedgerStep =
  /** The sandbox's pins of layer images (layer-pins.ts); undone: released, then the layer cache collected. */
  | { kind: 'layer-pins'; pinsDir: string; layersDir: string; maxMiB: number }
  /** The containers' writable-layer files (scratch-disks.ts); undone: the directory removed, then stale ones of other sandboxes. */
  | { kind: 'scratch-disks'; dir: string; cacheDir: string }
  /** VM template builds this shim may leave half done (undone only after a dead shim). */
  | { kind: 'template-builds'; templateDir: string; shimPid: number; shimStartTime?: string }
  /** VMs in the warm pool owned by this sandbox: one it took, or one whose take it gave up on. */
  | { kind: 'pooled-vms'; poolDir: string }
  /** The pod's host cgroup (shim and QEMU), by name. */
  | { kind: 'host-cgroup'; name: string }
  /** The directory exported to the guest (a tmpfs; host volumes are bound under it). */
  | { kind: 'shared-dir'; path: string }
  /** Taps, redirects and NAT rules in the pod's network namespace. */
  | { kind: 'pod-network'; network: PodNetwork }
  /** A VM launched (or adopted) with this run directory. */
  | { kind: 'vm'; runDir: string };

export type StepKind = LedgerStep['kind'];

/** How each kind of step is undone; each must be idempotent and must not throw for what is already gone. */
export type Undoers = { [K in StepKind]: (step: Extract<LedgerStep, { kind: K }>) => Promise<void> };

export const LEDGER_FILE = 'ledger.jsonl';

/**
 * Test-only fault point, inert unless set: TERN_FAULT_AFTER_STEP=<step kind>
 * makes the shim kill itself (SIGKILL) once that step's resource is acquired:
 * when the next step is recorded, or at the boot's checkpoint. The crash
 * tests use it to prove that `delete` leaves nothing after a crash at any step.
 */
export const FAULT_ENV = 'TERN_FAULT_AFTER_STEP';

export function ledgerPath(sandboxDir: string): string {
  return join(sandboxDir, LEDGER_FILE);
}

const KINDS: ReadonlySet<string> = new Set<StepKind>([
  'layer-pins',
  'scratch-disks',
  'template-builds',
  'pooled-vms',
  'host-cgroup',
  'shared-dir',
  'pod-network',
  'vm',
]);

/** Pure: the steps in a ledger file's text; a torn or unknown line (a crash mid-write) is skipped. */
export function parseLedger(text: string): LedgerStep[] {
  const steps: LedgerStep[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const s = JSON.parse(line) as { kind?: unknown };
      if (typeof s === 'object' && s !== null && typeof s.kind === 'string' && KINDS.has(s.kind)) steps.push(s as LedgerStep);
    } catch {
      /* torn line */
    }
  }
  return steps;
}

/** The steps recorded in a sandbox directory ([] when there is no ledger). */
export function readLedger(sandboxDir: string): LedgerStep[] {
  try {
    return parseLedger(readFileSync(ledgerPath(sandboxDir), 'utf8'));
  } catch {
    return [];
  }
}

/** Undoes `steps` newest first; a step that fails is logged and the others still run. */
export async function undoSteps(steps: readonly LedgerStep[], undoers: Undoers, log: Pick<LogSink, 'error'>): Promise<void> {
  for (const step of [...steps].reverse()) {
    try {
      await (undoers[step.kind] as (s: LedgerStep) => Promise<void>)(step);
    } catch (err) {
      log.error({ step: step.kind, err: (err as Error).message }, 'teardown step failed');
    }
  }
}

/** A live sandbox's ledger: what it records, in memory and on disk. */
export class TeardownLedger {
  private readonly steps: LedgerStep[] = [];
  private isClosed = false;

  constructor(readonly sandboxDir: string) {}

  /**
   * Records a step before its resource is acquired (one append: a step is on
   * disk whole or, after a crash mid-write, not at all). A full state
   * directory fails the acquisition, never the teardown.
   */
  record(step: LedgerStep): void {
    if (this.isClosed) throw unavailable(`sandbox ${basename(this.sandboxDir)} is being destroyed: not acquiring ${step.kind}`);
    this.checkpoint();
    const path = ledgerPath(this.sandboxDir);
    try {
      appendFileSync(path, `${JSON.stringify(step)}\n`);
    } catch (err) {
      throw stateFileError('write', path, err);
    }
    this.steps.push(step);
  }

  /** The fault point (FAULT_ENV): called by record() and once a boot is complete. */
  checkpoint(): void {
    const fault = process.env[FAULT_ENV];
    if (fault && this.steps.at(-1)?.kind === fault) process.kill(process.pid, 'SIGKILL');
  }

  /** Where the ledger stands now, for undoSince. */
  mark(): number {
    return this.steps.length;
  }

  /** Undoes the steps recorded since `mark` (a boot path that failed), and forgets them. */
  async undoSince(mark: number, undoers: Undoers, log: Pick<LogSink, 'error'>): Promise<void> {
    const since = this.steps.splice(mark);
    await undoSteps(since, undoers, log);
  }

  /** Undoes every step, newest first, and forgets them. */
  async undoAll(undoers: Undoers, log: Pick<LogSink, 'error'>): Promise<void> {
    await this.undoSince(0, undoers, log);
  }

  /** No step may be recorded any more (destroy() began): a boot in flight stops at its next step. */
  close(): void {
    this.isClosed = true;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get recorded(): readonly LedgerStep[] {
    return this.steps;
  }
}
