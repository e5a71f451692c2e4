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
class PortSession extends Duplex {
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
 * Serves the port forever: calls onSession for every host connection. The
 * returned promise only settles if the port cannot be opened.
 */
export async function servePort(path: string, onSession: (s: Duplex) => void, log: (msg: string) => void): Promise<never> {
  const fd = await openAsync(path);
  const buf = Buffer.allocUnsafe(256 * 1024);
  let session: PortSession | undefined;
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
      if (!session) {
        session = new PortSession(fd);
        onSession(session);
      }
      session.push(Buffer.from(buf.subarray(0, n)));
      continue;
    }
    // EOF: the host side is gone. End this session; wait for the next one.
    if (session) {
      session.push(null);
      session.destroy();
      session = undefined;
    }
    await new Promise((r) => setTimeout(r, n < 0 ? 200 : 20));
  }
}
