// Health of a running guest: its agent is asked every interval; after
// `failures` failed checks in a row (a hung guest or agent: one that died
// powers the VM off, which is seen at once) the guest counts as lost. An
// agent that answered any other call meanwhile is alive, only busy (a loaded
// host), so that check does not count.
import type { Logger } from '../common/logging';
import type { AgentClient } from './agent-client';

export interface HealthOptions {
  intervalMs: number;
  timeoutMs: number;
  failures: number;
}

export class HealthCheck {
  private timer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly agent: AgentClient,
    private readonly opts: HealthOptions,
    private readonly log: Logger,
    /** Called once, with why, when the guest is lost. */
    private readonly onLost: (reason: string) => void,
  ) {}

  /** Starts checking (nothing when the interval is 0). */
  start(): void {
    if (this.opts.intervalMs <= 0 || this.stopped) return;
    this.schedule(0);
  }

  /** Stops checking; a check under way is ignored. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(failures: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(failures), this.opts.intervalMs);
  }

  private async tick(failures: number): Promise<void> {
    this.timer = undefined;
    if (this.stopped) return;
    const t0 = performance.now();
    try {
      await this.agent.check(this.opts.timeoutMs);
      failures = 0;
    } catch (err) {
      if (this.stopped) return;
      failures = this.agent.lastAnswerAt > t0 ? 0 : failures + 1;
      this.log.warn({ err: (err as Error).message, failures, of: this.opts.failures }, 'guest agent health check failed');
      if (failures > 0 && failures >= this.opts.failures) {
        this.stopped = true;
        this.onLost(`guest agent did not answer ${failures} health checks in a row (last: ${(err as Error).message})`);
        return;
      }
    }
    this.schedule(failures);
  }
}
