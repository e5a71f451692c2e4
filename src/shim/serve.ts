// One pod served: its task socket with containerd.task.v2.Task (and
// tern.shim.v1.Stats, for `tern metrics`) for one sandbox, its events, its
// lines into the bundle's `log` FIFO and into shim.log in the sandbox
// directory. A shim process serves many pods this way (shim-daemon.ts); each
// pod's server closes after its Shutdown and leaves nothing open behind it.
import { constants, existsSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadConfig } from '../common/config';
import { BoundedLogFile } from '../common/bounded-log-file';
import { ensureDir } from '../common/dirs';
import { createLogger, DropWhenBusySink, type Logger } from '../common/logging';
import { registerService, type ServiceImpl } from '../common/proto-service';
import { createDriver } from '../hypervisor/index';
import { TtrpcServer } from '../ttrpc/server';
import type { ShimArgs } from './args';
import { leaveDeleteAnswer } from './delete';
import { EventPublisher } from './events';
import { besideScript, COW_GUARD_LIB, sandboxDir, shimLogPath, SOCKET_DIR_MODE, socketAddress, socketPath, TAPFD_HELPER } from './paths';
import { writeAddressFile } from './start-command';
import { Sandbox } from './sandbox';
import { readBundleSpec } from './bundle-spec';
import { registerStats } from './stats-service';
import { TaskService } from './task-service';
import { codeCacheState } from './code-cache';

const TASK = 'containerd.task.v2.Task' as const;

/**
 * The bundle's `log` FIFO: containerd opens its reading end before it starts
 * the shim; opened non-blocking, so a slow or absent reader drops log lines
 * instead of stalling the shim. No FIFO: lines go only to shim.log.
 */
function openLogFifo(bundle: string): DropWhenBusySink {
  const path = join(bundle, 'log');
  try {
    if (statSync(path).isFIFO()) return new DropWhenBusySink(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    /* no FIFO */
  }
  return new DropWhenBusySink(undefined);
}

/** Begins writing shim.log; a directory or file that cannot be made only costs the file. */
function openShimLog(file: BoundedLogFile, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch {
    /* open() fails below and the file stays closed */
  }
  file.open();
}

/** The Task service (containerd.task.v2.Task) served by `svc`, one method each; every call's time is logged at debug. */
export function registerTask(server: TtrpcServer, svc: TaskService, log: Logger): void {
  const task: ServiceImpl<typeof TASK> = {
    Create: (r) => svc.create(r),
    Start: (r) => svc.start(r.id, r.exec_id),
    Delete: (r) => svc.delete(r.id, r.exec_id),
    Pids: (r) => svc.pids(r.id),
    Pause: (r) => svc.pause(r.id),
    Resume: (r) => svc.resume(r.id),
    Checkpoint: () => svc.notImplemented('Checkpoint'),
    Kill: (r) => svc.kill(r.id, r.exec_id, r.signal, r.all),
    Exec: (r) => svc.exec(r.id, r.exec_id, { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal }, r.spec),
    ResizePty: (r) => svc.resizePty(r.id, r.exec_id, r.width, r.height),
    CloseIO: (r) => svc.closeIO(r.id, r.exec_id, r.stdin),
    Update: (r) => svc.update(r.id, r.resources),
    Wait: (r) => svc.wait(r.id, r.exec_id),
    Stats: (r) => svc.stats(r.id),
    Connect: (r) => svc.connect(r.id),
    Shutdown: () => svc.shutdown(),
    State: (r) => svc.state(r.id, r.exec_id),
  };
  registerService(server, TASK, task, async (method, run) => {
    const started = performance.now();
    try {
      return await run();
    } finally {
      log.debug({ method, ms: Math.round(performance.now() - started) }, 'task rpc');
    }
  });
}

/** What the shim process tells a pod it serves, and hears back from it. */
export interface PodHost {
  /** The shim's control socket, when it takes more pods (recorded so `delete` after a dead shim removes it). */
  controlSocket?: string;
  /** When this pod's `start` reached the shim process (ms since the epoch): the first row of make bench's phase table. */
  requestedAt: number;
  /** The process's CPU (ms) by then: 0 for its first pod. */
  requestedCpuMs: number;
  /** How many pods the process serves, this one included (for the log). */
  podCount(): number;
  /** The pod's server has closed (after its Shutdown, or stop()): nothing of it is left open. */
  gone(pod: ServedPod): void;
}

export interface ServedPod {
  /** The task socket's path. */
  readonly socket: string;
  readonly address: string;
  readonly log: Logger;
  /** Tears the sandbox down and closes its server (the shim was told to stop). */
  stop(reason: string): Promise<void>;
}

/**
 * Serves the pod of `args` (the shim's `start` arguments, cwd the bundle):
 * listens on its task socket and writes <bundle>/address. Fails (nothing left
 * open) when the socket cannot be listened on.
 */
export async function servePod(args: ShimArgs, host: PodHost): Promise<ServedPod> {
  const fifo = openLogFifo(args.bundle);
  const cfg = loadConfig();
  const spec = readBundleSpec(args.bundle);
  const group = spec.groupId(args.id);
  const dir = sandboxDir(cfg.runtime.stateDir, args.namespace, group);
  // The same lines, bounded, in the sandbox directory; opened once this shim
  // owns the sandbox's socket (until then another shim may own the directory).
  const shimLog = cfg.runtime.shimLogMaxKiB > 0 ? new BoundedLogFile(shimLogPath(dir), cfg.runtime.shimLogMaxKiB * 1024) : undefined;
  // Every line names the sandbox; lines about one container add `container`.
  const log = createLogger({
    name: 'containerd-shim-tern-v2',
    level: args.debug ? 'debug' : cfg.runtime.logLevel,
    stream: fifo,
    file: shimLog,
  }).child({ namespace: args.namespace, sandbox: group });

  const sock = socketPath(args.address, args.namespace, group);
  // tern-tapfd and the copy-on-write guard are built and installed beside the shim's script.
  const driver = createDriver(cfg.hypervisor.driver, log, { tapFdHelper: besideScript(TAPFD_HELPER), cowGuard: besideScript(COW_GUARD_LIB) });
  const sandbox = new Sandbox(args.namespace, group, dir, cfg, driver, log);
  sandbox.shimSocket = sock;
  sandbox.controlSocket = host.controlSocket;
  // Nothing may write into the directory while it is removed (a rotation would recreate the file).
  if (shimLog) sandbox.beforeDirRemoval(() => shimLog.close());
  const events = new EventPublisher(process.env.TTRPC_ADDRESS, args.namespace, log);
  const server = new TtrpcServer();

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      // Before the connection closes (containerd runs `delete` at once): a sandbox torn down completely leaves its answer.
      if (!existsSync(dir)) leaveDeleteAnswer(args.bundle, log);
      await server.close().catch(() => undefined);
      try {
        unlinkSync(sock);
      } catch {
        /* already gone */
      }
      await events.close();
      log.info({}, 'shim exiting');
      shimLog?.close();
      fifo.close();
      host.gone(pod);
    })());

  const pod: ServedPod = {
    socket: sock,
    address: socketAddress(sock),
    log,
    stop: (reason) => sandbox.destroy(reason).finally(close),
  };
  const svc = new TaskService(sandbox, cfg, events, log, () => void close());
  registerTask(server, svc, log);
  registerStats(server, svc, log);
  try {
    // On a machine where no shim ran before, the socket directory does not exist yet.
    ensureDir(dirname(sock), SOCKET_DIR_MODE, 'shim socket');
    await server.listen(sock);
  } catch (err) {
    await server.close().catch(() => undefined);
    await events.close();
    fifo.close();
    throw new Error(`cannot listen on ${sock}: ${(err as Error).message}`);
  }
  if (shimLog) openShimLog(shimLog, dir);
  const u = process.cpuUsage();
  log.info(
    {
      socket: sock,
      shimLog: shimLog?.path,
      // When this pod's start reached the process, and the process's CPU so far: the first rows of make bench's phase table.
      startedAt: new Date(host.requestedAt).toISOString(),
      startedCpu: { shimMs: host.requestedCpuMs },
      cpu: { shimMs: Math.round((u.user + u.system) / 1000) },
      pods: host.podCount() + 1,
      codeCache: codeCacheState(),
    },
    'shim serving',
  );
  // containerd reads the address from the bundle too.
  writeAddressFile(args.bundle, pod.address);
  return pod;
}
