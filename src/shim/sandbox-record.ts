// sandbox.json: what a sandbox directory says about itself, for `delete`
// after a dead shim and for `tern sandboxes`. Written when the boot begins
// (before a VM is taken from the pool: its owner record names this
// directory), again when a pooled VM is adopted and once the VM is ready.
import { join } from 'node:path';
import type { StartPathName } from './metrics-events';
import { writeStateFile } from './state-file';

export type StartPath = StartPathName;

export interface SandboxRecord {
  namespace: string;
  id: string;
  shimPid: number;
  /** The shim process's start time (/proc/<pid>/stat), so a reused pid is not taken for it. */
  shimStartTime?: string;
  vmDir: string;
  createdAt: string;
  /** The template store this sandbox's shim may build in (for `delete` after it dies). */
  templateDir?: string;
  /** The warm pool's directory, where a VM this sandbox took lives (for `delete`). */
  poolDir?: string;
  /** The pooled VM's directory, once this sandbox took one (its vm/ is vmDir). */
  pooledDir?: string;
  /** How the VM came up, once it has. */
  startPath?: StartPath;
  /** The shim's task socket (what `tern metrics` asks for the containers' stats). */
  shimSocket?: string;
  /** The control socket of the shim process serving this pod, which also serves others (shim-daemon.ts). */
  controlSocket?: string;
}

/** The record of one sandbox directory, rewritten whole (atomically) at each change. */
export class SandboxRecordFile {
  constructor(
    private readonly dir: string,
    private record: SandboxRecord,
  ) {}

  get current(): Readonly<SandboxRecord> {
    return this.record;
  }

  async update(patch: Partial<SandboxRecord>): Promise<void> {
    this.record = { ...this.record, ...patch };
    await writeStateFile(join(this.dir, 'sandbox.json'), JSON.stringify(this.record));
  }
}
