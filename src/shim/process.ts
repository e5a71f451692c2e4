// A process of a container as the host shim tracks it (the init process or an
// exec). Its lifecycle is an explicit state machine; invalid moves are
// FailedPrecondition, mirroring containerd's runc shim.
import { failedPrecondition } from '../common/errors';
import type { ProcessIO } from './stdio';

export type HostProcessState = { kind: 'created' } | { kind: 'running' } | { kind: 'stopped'; exitStatus: number; exitedAt: bigint };

export interface HostExit {
  exitStatus: number;
  exitedAt: bigint;
}

export class HostProcess {
  state: HostProcessState = { kind: 'created' };
  private waiters: Array<(e: HostExit) => void> = [];

  constructor(
    readonly containerId: string,
    /** '' for the container's init process. */
    readonly execId: string,
    public pid: number,
    readonly io: ProcessIO,
    readonly stdio: { stdin: string; stdout: string; stderr: string; terminal: boolean },
    /** For an exec: the OCI Process JSON. */
    readonly processJson?: string,
  ) {}

  get isInit(): boolean {
    return this.execId === '';
  }

  markRunning(pid: number): void {
    if (this.state.kind !== 'created') throw failedPrecondition(`process ${this.label()} is ${this.state.kind}, cannot start`);
    this.pid = pid;
    this.state = { kind: 'running' };
  }

  /** Records the exit once; later calls are ignored (the first cause wins). */
  markExited(exitStatus: number, exitedAt: bigint): boolean {
    if (this.state.kind === 'stopped') return false;
    this.state = { kind: 'stopped', exitStatus, exitedAt };
    for (const w of this.waiters.splice(0)) w({ exitStatus, exitedAt });
    return true;
  }

  wait(): Promise<HostExit> {
    if (this.state.kind === 'stopped') return Promise.resolve({ exitStatus: this.state.exitStatus, exitedAt: this.state.exitedAt });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  label(): string {
    return this.execId ? `${this.containerId}/${this.execId}` : this.containerId;
  }
}
