// OOM events: watches each container cgroup's memory.events and queues the
// container id whenever its oom_kill counter goes up. The kernel notifies
// inotify watchers of memory.events on every change, so fs.watch is used;
// only when watching fails does a container fall back to re-reading the file
// every pollIntervalMs. next() is a long poll for the GetOOMEvent RPC: each
// event goes to one caller, several callers may wait, the queue is bounded.
import { promises as fs, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { TernError } from '../../common/errors.js';
import { parseFlatKeyed } from './cgroup-stats.js';

export interface OomWatcherLog {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface OomWatcherOptions {
  /** Re-read interval when fs.watch cannot be used (ms). */
  pollIntervalMs?: number;
  /** Events kept while nobody polls; the oldest is dropped beyond this. */
  queueLimit?: number;
  log?: OomWatcherLog;
}

interface Watched {
  id: string;
  file: string;
  last: number;
  watcher?: FSWatcher;
  timer?: NodeJS.Timeout;
  reading?: Promise<void>;
  again: boolean;
  closed: boolean;
}

interface Waiter {
  resolve: (id: string) => void;
  reject: (err: Error) => void;
}

/** The oom_kill count in memory.events text, or undefined when absent (e.g. a partial read). */
export function oomKillCount(text: string): number | undefined {
  return parseFlatKeyed(text).get('oom_kill');
}

export class OomWatcher {
  private readonly pollIntervalMs: number;
  private readonly queueLimit: number;
  private readonly watched = new Map<string, Watched>();
  private readonly queue: string[] = [];
  private readonly waiters: Waiter[] = [];
  private closed = false;

  constructor(private readonly opts: OomWatcherOptions = {}) {
    this.pollIntervalMs = opts.pollIntervalMs ?? 3000;
    this.queueLimit = opts.queueLimit ?? 256;
  }

  /** Containers being watched, with how: 'watch' (inotify) or 'poll'. */
  get modes(): Map<string, 'watch' | 'poll'> {
    return new Map([...this.watched.values()].map((w) => [w.id, w.watcher ? 'watch' : 'poll']));
  }

  /** Pending events not yet taken by next(). */
  get pending(): number {
    return this.queue.length;
  }

  /** Start watching <cgroupDir>/memory.events for container `id`; the current count is the baseline. */
  async add(id: string, cgroupDir: string): Promise<void> {
    if (this.closed) throw new TernError('Unavailable', 'OOM watcher is closed');
    if (this.watched.has(id)) throw new TernError('AlreadyExists', `OOM watch for container ${id}: already exists`);
    const file = path.join(cgroupDir, 'memory.events');
    const w: Watched = { id, file, last: 0, again: false, closed: false };
    this.watched.set(id, w);
    w.last = oomKillCount(await fs.readFile(file, 'utf8').catch(() => '')) ?? 0;
    if (w.closed) return;
    try {
      w.watcher = watch(file, { persistent: false }, () => this.check(w));
      w.watcher.on('error', (err) => {
        this.opts.log?.warn({ container: id, err: String(err) }, 'memory.events watch failed; re-reading it periodically');
        w.watcher?.close();
        w.watcher = undefined;
        this.startPolling(w);
      });
    } catch (err) {
      this.opts.log?.debug({ container: id, file, err: String(err) }, 'cannot watch memory.events; re-reading it periodically');
      this.startPolling(w);
    }
    // a change between the baseline read and the watch being set up
    this.check(w);
  }

  /** Stop watching `id` after a last look at its counter (events already queued stay). */
  async remove(id: string): Promise<void> {
    const w = this.watched.get(id);
    if (!w) return;
    this.check(w);
    await w.reading;
    this.stop(w);
    this.watched.delete(id);
  }

  /** The next OOM event's container id; waits until there is one or `signal` aborts. */
  next(signal?: AbortSignal): Promise<string> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new TernError('Unavailable', 'OOM watcher is closed'));
    if (signal?.aborted) return Promise.reject(new TernError('Canceled', 'GetOOMEvent canceled'));
    return new Promise<string>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new TernError('Canceled', 'GetOOMEvent canceled'));
      };
      const waiter: Waiter = {
        resolve: (id) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(id);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Stop every watch and fail pending next() calls with Unavailable. Idempotent. */
  close(): void {
    this.closed = true;
    for (const w of this.watched.values()) this.stop(w);
    this.watched.clear();
    for (const waiter of this.waiters.splice(0)) waiter.reject(new TernError('Unavailable', 'OOM watcher is closed'));
  }

  private stop(w: Watched): void {
    w.closed = true;
    w.watcher?.close();
    w.watcher = undefined;
    if (w.timer) clearInterval(w.timer);
    w.timer = undefined;
  }

  private startPolling(w: Watched): void {
    if (w.closed || w.timer) return;
    w.timer = setInterval(() => this.check(w), this.pollIntervalMs);
    w.timer.unref();
  }

  /** Re-read the counter (coalescing bursts of notifications into one read at a time). */
  private check(w: Watched): void {
    if (w.closed) return;
    if (w.reading) {
      w.again = true;
      return;
    }
    w.reading = (async () => {
      do {
        w.again = false;
        const text = await fs.readFile(w.file, 'utf8').catch(() => undefined);
        const count = text === undefined ? undefined : oomKillCount(text);
        if (count === undefined || w.closed) continue;
        if (count > w.last) this.emit(w.id);
        w.last = count;
      } while (w.again && !w.closed);
    })().finally(() => {
      w.reading = undefined;
    });
  }

  private emit(id: string): void {
    this.opts.log?.debug({ container: id }, 'OOM kill in container');
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve(id);
      return;
    }
    this.queue.push(id);
    if (this.queue.length > this.queueLimit) {
      const dropped = this.queue.shift();
      this.opts.log?.warn({ container: dropped, limit: this.queueLimit }, 'OOM event queue full; oldest event dropped');
    }
  }
}
