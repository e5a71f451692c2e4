// OOM events from memory.events: an oom_kill increase in a scratch file is
// seen through fs.watch (or the polling fallback), delivered once, to one of
// several waiting callers; the queue is bounded; aborted callers give up.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { OomWatcher, oomKillCount } from '../../../../src/agent/container/oom-watcher.js';
import { tempDir } from './fixtures.js';

const scratch = tempDir('tern-oom-');
const watchers: OomWatcher[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let seq = 0;
const events = (oomKill: number) => `low 0\nhigh 0\nmax 3\noom 1\noom_kill ${oomKill}\noom_group_kill 0\n`;
function cgroupDir(oomKill?: number): string {
  const dir = path.join(scratch, `cg${++seq}`);
  mkdirSync(dir);
  if (oomKill !== undefined) writeFileSync(path.join(dir, 'memory.events'), events(oomKill));
  return dir;
}
function watcher(opts: ConstructorParameters<typeof OomWatcher>[0] = {}): OomWatcher {
  const w = new OomWatcher(opts);
  watchers.push(w);
  return w;
}
const within = <T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> =>
  Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref())]);

describe('OomWatcher', () => {
  it('parses oom_kill, and nothing from a partial read', () => {
    expect(oomKillCount(events(4))).toBe(4);
    expect(oomKillCount('')).toBeUndefined();
  });

  it('fires when oom_kill increases (watched), not for the baseline or other counters', async () => {
    const w = watcher({ pollIntervalMs: 60_000 });
    const dir = cgroupDir(2);
    await w.add('c1', dir);
    expect(w.modes.get('c1')).toBe('watch');
    const next = w.next();
    writeFileSync(path.join(dir, 'memory.events'), events(2).replace('max 3', 'max 9')); // oom_kill unchanged
    expect(await within(next, 300)).toBe('timeout');
    writeFileSync(path.join(dir, 'memory.events'), events(3));
    expect(await within(next, 2000)).toBe('c1');
    expect(w.pending).toBe(0);
  });

  it('falls back to re-reading when the file cannot be watched', async () => {
    const w = watcher({ pollIntervalMs: 50 });
    const dir = cgroupDir(); // no memory.events yet: fs.watch fails
    await w.add('c2', dir);
    expect(w.modes.get('c2')).toBe('poll');
    writeFileSync(path.join(dir, 'memory.events'), events(1));
    expect(await within(w.next(), 2000)).toBe('c2');
  });

  it('serves several concurrent callers one event each, in order', async () => {
    const w = watcher();
    const a = cgroupDir(0);
    const b = cgroupDir(0);
    await w.add('a', a);
    await w.add('b', b);
    const first = w.next();
    const second = w.next();
    writeFileSync(path.join(a, 'memory.events'), events(1));
    expect(await within(first, 2000)).toBe('a');
    writeFileSync(path.join(b, 'memory.events'), events(1));
    expect(await within(second, 2000)).toBe('b');
  });

  it('queues events while nobody polls, bounded (oldest dropped with a warning)', async () => {
    const warned: object[] = [];
    const w = watcher({ queueLimit: 2, log: { warn: (o) => void warned.push(o), debug: () => undefined } });
    const dirs = [cgroupDir(0), cgroupDir(0), cgroupDir(0)];
    for (const [i, d] of dirs.entries()) await w.add(`q${i}`, d);
    const until = async (cond: () => boolean) => {
      for (let t = 0; t < 100 && !cond(); t++) await new Promise((r) => setTimeout(r, 20));
      expect(cond()).toBe(true);
    };
    writeFileSync(path.join(dirs[0]!, 'memory.events'), events(1));
    await until(() => w.pending === 1);
    writeFileSync(path.join(dirs[1]!, 'memory.events'), events(1));
    await until(() => w.pending === 2);
    writeFileSync(path.join(dirs[2]!, 'memory.events'), events(1));
    await until(() => warned.length === 1);
    expect(warned[0]).toEqual({ container: 'q0', limit: 2 });
    expect(w.pending).toBe(2);
    expect(await w.next()).toBe('q1');
    expect(await w.next()).toBe('q2');
  });

  it('an aborted caller gives up its turn (Canceled) and the event goes to the next', async () => {
    const w = watcher();
    const dir = cgroupDir(0);
    await w.add('c', dir);
    const ac = new AbortController();
    const gone = w.next(ac.signal);
    const stays = w.next();
    ac.abort();
    await expect(gone).rejects.toMatchObject({ code: 'Canceled' });
    writeFileSync(path.join(dir, 'memory.events'), events(5));
    expect(await within(stays, 2000)).toBe('c');
  });

  it('remove() takes a last look and keeps the queued event; close() fails waiters with Unavailable', async () => {
    const w = watcher({ pollIntervalMs: 60_000 });
    const dir = path.join(cgroupDir(), 'memory.events');
    writeFileSync(dir, events(0));
    await w.add('r', path.dirname(dir));
    writeFileSync(dir, events(1));
    await w.remove('r');
    expect(w.modes.has('r')).toBe(false);
    expect(await within(w.next(), 1000)).toBe('r');
    const waiting = w.next();
    w.close();
    await expect(waiting).rejects.toMatchObject({ code: 'Unavailable' });
    await expect(w.add('again', path.dirname(dir))).rejects.toMatchObject({ code: 'Unavailable' });
  });
});
