// The shim daemon: listens on the task socket, serves containerd.task.v2.Task
// (and tern.shim.v1.Stats, for `tern metrics`) for one sandbox, publishes events, logs into the bundle's `log` FIFO and
// into shim.log in the sandbox directory, and exits after Shutdown. `start`
// waits on fd 3 for our "ok" (we are listening).
import { constants, existsSync, mkdirSync, openSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadConfig } from '../common/config';
import { BoundedLogFile } from '../common/bounded-log-file';
import { ensureDir } from '../common/dirs';
import { createLogger, type Logger } from '../common/logging';
import { registerService, type ServiceImpl } from '../common/proto-service';
import { createDriver } from '../hypervisor/index';
import { TtrpcServer } from '../ttrpc/server';
import type { ShimArgs } from './args';
import { leaveDeleteAnswer } from './delete';
import { EventPublisher } from './events';
import { besideScript, COW_GUARD_LIB, sandboxDir, shimLogPath, SOCKET_DIR_MODE, socketAddress, socketPath, TAPFD_HELPER } from './paths';
import { signalReady } from './ready-signal';
import { writeAddressFile } from './start-command';
import { Sandbox } from './sandbox';
import { readBundleSpec } from './bundle-spec';
import { registerStats } from './stats-service';
import { TaskService } from './task-service';
import { codeCacheState } from './code-cache';

const TASK = 'containerd.task.v2.Task' as const;

function openLog(bundle: string): number | undefined {
  const path = join(bundle, 'log');
  try {
    if (!statSync(path).isFIFO()) return undefined;
    // containerd opens the reading end before it starts us; non-blocking so a
    // slow or absent reader drops log lines instead of stalling the shim.
    return openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
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

export async function serve(args: ShimArgs): Promise<void> {
  const logFd = openLog(args.bundle);
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
    destination: { fd: logFd ?? openSync('/dev/null', 'w'), mode: 'drop-when-busy' },
    file: shimLog,
  }).child({ namespace: args.namespace, sandbox: group });

  const sock = socketPath(args.address, args.namespace, group);
  // tern-tapfd and the copy-on-write guard are built and installed beside the shim's script.
  const driver = createDriver(cfg.hypervisor.driver, log, { tapFdHelper: besideScript(TAPFD_HELPER), cowGuard: besideScript(COW_GUARD_LIB) });
  const sandbox = new Sandbox(args.namespace, group, dir, cfg, driver, log);
  sandbox.shimSocket = sock;
  // Nothing may write into the directory while it is removed (a rotation would recreate the file).
  if (shimLog) sandbox.beforeDirRemoval(() => shimLog.close());
  const events = new EventPublisher(process.env.TTRPC_ADDRESS, args.namespace, log);
  const server = new TtrpcServer();

  let exiting = false;
  const exit = async (code: number) => {
    if (exiting) return;
    exiting = true;
    // Before the connection closes (containerd runs `delete` at once): a sandbox torn down completely leaves its answer.
    if (!existsSync(dir)) leaveDeleteAnswer(args.bundle, log);
    await server.close().catch(() => undefined);
    try {
      unlinkSync(sock);
    } catch {
      /* already gone */
    }
    await events.close();
    log.info({ code }, 'shim exiting');
    setTimeout(() => process.exit(code), 50);
  };

  const svc = new TaskService(sandbox, cfg, events, log, () => void exit(0));
  registerTask(server, svc, log);
  registerStats(server, svc, log);
  try {
    // On a machine where no shim ran before, the socket directory does not exist yet.
    ensureDir(dirname(sock), SOCKET_DIR_MODE, 'shim socket');
    await server.listen(sock);
  } catch (err) {
    signalReady(`err cannot listen on ${sock}: ${(err as Error).message}`);
    process.exit(1);
  }
  if (shimLog) openShimLog(shimLog, dir);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      log.warn({ sig }, 'signal received: tearing the sandbox down');
      void sandbox.destroy(`signal ${sig}`).finally(() => void exit(0));
    });
  }
  process.on('SIGPIPE', () => undefined);
  process.on('uncaughtException', (err) => log.error({ err: err.stack }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err: String((err as Error)?.stack ?? err) }, 'unhandled rejection'));
  const u = process.cpuUsage();
  // When this process began and its CPU so far: the first rows of make bench's phase table.
  const startedAt = new Date(Date.now() - process.uptime() * 1000).toISOString();
  log.info(
    { socket: sock, shimLog: shimLog?.path, startedAt, cpu: { shimMs: Math.round((u.user + u.system) / 1000) }, codeCache: codeCacheState() },
    'shim serving',
  );
  // containerd reads the address from the bundle too.
  writeAddressFile(args.bundle, socketAddress(sock));
  signalReady(`ok ${socketAddress(sock)}`);
}
