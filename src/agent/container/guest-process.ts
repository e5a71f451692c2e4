// One container process (init or exec) driven through tern-launch: spawns the
// launcher with the plan file, reads its status lines on fd 3, sends commands
// on fd 4, buffers stdout/stderr for long-poll reads and feeds stdin.
// Lifecycle: creating -> created -> running -> exited (also creating/created
// -> exited); invalid moves throw FailedPrecondition.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { deadlineExceeded, failedPrecondition, notFound, TernError } from '../../common/errors.js';
import { StreamBuffer, type ReadResult } from './stream-buffer.js';

export type GuestProcessState = 'creating' | 'created' | 'running' | 'exited';

export interface ProcessIo {
  terminal: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface ProcessLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface ProcessOptions {
  launcherPath: string;
  planFile: string;
  io: ProcessIo;
  /** Names the process in logs and errors, e.g. "container c1" or "exec e1 in c1". */
  label: string;
  log?: ProcessLog;
  createTimeoutMs?: number;
  startTimeoutMs?: number;
  /** Bytes buffered per output stream before the pipe is paused. */
  bufferBytes?: number;
}

export interface GuestExit {
  exitStatus: number;
  /** Wall-clock time of the exit, nanoseconds since the Unix epoch. */
  exitedAt: bigint;
}

const TRANSITIONS: Record<GuestProcessState, GuestProcessState[]> = {
  creating: ['created', 'exited'],
  created: ['running', 'exited'],
  running: ['exited'],
  exited: [],
};

// wall clock in ns with sub-millisecond resolution
const wallBase = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
export const nowNs = (): bigint => wallBase + process.hrtime.bigint();

const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
}

export class GuestProcess {
  private _state: GuestProcessState = 'creating';
  private _pid = 0;
  private child?: ChildProcess;
  private control?: Writable;
  private stdinStream?: Writable;
  private stdinClosed = false;
  private exitInfo?: GuestExit;
  private exitWaiters: ((e: GuestExit) => void)[] = [];
  private launcherExit: Promise<void> = Promise.resolve();
  private pendingCreate?: Pending;
  private pendingStart?: Pending;
  private starting = false;
  private lastError = '';
  private stdoutBuf = new StreamBuffer(null);
  private stderrBuf = new StreamBuffer(null);

  constructor(private readonly opts: ProcessOptions) {}

  get state(): GuestProcessState {
    return this._state;
  }
  /** Guest pid of the container process (0 until created). */
  get pid(): number {
    return this._pid;
  }
  /** Pid of the launcher supervising it. */
  get launcherPid(): number {
    return this.child?.pid ?? 0;
  }
  get io(): ProcessIo {
    return this.opts.io;
  }

  private move(to: GuestProcessState): void {
    if (!TRANSITIONS[this._state].includes(to)) {
      throw failedPrecondition(`${this.opts.label}: cannot go from ${this._state} to ${to}`);
    }
    this._state = to;
  }

  /** Spawn the launcher; resolves with the pid once the process is ready to start. */
  async create(): Promise<number> {
    if (this.child) throw failedPrecondition(`${this.opts.label}: already created`);
    const { io } = this.opts;
    const child = spawn(this.opts.launcherPath, [this.opts.planFile], {
      stdio: [io.stdin ? 'pipe' : 'ignore', io.stdout ? 'pipe' : 'ignore', io.stderr && !io.terminal ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.stdinStream = child.stdin ?? undefined;
    this.stdinStream?.on('error', (err) => this.opts.log?.debug({ err: String(err), process: this.opts.label }, 'stdin error'));
    this.stdoutBuf = new StreamBuffer(child.stdout, this.opts.bufferBytes);
    this.stderrBuf = new StreamBuffer(child.stderr, this.opts.bufferBytes);
    this.control = child.stdio[4] as Writable;
    this.control.on('error', () => undefined);
    const status = child.stdio[3] as Readable;
    let partial = '';
    status.setEncoding('utf8');
    status.on('data', (text: string) => {
      partial += text;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        try {
          this.onStatus(line);
        } catch (err) {
          this.opts.log?.error({ process: this.opts.label, line, err: String(err) }, 'bad launcher status line');
        }
      }
    });
    status.on('error', () => undefined);
    this.launcherExit = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        if (this._state !== 'exited') {
          // the launcher died without reporting (killed): take its own status
          const n = signal ? 128 + (signalNumbers[signal] ?? 9) : (code ?? 1);
          this.onExit(n);
        }
        (child.stdio[3] as Readable | null)?.destroy();
        this.control?.destroy();
        resolve();
      });
    });
    child.on('error', (err) => {
      this.lastError = `cannot run ${this.opts.launcherPath}: ${err.message}`;
      if (this._state !== 'exited') this.onExit(127);
    });

    const timeoutMs = this.opts.createTimeoutMs ?? 30_000;
    await this.pendingFor('create', timeoutMs);
    return this._pid;
  }

  /** Let the created process exec. */
  async start(): Promise<void> {
    if (this._state !== 'created' || this.starting) {
      throw failedPrecondition(`${this.opts.label}: cannot start in state ${this.starting ? 'starting' : this._state}`);
    }
    this.starting = true;
    const done = this.pendingFor('start', this.opts.startTimeoutMs ?? 10_000);
    this.control?.write('start\n');
    await done;
  }

  private pendingFor(which: 'create' | 'start', timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        clear();
        this.killLauncher();
        reject(deadlineExceeded(`${this.opts.label}: launcher did not answer ${which} within ${timeoutMs} ms`));
      }, timeoutMs);
      const clear = () => {
        clearTimeout(timer);
        if (which === 'create') this.pendingCreate = undefined;
        else this.pendingStart = undefined;
      };
      const p: Pending = {
        resolve: () => {
          clear();
          resolve();
        },
        reject: (err) => {
          clear();
          reject(err);
        },
      };
      if (which === 'create') this.pendingCreate = p;
      else this.pendingStart = p;
    });
  }

  private onStatus(line: string): void {
    const sp = line.indexOf(' ');
    const word = sp < 0 ? line : line.slice(0, sp);
    const rest = sp < 0 ? '' : line.slice(sp + 1);
    switch (word) {
      case 'pid':
        this._pid = Number(rest);
        this.move('created');
        this.pendingCreate?.resolve();
        break;
      case 'started':
        this.move('running');
        this.pendingStart?.resolve();
        break;
      case 'error': {
        this.lastError = rest;
        const err = failedPrecondition(`${this.opts.label}: ${rest}`);
        if (this.pendingCreate) this.pendingCreate.reject(err);
        else if (this.pendingStart) this.pendingStart.reject(err);
        else this.opts.log?.warn({ process: this.opts.label, error: rest }, 'launcher reported an error');
        break;
      }
      case 'exit':
        this.onExit(Number(rest));
        break;
      default:
        this.opts.log?.warn({ process: this.opts.label, line }, 'unknown launcher status line');
    }
  }

  private onExit(status: number): void {
    if (this._state === 'exited') return;
    this.move('exited');
    const info = { exitStatus: status, exitedAt: nowNs() };
    this.exitInfo = info;
    const why = this.lastError || `exited with status ${status}`;
    this.pendingCreate?.reject(failedPrecondition(`${this.opts.label}: ${why}`));
    this.pendingStart?.reject(failedPrecondition(`${this.opts.label}: ${why}`));
    for (const w of this.exitWaiters.splice(0)) w(info);
    this.opts.log?.debug({ process: this.opts.label, pid: this._pid, status }, 'process exited');
  }

  /**
   * Resolves when the process has exited (immediately if it already has): no
   * deadline, a container runs as long as it runs. `signal` (the WaitProcess
   * call's: its connection closed) ends the wait with Canceled.
   */
  wait(signal?: AbortSignal): Promise<GuestExit> {
    if (this.exitInfo) return Promise.resolve(this.exitInfo);
    const canceled = () => new TernError('Canceled', `wait for ${this.opts.label} canceled`);
    if (signal?.aborted) return Promise.reject(canceled());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.exitWaiters.indexOf(waiter);
        if (i >= 0) this.exitWaiters.splice(i, 1);
        reject(canceled());
      };
      const waiter = (e: GuestExit) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(e);
      };
      this.exitWaiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Callers waiting in wait(). */
  get waiting(): number {
    return this.exitWaiters.length;
  }

  get exited(): GuestExit | undefined {
    return this.exitInfo;
  }

  read(which: 'stdout' | 'stderr', maxBytes: number, signal?: AbortSignal): Promise<ReadResult> {
    return (which === 'stdout' ? this.stdoutBuf : this.stderrBuf).read(maxBytes, signal);
  }

  /** Write to stdin; resolves with the byte count once accepted (waits while more than 1 MiB is queued). */
  async writeStdin(data: Buffer): Promise<number> {
    const s = this.stdinStream;
    if (!s || this.stdinClosed) throw failedPrecondition(`${this.opts.label}: stdin is not open`);
    if (s.destroyed) throw failedPrecondition(`${this.opts.label}: stdin is closed`);
    await new Promise<void>((resolve, reject) => {
      s.write(data, (err) => (err ? reject(failedPrecondition(`${this.opts.label}: stdin: ${err.message}`)) : resolve()));
    });
    return data.length;
  }

  async closeStdin(): Promise<void> {
    if (this.stdinClosed || !this.stdinStream) return;
    this.stdinClosed = true;
    await new Promise<void>((resolve) => this.stdinStream!.end(resolve));
  }

  async resize(rows: number, cols: number): Promise<void> {
    if (!this.opts.io.terminal) throw failedPrecondition(`${this.opts.label}: not a terminal process`);
    if (this._state === 'exited') throw notFound(`${this.opts.label} (exited)`);
    this.control?.write(`resize ${Math.floor(rows)} ${Math.floor(cols)}\n`);
  }

  /** Signal the container process by pid. Exited processes are NotFound, like runc. */
  signal(sig: number): void {
    if (this._state === 'exited' || this._pid <= 0) throw notFound(`${this.opts.label} (not running)`);
    try {
      process.kill(this._pid, sig);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ESRCH') throw notFound(`${this.opts.label} (pid ${this._pid} is gone)`);
      throw new TernError('Internal', `${this.opts.label}: kill ${this._pid} ${sig}: ${String(err)}`);
    }
  }

  private killLauncher(): void {
    const pid = this.child?.pid;
    if (this._pid > 0 && this._state !== 'exited') {
      try {
        process.kill(this._pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (pid && this.child?.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** Kill the process and its launcher if still alive, and wait (bounded) for the launcher to go. */
  async destroy(timeoutMs = 5000): Promise<void> {
    if (!this.child) return;
    this.killLauncher();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.launcherExit, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.stdinStream?.destroy();
    this.child.stdout?.destroy();
    this.child.stderr?.destroy();
  }

  /** Wait (bounded) for the launcher to exit by itself, e.g. after it drained the output. */
  async launcherDone(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([this.launcherExit.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(timer);
    return done;
  }
}
