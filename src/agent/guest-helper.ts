// The agent's privileged helper: tern-vmfork --serve, started once at the
// agent's boot and kept running, so that a template's clones resume with it
// (starting a process from the agent is its most expensive step under TCG:
// ~0.2 s for the first one after a restore). It does what Node cannot:
// adopt a clone's identity (CRNG reseed, clock, hostname, 9p share) and
// mount/umount. One request at a time, a line each way (tern-vmfork.c).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { deadlineExceeded, internal, invalidArgument } from '../common/errors';
import type { Mounter } from './container/rootfs';

export const VMFORK_PATH = '/opt/tern/sbin/tern-vmfork';
/** A request's deadline (a 9p mount may wait for its device up to its own timeout). */
const REQUEST_TIMEOUT_MS = 20_000;

export class GuestHelper {
  private child?: ChildProcessWithoutNullStreams;
  private buffered = '';
  private waiting?: (line: string | Error) => void;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly path = VMFORK_PATH) {}

  /** Starts the helper now (at the agent's boot), rather than at its first request. */
  start(): void {
    if (this.child) return;
    const child = spawn(this.path, ['--serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      this.buffered += d;
      const nl = this.buffered.indexOf('\n');
      if (nl < 0) return;
      const line = this.buffered.slice(0, nl);
      this.buffered = this.buffered.slice(nl + 1);
      this.settle(line);
    });
    child.stderr.resume();
    const gone = (why: string) => {
      if (this.child !== child) return;
      this.child = undefined;
      this.buffered = '';
      this.settle(internal(`${this.path} --serve ${why}`));
    };
    child.once('error', (err) => gone(`cannot run: ${err.message}`));
    child.once('exit', (code, signal) => gone(`exited (${signal ?? `exit ${code}`})`));
    child.stdin.on('error', () => undefined);
  }

  private settle(r: string | Error): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.(r);
  }

  /** Runs one request; rejects Internal with the helper's "<step>: <reason>". */
  request(fields: string[], timeoutMs = REQUEST_TIMEOUT_MS): Promise<void> {
    const bad = fields.find((f) => f === '' || /[\t\n]/.test(f));
    if (bad !== undefined) return Promise.reject(invalidArgument(`helper request ${fields[0]}: field ${JSON.stringify(bad)} is empty or has a tab or newline`));
    const run = this.queue.then(() => this.send(fields, timeoutMs));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private send(fields: string[], timeoutMs: number): Promise<void> {
    this.start();
    const child = this.child!;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        // A helper that does not answer is replaced: the next request starts another.
        child.kill('SIGKILL');
        reject(deadlineExceeded(`helper request ${fields[0]} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else if (r === 'ok') resolve();
        else reject(internal(`tern-vmfork: ${r.replace(/^err /, '')}`));
      };
      child.stdin.write(`${fields.join('\t')}\n`);
    });
  }

  /** Ends the helper (its end of input). */
  stop(): void {
    this.child?.stdin.end();
    this.child = undefined;
  }
}

/** Mounts through the helper: mount(2) and umount2(2), no process per mount. */
export function helperMounter(helper: GuestHelper): Mounter {
  return {
    mount: (source, target, fsType, { readOnly, data }) => helper.request(['mount', source, target, fsType, readOnly ? 'ro' : 'rw', data || '-']),
    umount: (target, opts) => helper.request(['umount', target, opts?.lazy ? 'lazy' : 'now']),
    remount: (target, { readOnly, data }) => helper.request(['remount', target, readOnly ? 'ro' : 'rw', data || '-']),
    move: (source, target) => helper.request(['move', source, target]),
    flushBuffers: (device) => helper.request(['flushbufs', device]),
  };
}
