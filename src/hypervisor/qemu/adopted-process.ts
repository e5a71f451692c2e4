// A QEMU that another process launched and handed to us (the warm pool's VM):
// not our child, so there is no exit status. Its exit shows as the end of the
// QMP connection (QEMU closes it only when it exits), confirmed in /proc; the
// pid is only ever signalled after checking its start time, so a reused pid
// is never touched.
import { setTimeout as sleep } from 'node:timers/promises';
import { TernError } from '../../common/errors.js';
import { procAlive, procStartTime } from '../../common/proc.js';
import type { VmExit } from '../hypervisor.js';
import { exitWithin, fileTail } from './launch.js';
import type { QemuProcessHandle } from './process-handle.js';
import type { QmpClient } from './qmp.js';

const KILL_WAIT_MS = 5_000;
/** After QMP closed: how often /proc is looked at until the process is gone. */
const EXIT_CHECK_MS = 50;

export class AdoptedQemuProcess implements QemuProcessHandle {
  readonly exited: Promise<VmExit>;
  private exitInfo: VmExit | undefined;

  constructor(
    readonly pid: number,
    private readonly startTime: string,
    qmp: QmpClient,
    private readonly outputFile: string,
  ) {
    this.exited = new Promise<VmExit>((resolve) => {
      const watch = async (): Promise<void> => {
        while (this.isOurs()) await sleep(EXIT_CHECK_MS);
        this.exitInfo = { code: null, signal: null, stderrTail: fileTail(this.outputFile) };
        resolve(this.exitInfo);
      };
      if (qmp.closed) void watch();
      else qmp.once('close', () => void watch());
    });
  }

  /** Still running, and still the process we adopted. */
  private isOurs(): boolean {
    return procAlive(this.pid) && procStartTime(this.pid) === this.startTime;
  }

  release(): void {
    /* not our child: nothing holds this process open */
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  outputTail(): string {
    return this.exitInfo?.stderrTail ?? fileTail(this.outputFile);
  }

  waitExit(ms: number): Promise<boolean> {
    return this.exitInfo ? Promise.resolve(true) : exitWithin(this.exited, ms);
  }

  async kill(): Promise<void> {
    if (this.exitInfo) return;
    if (this.isOurs()) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    if (!(await this.waitExit(KILL_WAIT_MS))) {
      throw new TernError('DeadlineExceeded', `qemu pid ${this.pid} still running ${KILL_WAIT_MS} ms after SIGKILL`);
    }
  }
}
