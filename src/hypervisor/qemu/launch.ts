// Starts a QEMU process as our child from a ready argv, records it on disk
// (qemu.pid, vm.json), waits for its QMP socket with a deadline and connects.
// If QEMU exits or the deadline passes first, it is killed, its files removed,
// and the error carries the tail of what QEMU printed.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { TernError } from '../../common/errors.js';
import type { Accel, VmExit } from '../hypervisor.js';
import { noopLogSink, type LogSink } from '../../common/log-sink.js';
import { DEFAULT_BINARY, qemuPaths, type DiskSlot } from './cmdline.js';
import { fileAppears } from './file-appears.js';
import { QmpClient } from './qmp.js';
import { QemuVm } from './vm.js';
import type { QemuProcessHandle } from './process-handle.js';
import { ownedFiles, procStartTime, removeFiles, writeVmState } from './vm-state.js';

// Generous: many QEMUs starting at once on a small host each take seconds to reach QMP; an early exit is seen at once anyway.
export const DEFAULT_START_TIMEOUT_MS = 30_000;
const OUTPUT_TAIL_BYTES = 4096;
const KILL_WAIT_MS = 5_000;

export interface LaunchOptions {
  /** QEMU binary (path or name on PATH). */
  binary?: string;
  /** VM id for logs and vm.json. */
  id?: string;
  /** Accelerator the argv selects (reported by Vm.accel). */
  accel?: Accel;
  /** Ids of the empty pcie-root-ports the argv creates, usable for hot-plug. */
  hotplugPorts?: string[];
  /** The disk slots the argv has (diskSlotArgs). */
  diskSlots?: DiskSlot[];
  logger?: LogSink;
  /** Deadline for QEMU to start and answer on QMP. */
  startTimeoutMs?: number;
  /** How long detachBlock waits for the guest to release a device. */
  unplugTimeoutMs?: number;
  /** Run QEMU inside this network namespace (nsenter execs it: same pid). */
  netnsPath?: string;
  /** Called with QEMU's pid right after the spawn (VmSpec.onSpawn); a throw fails the launch. */
  onSpawn?: (pid: number) => void;
  /**
   * A VM meant to be handed to another process (the warm pool's): QEMU writes
   * its output to this file instead of a pipe to us and runs in a session of
   * its own, so that it outlives us unharmed once another process owns it.
   */
  outputFile?: string;
  /** The tern-tapfd helper (QemuVm.attachNic with a network namespace). */
  tapFdHelper?: string;
  /** A template's or clone's state file (Vm.saveTemplate writes it, a clone's restore reads it). */
  statePath?: string;
  /** A clone's state file, open: QEMU inherits it as descriptor STATE_FD (the caller closes its own copy). */
  stateFd?: number;
  /** Variables added to QEMU's environment (a clone's copy-on-write guard). */
  env?: Record<string, string>;
}

/** True if `exited` settles within `ms`. */
export async function exitWithin(exited: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const r = await Promise.race([exited.then(() => true as const), timeout]);
  clearTimeout(timer);
  return r;
}

/** The last bytes of a file, or '' (QEMU's output when it goes to a file). */
export function fileTail(file: string, bytes = OUTPUT_TAIL_BYTES): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, bytes);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

/** A spawned QEMU: its child handle, exit promise and the tail of its output. */
export class QemuProcess implements QemuProcessHandle {
  readonly child: ChildProcess;
  readonly exited: Promise<VmExit>;
  private tail = '';
  private exitInfo: VmExit | undefined;

  constructor(
    child: ChildProcess,
    private readonly outputFile?: string,
  ) {
    this.child = child;
    const keep = (chunk: Buffer) => {
      this.tail = (this.tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise<VmExit>((resolve) => {
      let code: number | null = null;
      let signal: NodeJS.Signals | null = null;
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        if (this.outputFile) this.tail += fileTail(this.outputFile);
        this.exitInfo = { code, signal, stderrTail: this.tail };
        resolve(this.exitInfo);
      };
      child.once('exit', (c, s) => {
        code = c;
        signal = s;
        // 'close' follows once stdout/stderr are drained; do not wait for it forever.
        setTimeout(finish, 500).unref();
      });
      child.once('close', (c, s) => {
        code = c ?? code;
        signal = s ?? signal;
        finish();
      });
      child.on('error', (err) => {
        // Spawn failure: no 'exit' follows.
        if (child.pid === undefined) {
          this.tail += `spawn failed: ${err.message}`;
          finish();
        }
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  release(): void {
    this.child.unref();
  }

  outputTail(): string {
    return this.outputFile && !this.exitInfo ? this.tail + fileTail(this.outputFile) : this.tail;
  }

  /** Resolves true if the process exited within `ms`. */
  waitExit(ms: number): Promise<boolean> {
    return this.exitInfo ? Promise.resolve(true) : exitWithin(this.exited, ms);
  }

  /** SIGKILL and wait (bounded) for the exit. */
  async kill(): Promise<void> {
    if (this.exitInfo || this.child.pid === undefined) return;
    this.child.kill('SIGKILL');
    if (!(await this.waitExit(KILL_WAIT_MS))) {
      throw new TernError('DeadlineExceeded', `qemu pid ${this.child.pid} still running ${KILL_WAIT_MS} ms after SIGKILL`);
    }
  }
}

const startupErrors = new WeakSet<TernError>();

function startupError(what: string, exit: VmExit | undefined, tail: string): TernError {
  const how = exit ? ` (exit code ${exit.code ?? 'none'}, signal ${exit.signal ?? 'none'})` : '';
  const out = tail.trim();
  const err = new TernError('Internal', `qemu ${what}${how}${out ? `: ${out}` : ''}`);
  startupErrors.add(err);
  return err;
}

/**
 * Spawns `binary args` (the argv must put its QMP socket and pid file at
 * qemuPaths(runDir)), then connects to QMP. Resolves with the running VM.
 */
export async function launchQemu(args: string[], runDir: string, opts: LaunchOptions = {}): Promise<QemuVm> {
  const logger = opts.logger ?? noopLogSink;
  const binary = opts.binary ?? DEFAULT_BINARY;
  const id = opts.id ?? '';
  const timeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const paths = qemuPaths(runDir);
  const files = ownedFiles(runDir);
  // Stale sockets from an earlier run would look like a ready QMP socket.
  removeFiles(runDir, files);

  const deadline = Date.now() + timeoutMs;
  logger.debug({ id, binary, args }, 'starting qemu');
  const [cmd, argv] = opts.netnsPath ? ['nsenter', [`--net=${opts.netnsPath}`, '--', binary, ...args]] : [binary, args];
  let child: ChildProcess;
  // Descriptor STATE_FD (3) of the child: the state file, if any.
  const inherited = opts.stateFd === undefined ? [] : [opts.stateFd];
  const env = opts.env ? { ...process.env, ...opts.env } : undefined;
  if (opts.outputFile) {
    const out = fs.openSync(opts.outputFile, 'w', 0o600);
    try {
      child = spawn(cmd, argv, { stdio: ['ignore', out, out, ...inherited], cwd: runDir, detached: true, env });
    } finally {
      fs.closeSync(out);
    }
  } else {
    child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe', ...inherited], cwd: runDir, env });
  }
  const proc = new QemuProcess(child, opts.outputFile);
  const fail = async (err: Error): Promise<never> => {
    try {
      await proc.kill();
    } finally {
      removeFiles(runDir, files);
    }
    logger.error({ id, err: err.message }, 'qemu failed to start');
    throw err;
  };

  if (child.pid === undefined) {
    const exit = await proc.exited;
    throw new TernError('FailedPrecondition', `cannot run ${binary}: ${exit.stderrTail}`);
  }
  const pid = child.pid;
  let qmp: QmpClient | undefined;
  try {
    fs.writeFileSync(paths.pidFile, `${pid}\n`);
    writeVmState({
      version: 1,
      id,
      pid,
      procStartTime: procStartTime(pid),
      binary,
      runDir,
      startedAt: new Date().toISOString(),
      files,
    });
    // Recorded first: a shim that dies during the move leaves what `delete` needs to find QEMU.
    opts.onSpawn?.(pid);
    const socket = await fileAppears(paths.qmpSocket, Math.max(1, deadline - Date.now()), proc.exited);
    if (socket === 'stopped') throw startupError('exited during startup', await proc.exited, proc.outputTail());
    if (socket === 'timeout') throw startupError(`did not create its QMP socket within ${timeoutMs} ms`, undefined, proc.outputTail());
    const connecting = QmpClient.connect(paths.qmpSocket, Math.max(1, deadline - Date.now()));
    connecting.catch(() => {}); // observed below, or superseded by QEMU's exit
    const first = await Promise.race([connecting.then((client) => ({ client })), proc.exited.then((exit) => ({ exit }))]);
    if ('exit' in first) {
      connecting.then(
        (c) => c.close(),
        () => {},
      );
      throw startupError('exited during startup', first.exit, proc.outputTail());
    }
    qmp = first.client;
  } catch (err) {
    qmp?.close();
    // A refused or dropped QMP connection usually means QEMU is dying: report its own words.
    if (!proc.hasExited) await proc.waitExit(200);
    const own = err instanceof TernError && startupErrors.has(err);
    const e =
      proc.hasExited && !own
        ? startupError('exited during startup', await proc.exited, proc.outputTail())
        : err instanceof Error
          ? err
          : new Error(String(err));
    return fail(e);
  }
  logger.info({ id, pid, accel: opts.accel }, 'qemu started');
  return new QemuVm({
    id,
    accel: opts.accel ?? 'tcg',
    runDir,
    proc,
    qmp,
    hotplugPorts: opts.hotplugPorts ?? [],
    diskSlots: opts.diskSlots,
    logger,
    unplugTimeoutMs: opts.unplugTimeoutMs,
    tapFdHelper: opts.tapFdHelper,
    statePath: opts.statePath,
  });
}
