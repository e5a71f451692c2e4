// The agent's end of the host channel: the virtio-serial port named
// "tern.agent" (found through /sys/class/virtio-ports/*/name; the vportNpM
// number depends on PCI order). Node cannot wrap a character device in a
// socket, so reads run on the thread pool with a blocking fd. When the host
// side disconnects (shim restart) the guest reads end-of-file: each host
// connection becomes one Duplex "session", and a new one begins as soon as
// data flows again.
import { open, read, write, readdirSync, readFileSync } from 'node:fs';
import { Duplex } from 'node:stream';

export function findPort(name: string, sysDir = '/sys/class/virtio-ports'): string {
  for (const entry of readdirSync(sysDir)) {
    try {
      if (readFileSync(`${sysDir}/${entry}/name`, 'utf8').trim() === name) return `/dev/${entry}`;
    } catch {
      /* port without a name */
    }
  }
  throw new Error(`virtio-serial port ${name} not found under ${sysDir}`);
}

function openAsync(path: string): Promise<number> {
  return new Promise((resolve, reject) => open(path, 'r+', (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** One host connection's worth of the port, as a Duplex. */
export class PortSession extends Duplex {
  /** When the last data from the host was read (performance.now()): when the bytes read last reached the agent. */
  lastDataAt = 0;
  constructor(private readonly fd: number) {
    super({ allowHalfOpen: false });
  }
  override _read(): void {
    /* data is pushed by the port's reader loop */
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const writeAll = (off: number): void => {
      write(this.fd, chunk, off, chunk.length - off, null, (err, n) => {
        if (err) return cb(err);
        if (off + n < chunk.length) return writeAll(off + n);
        cb();
      });
    };
    writeAll(0);
  }
}

/**
 * How often a port is read again while no host is connected. A virtio-serial
 * port cannot be waited on for the host to come: read and poll return at once
 * (end-of-file, POLLHUP) while it is away, so the reader sleeps between reads.
 * Each empty read waits `factor` times longer than the one before, up to
 * maxMs; data from the host starts again at firstMs.
 */
export interface IdleRetry {
  firstMs: number;
  maxMs: number;
  factor: number;
}

/** The agent's port: a shim or the pool connects on the start path, so the wait stays short. */
export const AGENT_PORT_RETRY: IdleRetry = { firstMs: 20, maxMs: 20, factor: 1 };
/**
 * The debug shell's port: a host connects only while someone runs `tern
 * debug-shell`, so an idle VM backs off to one read a second (reading every
 * 20 ms cost ~90 ms of host CPU per second under TCG).
 */
export const DEBUG_PORT_RETRY: IdleRetry = { firstMs: 20, maxMs: 1000, factor: 2 };
/** A failed read is retried after this long, whatever the policy. */
const READ_ERROR_RETRY_MS = 200;

/** The wait after an empty read that followed a wait of prevMs (undefined: the first empty read since data). */
export function nextIdleWait(retry: IdleRetry, prevMs: number | undefined): number {
  if (prevMs === undefined) return retry.firstMs;
  return Math.min(retry.maxMs, Math.max(retry.firstMs, Math.round(prevMs * retry.factor)));
}

const sleepMs = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Serves the port forever: calls onSession for every host connection. The
 * returned promise only settles if the port cannot be opened (or `sleep`
 * throws, which only tests do).
 */
export async function servePort(
  path: string,
  onSession: (s: PortSession) => void,
  log: (msg: string) => void,
  retry: IdleRetry = AGENT_PORT_RETRY,
  sleep: (ms: number) => Promise<void> = sleepMs,
): Promise<never> {
  const fd = await openAsync(path);
  const buf = Buffer.allocUnsafe(256 * 1024);
  let session: PortSession | undefined;
  let idleWait: number | undefined;
  for (;;) {
    const n = await new Promise<number>((resolve) =>
      read(fd, buf, 0, buf.length, null, (err, bytes) => {
        if (err) {
          log(`agent port read failed: ${err.message}`);
          resolve(-1);
        } else resolve(bytes);
      }),
    );
    if (n > 0) {
      idleWait = undefined;
      if (!session) {
        session = new PortSession(fd);
        onSession(session);
      }
      session.lastDataAt = performance.now();
      session.push(Buffer.from(buf.subarray(0, n)));
      continue;
    }
    // EOF: the host side is gone. End this session; wait for the next one.
    if (session) {
      session.push(null);
      session.destroy();
      session = undefined;
    }
    if (n < 0) {
      await sleep(READ_ERROR_RETRY_MS);
      continue;
    }
    idleWait = nextIdleWait(retry, idleWait);
    await sleep(idleWait);
  }
}
