// How the host learns that a container's process ended and tells containerd:
// a long poll to the guest per process, the exit reported (/tasks/exit) once
// its output has drained; a lost guest reports every process killed (137).
import type { Logger } from '../common/logging';
import type { EventPublisher } from './events';
import type { HostProcess } from './process';
import type { CpuSoFar, RunningSandbox } from './running-sandbox';
import { fromNanos, nowNanos } from './timestamp';

export class ProcessExits {
  constructor(
    private readonly events: EventPublisher,
    private readonly log: Logger,
    /** How long a process's output may take to drain after its exit. */
    private readonly drainTimeoutMs: () => number,
  ) {}

  /** Long-polls the guest for the process's exit, then reports it once its output has drained. */
  async watch(pod: RunningSandbox, p: HostProcess): Promise<void> {
    try {
      const r = await pod.agent.waitProcess(p.containerId, p.execId);
      await p.io.drained(this.drainTimeoutMs());
      this.exited(p, r.exit_status, BigInt(r.exited_at_unix_nano) || nowNanos(), 'exited', pod.clock.cpuSoFar());
    } catch (err) {
      if (p.state.kind !== 'stopped') {
        this.log.error({ err: (err as Error).message, container: p.containerId, process: p.label() }, 'lost track of process; reporting it killed');
        this.exited(p, 137, nowNanos(), 'agent wait failed');
      }
    }
  }

  /** The VM died or its guest was lost: every process still running is reported as killed (137). */
  allKilled(processes: Iterable<HostProcess>, reason: string): void {
    const at = nowNanos();
    for (const p of processes) if (p.state.kind !== 'stopped') this.exited(p, 137, at, reason);
  }

  private exited(p: HostProcess, status: number, at: bigint, why: string, cpu?: CpuSoFar): void {
    if (!p.markExited(status, at)) return;
    this.log.info({ container: p.containerId, process: p.label(), status, why, cpu }, 'process exited');
    this.events.publish({
      topic: '/tasks/exit',
      type: 'TaskExit',
      event: { container_id: p.containerId, id: p.execId || p.containerId, pid: p.pid, exit_status: status, exited_at: fromNanos(at) },
    });
  }
}
