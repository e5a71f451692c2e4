// Runs a short-lived helper (mount, umount, ip, mkfs.erofs, tern-tapfd) under
// a deadline that holds whatever the helper does. execFile's own timeout is
// not enough: it signals the child but reports only once the child's output
// pipes close, which a grandchild that inherited them (or a child stuck in
// the kernel) can put off forever. Here the child is killed with SIGKILL at
// the deadline, its pipes are destroyed, and the call rejects at once with
// DeadlineExceeded; an ordinary failure rejects with Internal and stderr.
import { spawn } from 'node:child_process';
import { TernError } from './errors';

/** Bytes of stderr kept for the error message. */
const STDERR_TAIL_BYTES = 4096;

export interface RunOptions {
  /** Deadline for the helper to exit. */
  timeoutMs: number;
  /** Bytes of stdout kept (default 4 MiB); more is dropped. */
  maxStdoutBytes?: number;
}

/** Runs `cmd args`; resolves with its stdout when it exits 0 within the deadline. */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions): Promise<string> {
  const maxStdout = opts.maxStdoutBytes ?? 4 << 20;
  const what = [cmd, ...args].join(' ');
  return new Promise<string>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let stderr = '';
    let settled = false;
    child.stdout.on('data', (d: Buffer) => {
      if (outBytes >= maxStdout) return;
      out.push(d);
      outBytes += d.length;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-STDERR_TAIL_BYTES);
    });
    const finish = (err?: TernError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(Buffer.concat(out).toString('utf8'));
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      // Whoever else holds the pipes must not hold us: stop reading them.
      child.stdout.destroy();
      child.stderr.destroy();
      finish(new TernError('DeadlineExceeded', `${what} did not finish within ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
    child.once('error', (err) => finish(new TernError('Internal', `cannot run ${cmd}: ${err.message}`, { cause: err })));
    // 'close' (the pipes too) normally follows 'exit' at once; the output read by then is complete.
    child.once('close', (code, signal) => {
      if (code === 0) finish();
      else finish(new TernError('Internal', `${what}: ${stderr.trim() || (signal ? `killed by ${signal}` : `exit status ${code}`)}`));
    });
  });
}
