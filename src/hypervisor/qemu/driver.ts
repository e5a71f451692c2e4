// The QEMU hypervisor driver: checks the inputs, picks KVM or TCG, builds the
// argv, launches QEMU and hands back a QemuVm; cleanupFromDisk kills a VM a dead
// shim left behind, after checking the pid really is that VM's QEMU.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { TernError, invalidArgument } from '../../common/errors.js';
import { detectAccel, HOST_ACCEL_PATHS, type AccelProbePaths } from '../accel.js';
import { TemplateRestoreError, type HypervisorDriver, type VmSpec } from '../hypervisor.js';
import { noopLogSink, type LogSink } from '../../common/log-sink.js';
import { buildQemuArgs, DEFAULT_BINARY, DEFAULT_HOTPLUG_SLOTS, diskSlots, hotplugPortIds, hotplugSlotCount, qemuPaths } from './cmdline.js';
import { DEFAULT_START_TIMEOUT_MS, launchQemu } from './launch.js';
import { QemuVm } from './vm.js';
import { QmpClient } from './qmp.js';
import { AdoptedQemuProcess } from './adopted-process.js';
import { isQemuOfRunDir, ownedFiles, procAlive, readPidFile, readVmState, removeFiles } from './vm-state.js';

const KILL_WAIT_MS = 5_000;

export interface QemuDriverOptions {
  logger?: LogSink;
  /** Deadline for QEMU to start and answer on QMP (default 10 s). */
  startTimeoutMs?: number;
  /** Host paths for KVM detection (tests). */
  accelProbePaths?: AccelProbePaths;
  /** The tern-tapfd helper: NICs whose tap lives in another network namespace than QEMU. */
  tapFdHelper?: string;
  /**
   * The copy-on-write guard (helpers/tern-cow-guard.c), preloaded into a
   * clone's QEMU: without it free page reporting would punch holes into the
   * template's memory file. A clone is refused when it is not there.
   */
  cowGuard?: string;
}

/** What a clone's QEMU needs in its environment so that discarding its RAM never writes through to the template's file. */
export function cowGuardEnv(guard: string, memoryPath: string): Record<string, string> {
  return { LD_PRELOAD: guard, TERN_COW_GUARD_FILE: memoryPath };
}

/** Resolves a binary name on PATH (or checks an explicit path); FailedPrecondition if absent. */
export function resolveBinary(binary: string, envPath = process.env.PATH ?? ''): string {
  const candidates = binary.includes('/')
    ? [binary]
    : envPath
        .split(':')
        .filter((d) => d !== '')
        .map((d) => path.join(d, binary));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return c;
    } catch {
      // try the next one
    }
  }
  throw new TernError(
    'FailedPrecondition',
    binary.includes('/') ? `qemu binary ${binary} does not exist or is not executable` : `qemu binary ${binary} not found on PATH`,
  );
}

function requireFile(what: string, file: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new TernError('FailedPrecondition', `${what} ${file} does not exist`);
  }
  if (!st.isFile() && !st.isBlockDevice()) throw new TernError('FailedPrecondition', `${what} ${file} is not a file`);
}

/** Opens a clone's template state file for QEMU to inherit (migration STATE_FD). */
function openStateFile(statePath: string): number {
  try {
    return fs.openSync(statePath, 'r');
  } catch (err) {
    throw new TernError('FailedPrecondition', `template state ${statePath}: ${(err as Error).message}`);
  }
}

function validateSpec(spec: VmSpec): void {
  if (!spec.id) throw invalidArgument('VmSpec.id is empty');
  if (!path.isAbsolute(spec.runDir)) throw invalidArgument(`VmSpec.runDir ${spec.runDir} is not an absolute path`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw invalidArgument(`VmSpec.vcpus ${spec.vcpus}: want an integer >= 1`);
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 64) {
    throw invalidArgument(`VmSpec.memoryMiB ${spec.memoryMiB}: want an integer >= 64`);
  }
  const slots = spec.hotplugSlots ?? DEFAULT_HOTPLUG_SLOTS;
  if (!Number.isInteger(slots) || slots < 0 || slots > 32) {
    throw invalidArgument(`VmSpec.hotplugSlots ${slots}: want an integer 0..32`);
  }
  if (spec.runAs) {
    const { uid, gid } = spec.runAs;
    if (!Number.isSafeInteger(uid) || uid <= 0 || !Number.isSafeInteger(gid) || gid < 0) {
      throw invalidArgument(`VmSpec.runAs ${uid}:${gid}: want a uid above 0 and a gid of 0 or more`);
    }
  }
}

export class QemuDriver implements HypervisorDriver {
  readonly name = 'qemu';
  private readonly logger: LogSink;
  private readonly startTimeoutMs: number;
  private readonly accelProbePaths: AccelProbePaths;
  private readonly tapFdHelper?: string;
  private readonly cowGuard?: string;

  constructor(opts: QemuDriverOptions = {}) {
    this.tapFdHelper = opts.tapFdHelper;
    this.cowGuard = opts.cowGuard;
    this.logger = opts.logger ?? noopLogSink;
    this.startTimeoutMs = opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    this.accelProbePaths = opts.accelProbePaths ?? HOST_ACCEL_PATHS;
  }

  async start(spec: VmSpec): Promise<QemuVm> {
    validateSpec(spec);
    const binary = resolveBinary(spec.binary ?? DEFAULT_BINARY);
    requireFile('guest kernel', spec.kernelPath);
    requireFile('guest initrd', spec.initrdPath);
    requireFile('guest image', spec.guestImagePath);
    if (spec.netnsPath) requireFile('network namespace', spec.netnsPath);
    if (!fs.existsSync(spec.runDir) || !fs.statSync(spec.runDir).isDirectory()) {
      throw new TernError('FailedPrecondition', `VM run directory ${spec.runDir} does not exist`);
    }
    if (spec.sharedDir !== undefined) {
      if (!path.isAbsolute(spec.sharedDir)) throw invalidArgument(`VmSpec.sharedDir ${spec.sharedDir} is not an absolute path`);
      if (!fs.existsSync(spec.sharedDir) || !fs.statSync(spec.sharedDir).isDirectory()) {
        throw new TernError('FailedPrecondition', `shared directory ${spec.sharedDir} does not exist`);
      }
    }
    if (spec.template) {
      if (spec.sharedDir === undefined) throw invalidArgument('a template or clone VM needs VmSpec.sharedDir (its 9p device is part of the layout)');
      if (spec.template.role === 'clone') {
        requireFile('template memory', spec.template.memoryPath);
        requireFile('template state', spec.template.statePath);
        if (this.cowGuard === undefined)
          throw new TernError('FailedPrecondition', 'no copy-on-write guard (tern-cow-guard.so) configured: a clone is not started');
        requireFile('copy-on-write guard', this.cowGuard);
      }
    }
    const decision = detectAccel(spec.accel, this.accelProbePaths);
    this.logger.info({ id: spec.id, accel: decision.accel, reason: decision.reason }, 'hypervisor acceleration chosen');
    const args = buildQemuArgs(spec, qemuPaths(spec.runDir), decision.accel);
    const stateFd = spec.template?.role === 'clone' ? openStateFile(spec.template.statePath) : undefined;
    let vm: QemuVm;
    try {
      vm = await launchQemu(args, spec.runDir, {
        binary,
        id: spec.id,
        accel: decision.accel,
        hotplugPorts: hotplugPortIds(hotplugSlotCount(spec)),
        diskSlots: diskSlots(spec),
        logger: this.logger,
        startTimeoutMs: this.startTimeoutMs,
        netnsPath: spec.netnsPath,
        onSpawn: spec.onSpawn,
        outputFile: spec.handover ? qemuPaths(spec.runDir).outputLog : undefined,
        tapFdHelper: this.tapFdHelper,
        statePath: spec.template?.statePath,
        stateFd,
        env: spec.template?.role === 'clone' && this.cowGuard ? cowGuardEnv(this.cowGuard, spec.template.memoryPath) : undefined,
      });
    } finally {
      // QEMU has its own copy now (or never will).
      if (stateFd !== undefined) fs.closeSync(stateFd);
    }
    if (spec.template?.role !== 'clone') return vm;
    try {
      try {
        await vm.restoreTemplate();
      } catch (err) {
        const timedOut = err instanceof TernError && err.code === 'DeadlineExceeded';
        throw timedOut ? err : new TemplateRestoreError((err as Error).message, { cause: err });
      }
      // The template layout has no NICs: the clone's own are hot-plugged. A
      // QEMU that dropped to runAs may not open /dev/net/tun: the tap is
      // opened for it (tern-tapfd) and handed over.
      for (const nic of spec.nics ?? []) await vm.attachNic(nic, spec.runAs ? spec.netnsPath : undefined);
    } catch (err) {
      await vm.cleanup().catch((e: Error) => this.logger.error({ id: spec.id, err: e.message }, 'cleanup of a failed clone'));
      throw err;
    }
    return vm;
  }

  async adopt(spec: VmSpec): Promise<QemuVm> {
    validateSpec(spec);
    const state = readVmState(spec.runDir);
    if (!state || state.procStartTime === null) throw new TernError('FailedPrecondition', `no running VM recorded in ${spec.runDir}`);
    if (!isQemuOfRunDir(state.pid, spec.runDir, state.procStartTime)) {
      throw new TernError('FailedPrecondition', `the VM recorded in ${spec.runDir} (qemu pid ${state.pid}) is not running`);
    }
    const paths = qemuPaths(spec.runDir);
    const qmp = await QmpClient.connect(paths.qmpSocket, this.startTimeoutMs);
    const decision = detectAccel(spec.accel, this.accelProbePaths);
    this.logger.info({ id: spec.id, pid: state.pid, accel: decision.accel }, 'qemu adopted');
    return new QemuVm({
      id: spec.id,
      accel: decision.accel,
      runDir: spec.runDir,
      proc: new AdoptedQemuProcess(state.pid, state.procStartTime, qmp, paths.outputLog),
      qmp,
      hotplugPorts: hotplugPortIds(hotplugSlotCount(spec)),
      diskSlots: diskSlots(spec),
      logger: this.logger,
      tapFdHelper: this.tapFdHelper,
    });
  }

  processOnDisk(runDir: string): { pid: number | null; running: boolean } {
    const state = readVmState(runDir);
    const pid = readPidFile(runDir) ?? state?.pid ?? null;
    const running = pid !== null && procAlive(pid) && isQemuOfRunDir(pid, runDir, state?.pid === pid ? state.procStartTime : null);
    return { pid, running };
  }

  async cleanupFromDisk(runDir: string): Promise<void> {
    const state = readVmState(runDir);
    const pid = state?.pid ?? readPidFile(runDir);
    if (pid !== null) {
      if (isQemuOfRunDir(pid, runDir, state?.procStartTime ?? null)) {
        this.logger.warn({ runDir, pid }, 'killing qemu left behind');
        try {
          process.kill(pid, 'SIGKILL');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
        const deadline = Date.now() + KILL_WAIT_MS;
        while (procAlive(pid)) {
          if (Date.now() >= deadline) {
            throw new TernError('DeadlineExceeded', `qemu pid ${pid} still running ${KILL_WAIT_MS} ms after SIGKILL`);
          }
          await sleep(20);
        }
      } else if (procAlive(pid)) {
        this.logger.warn({ runDir, pid }, "pid on disk is not this VM's qemu any more: not killing it");
      }
    }
    removeFiles(runDir, [...ownedFiles(runDir), ...(state?.files ?? [])]);
  }
}
