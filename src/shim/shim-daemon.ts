// The shim process: one serves every pod that containerd starts with the same
// shim arguments and environment (one containerd, one namespace), each pod on
// a task socket of its own (serve.ts). A pod costs no Node start and no Node
// heap of its own; the process exits when its last pod is gone.
//
// The native launcher (helpers/tern-shim-launch.c) finds a running shim
// through its control socket, under a lock on the socket directory: it sends
// its `start` request (cwd, then its arguments, each NUL-terminated, then
// end-of-file) and prints the address this answers ("ok <address>" or
// "err <message>"). Without an answer (no shim, or one that is exiting) it
// starts a new shim process, which serves its pod and then listens on the
// control socket before it says "ok" on fd 3. A pod whose `start` went away
// before the answer reached it is torn down again.
import { createServer, type Server, type Socket } from 'node:net';
import { statSync, unlinkSync } from 'node:fs';
import { invalidArgument, messageOf } from '../common/errors';
import { createLogger } from '../common/logging';
import { parseArgs, type ShimArgs } from './args';
import { servePod, type PodHost, type ServedPod } from './serve';
import { canConnect } from './socket-probe';
import { runningShim } from './start-command';

/** The environment variable through which the launcher names the control socket to the process it starts. */
export const CONTROL_SOCKET_ENV = 'TERN_SHIM_CONTROL_SOCKET';

/** A request larger than this is refused (a real one is well under 4 KiB). */
const MAX_REQUEST_BYTES = 64 * 1024;

/** How long the process lingers after its last pod for its last lines to be written. */
const EXIT_DELAY_MS = 50;

/** cwd and argv of a launcher's request: NUL-terminated strings, cwd first. */
export function parseRequest(buf: Buffer): { cwd: string; argv: string[] } {
  const text = buf.toString('utf8');
  if (!text.endsWith('\0')) throw invalidArgument('shim request: not NUL-terminated');
  const [cwd, ...argv] = text.slice(0, -1).split('\0');
  if (!cwd || argv.length === 0) throw invalidArgument('shim request: no working directory or no arguments');
  return { cwd, argv };
}

/** What the shim process does beyond its bookkeeping (a unit test gives its own). */
export interface ShimDaemonDeps {
  /** Serves a pod (serve.ts servePod). */
  serve(args: ShimArgs, host: PodHost): Promise<ServedPod>;
  /** The address of the pod's shim when it runs already: a CRI container joining its pod (start-command.ts runningShim). */
  running(args: ShimArgs): Promise<string | undefined>;
  /** Ends the process: the last pod is gone. */
  exit(): void;
}

const processDeps: ShimDaemonDeps = {
  serve: servePod,
  running: runningShim,
  exit: () => setTimeout(() => process.exit(0), EXIT_DELAY_MS),
};

export class ShimDaemon {
  private readonly pods = new Set<ServedPod>();
  /** Requests read and not yet answered. */
  private pending = 0;
  private control?: { server: Server; ino: number };
  private exiting = false;

  /** controlSocket: where to take more pods; absent, the process serves its first pod only. */
  constructor(
    private readonly controlSocket?: string,
    private readonly deps: ShimDaemonDeps = processDeps,
  ) {}

  get podCount(): number {
    return this.pods.size;
  }

  /**
   * Serves the process's first pod, then takes more on the control socket (a
   * socket that cannot be listened on only costs the sharing). Resolves with
   * the pod's address; rejects (nothing served) when the pod cannot be.
   */
  async serveFirst(args: ShimArgs): Promise<string> {
    const startedAt = Date.now() - process.uptime() * 1000;
    const pod = await this.deps.serve(args, this.host(startedAt, 0));
    this.pods.add(pod);
    if (this.controlSocket) {
      try {
        this.control = await this.listenControl(this.controlSocket);
      } catch (err) {
        pod.log.warn({ err: messageOf(err), controlSocket: this.controlSocket }, 'control socket not listened on: this shim serves no other pod');
      }
    }
    return pod.address;
  }

  private host(requestedAt: number, requestedCpuMs: number): PodHost {
    return {
      controlSocket: this.controlSocket,
      requestedAt,
      requestedCpuMs,
      podCount: () => this.pods.size,
      gone: (pod) => {
        this.pods.delete(pod);
        this.exitIfIdle();
      },
    };
  }

  private async listenControl(path: string): Promise<{ server: Server; ino: number }> {
    const server = createServer({ allowHalfOpen: true }, (conn) => this.onRequest(conn));
    const listen = () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    try {
      await listen();
    } catch (err) {
      // A socket file whose shim died: nobody answers on it (the launcher, which holds the lock, removes it first).
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || (await canConnect(path, 1000))) throw err;
      unlinkSync(path);
      await listen();
    }
    server.on('error', () => undefined);
    return { server, ino: statSync(path).ino };
  }

  private onRequest(conn: Socket): void {
    if (this.exiting) {
      conn.destroy();
      return;
    }
    const requestedAt = Date.now();
    const u = process.cpuUsage();
    const requestedCpuMs = Math.round((u.user + u.system) / 1000);
    this.pending++;
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    let answering = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      this.pending--;
      this.exitIfIdle();
    };
    conn.on('error', () => undefined);
    // Gone before its request was complete: nothing to answer. Once answering, the answer settles it.
    conn.on('close', () => {
      if (!answering) settle();
    });
    conn.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_REQUEST_BYTES) conn.destroy();
      else chunks.push(d);
    });
    conn.on('end', () => {
      if (settled) return;
      answering = true;
      void this.answer(Buffer.concat(chunks), requestedAt, requestedCpuMs).then(({ word, pod }) => {
        // The launcher gave up (its deadline) or died: containerd never learns this pod's address.
        const abandoned = (err?: Error | null) => {
          if (err && pod) void pod.stop('its start went away before the answer');
        };
        if (conn.destroyed) abandoned(new Error('closed'));
        else conn.end(`${word}\n`, abandoned);
        settle();
      });
    });
  }

  private async answer(request: Buffer, requestedAt: number, requestedCpuMs: number): Promise<{ word: string; pod?: ServedPod }> {
    try {
      const { cwd, argv } = parseRequest(request);
      const args = parseArgs(argv, cwd);
      if (args.action !== 'start') throw invalidArgument(`shim request: action ${args.action}, want start`);
      const running = await this.deps.running(args);
      if (running !== undefined) return { word: `ok ${running}` };
      const pod = await this.deps.serve(args, this.host(requestedAt, requestedCpuMs));
      this.pods.add(pod);
      return { word: `ok ${pod.address}`, pod };
    } catch (err) {
      return { word: `err ${messageOf(err)}` };
    }
  }

  /** The last pod is gone and nobody is asking for another: the control socket goes (if still ours), then the process. */
  private exitIfIdle(): void {
    if (this.exiting || this.pods.size > 0 || this.pending > 0) return;
    this.exiting = true;
    if (this.control && this.controlSocket) {
      // Unlinked before the listener closes: a launcher from now on finds no socket and starts a new shim.
      try {
        if (statSync(this.controlSocket).ino === this.control.ino) unlinkSync(this.controlSocket);
      } catch {
        /* already gone */
      }
      this.control.server.close();
    }
    this.deps.exit();
  }

  /** Signals stop every pod; a fault anywhere is logged to every pod's log (all of them share the process). Once, by the process's owner. */
  watchProcess(): void {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) {
      process.on(sig, () => {
        for (const pod of this.pods) {
          pod.log.warn({ sig }, 'signal received: tearing the sandbox down');
          void pod.stop(`signal ${sig}`);
        }
        this.exitIfIdle();
      });
    }
    process.on('SIGPIPE', () => undefined);
    const report = (msg: string, err: string) => {
      if (this.pods.size === 0) createLogger({ name: 'containerd-shim-tern-v2', destination: { fd: 2, mode: 'drop-when-busy' } }).error({ err }, msg);
      for (const pod of this.pods) pod.log.error({ err }, msg);
    };
    process.on('uncaughtException', (err) => report('uncaught exception', String(err.stack ?? err)));
    process.on('unhandledRejection', (err) => report('unhandled rejection', String((err as Error)?.stack ?? err)));
  }
}
