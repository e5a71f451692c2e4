// Host-side stdio of one process: containerd's FIFOs on one side, the agent's
// stdio RPCs on the other. stdout/stderr: long-poll reads from the agent,
// written to the FIFO with back-pressure, FIFO closed at EOF (that is how ctr
// learns the output is complete). stdin: read from the FIFO,
// forwarded with WriteStdin, EOF forwarded with CloseStdin. Nothing here
// blocks a thread, so the shim can always exit. A FIFO whose reader stopped
// reading holds its copy back (back-pressure, as with runc) until close():
// then it gets OUTPUT_CLOSE_GRACE_MS to flush and is dropped, so no copy and
// no descriptor outlives the process's Delete.
import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Logger } from '../common/logging';
import type { AgentClient } from './agent-client';

const CHUNK = 64 * 1024;
/** After close(), how long an output FIFO may still take to flush to its reader before it is destroyed. */
export const OUTPUT_CLOSE_GRACE_MS = 1_000;

/** Resolves on the first of `events` on `sock` (or at once if it is destroyed); no listener is left behind. */
function once(sock: Socket, events: string[]): Promise<void> {
  if (sock.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      for (const e of events) sock.off(e, done);
      resolve();
    };
    for (const e of events) sock.on(e, done);
  });
}

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

function openWriter(path: string): Socket {
  // O_RDWR: never blocks for want of a reader and never EPIPEs if the client
  // goes away (as runc keeps an extra read handle); we close it at EOF.
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new Socket({ fd, readable: false, writable: true });
}

export class ProcessIO {
  private stdinSocket?: Socket;
  private closed = false;
  private readonly pumps: Promise<void>[] = [];
  /** Output FIFOs still open. */
  private readonly outputs = new Set<Socket>();

  constructor(
    private readonly paths: StdioPaths,
    private readonly agent: AgentClient,
    private readonly containerId: string,
    private readonly execId: string,
    private readonly log: Logger,
    private readonly closeGraceMs = OUTPUT_CLOSE_GRACE_MS,
  ) {}

  /** What the guest should set up for this process. */
  wanted(): { terminal: boolean; stdin: boolean; stdout: boolean; stderr: boolean } {
    return {
      terminal: this.paths.terminal,
      stdin: !!this.paths.stdin,
      stdout: !!this.paths.stdout,
      stderr: !!this.paths.stderr && !this.paths.terminal,
    };
  }

  /** Starts copying; call once the process exists in the guest. */
  start(): void {
    if (this.paths.stdout) this.pumps.push(this.pumpOut('stdout', this.paths.stdout));
    if (this.paths.stderr && !this.paths.terminal) this.pumps.push(this.pumpOut('stderr', this.paths.stderr));
    if (this.paths.stdin) this.openStdin(this.paths.stdin);
  }

  private async pumpOut(which: 'stdout' | 'stderr', path: string): Promise<void> {
    let sock: Socket;
    try {
      sock = openWriter(path);
    } catch (err) {
      this.log.error({ err: (err as Error).message, path }, `cannot open ${which} fifo`);
      return;
    }
    sock.on('error', (err) => this.log.warn({ err: err.message, which }, 'stdio fifo write failed'));
    this.outputs.add(sock);
    sock.once('close', () => this.outputs.delete(sock));
    if (this.closed) this.dropLater(sock);
    try {
      for (;;) {
        // A long poll: ends with the output (eof) or the agent channel.
        const { data, eof } = await this.agent.readStream(which, this.containerId, this.execId, CHUNK);
        if (data.length > 0 && !sock.destroyed) {
          // Back-pressure from the FIFO's reader; close() ends the wait.
          if (!sock.write(data)) await once(sock, ['drain', 'close']);
        }
        if (eof) break;
      }
    } catch (err) {
      if (!this.closed) this.log.warn({ err: (err as Error).message, which }, 'reading process output from the agent ended');
    } finally {
      // Flushed when the reader takes the rest; close() bounds that.
      const flushed = once(sock, ['finish', 'close']);
      sock.end();
      await flushed;
      sock.destroy();
    }
  }

  private openStdin(path: string): void {
    // Non-blocking read end: the open never waits for the client's writer,
    // and no end-of-file is seen until a writer has connected and gone
    // (a FIFO only reports hang-up after a writer came and left).
    let fd: number;
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, path }, 'cannot open stdin fifo');
      return;
    }
    const sock = new Socket({ fd, readable: true, writable: false });
    this.stdinSocket = sock;
    sock.on('data', (chunk: Buffer) => {
      sock.pause();
      this.agent
        .writeStdin(this.containerId, this.execId, chunk)
        .catch((e: Error) => this.log.warn({ err: e.message }, 'writing stdin to the guest failed'))
        .finally(() => {
          if (!sock.destroyed) sock.resume();
        });
    });
    // Writes are sequential (paused above), so EOF arrives after the last one.
    sock.on('end', () => {
      this.closeStdin().catch(() => undefined);
    });
    sock.on('error', (e) => this.log.warn({ err: e.message }, 'stdin fifo read failed'));
  }

  /** CloseIO{stdin}: EOF to the process's stdin. */
  async closeStdin(): Promise<void> {
    this.stdinSocket?.destroy();
    this.stdinSocket = undefined;
    await this.agent.closeStdin(this.containerId, this.execId);
  }

  /** Resolves when output streams reached EOF, or after the deadline. */
  async drained(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(this.pumps),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Stops stdin now and gives each output FIFO closeGraceMs to flush before it is destroyed. */
  close(): void {
    this.closed = true;
    this.stdinSocket?.destroy();
    for (const sock of this.outputs) this.dropLater(sock);
  }

  private dropLater(sock: Socket): void {
    const timer = setTimeout(() => sock.destroy(), this.closeGraceMs);
    timer.unref();
    sock.once('close', () => clearTimeout(timer));
  }
}
