// The template store's build lock, beside the store on a real tmpfs: where it
// lives, taken over from a dead or reused pid, waited for while its holder
// lives, and a stale lock removed only if it is still the one judged.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { TernError } from '../../../src/common/errors';
import { silentLogger } from '../../../src/common/logging';
import { readLock, removeStaleLock } from '../../../src/shim/templates/build-lock';
import { TemplateStore } from '../../../src/shim/templates/store';
import { countingBuild, KEY, MEM, NO_SUCH_PID, storeOnShmEachTest } from './template-store-env';

let tmp: string;
let store: TemplateStore;
storeOnShmEachTest((st, t) => {
  store = st;
  tmp = t;
});

describe('the build lock', () => {
  const holdLock = (text: string) => fs.writeFileSync(store.lockPath, text);

  it('lives beside the store directory', () => {
    expect(store.lockPath).toBe(`${store.dir}.lock`);
    expect(new TemplateStore(`${store.dir}//`, silentLogger).lockPath).toBe(`${store.dir}.lock`);
  });

  it('is taken over from a pid that does not exist', async () => {
    holdLock(JSON.stringify({ pid: NO_SUCH_PID, startTime: '1' }));
    const { calls, build } = countingBuild();
    await store.ensure(KEY, MEM, build, 2000);
    expect(calls).toHaveLength(1);
    expect(fs.existsSync(store.lockPath)).toBe(false);
  });

  it('is taken over from a live pid with another start time (a reused pid)', async () => {
    holdLock(JSON.stringify({ pid: process.pid, startTime: '1' }));
    const { calls, build } = countingBuild();
    await store.ensure(KEY, MEM, build, 2000);
    expect(calls).toHaveLength(1);
  });

  it('is waited for while its holder lives, then the wait times out without building', async () => {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const text = JSON.stringify({ pid: process.pid, startTime });
    holdLock(text);
    const { calls, build } = countingBuild();
    const t0 = Date.now();
    const err = await store.ensure(KEY, MEM, build, 400).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect((err as TernError).code).toBe('DeadlineExceeded');
    expect(calls).toHaveLength(0);
    expect(fs.readFileSync(store.lockPath, 'utf8')).toBe(text);
  });

  it('an empty lock file is waited for while fresh, taken over once old', async () => {
    holdLock('');
    const { calls, build } = countingBuild();
    await expect(store.ensure(KEY, MEM, build, 300)).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    expect(calls).toHaveLength(0);
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(store.lockPath, old, old);
    await store.ensure(KEY, MEM, build, 2000);
    expect(calls).toHaveLength(1);
    expect(fs.existsSync(store.lockPath)).toBe(false);
  });

  it('a waiter returns the template another caller built instead of building it again', async () => {
    const slow = countingBuild({ delayMs: 400 });
    const first = store.ensure(KEY, MEM, slow.build, 5000);
    await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(store.lockPath)).toBe(true);
    const second = countingBuild();
    const t = await store.ensure(KEY, MEM, second.build, 5000);
    expect(second.calls).toHaveLength(0);
    expect(slow.calls).toHaveLength(1);
    expect((await first).record).toEqual(t.record);
  });

  it('removeStaleLock removes the lock it judged, but not a fresh one that replaced it', () => {
    fs.mkdirSync(store.dir);
    holdLock(JSON.stringify({ pid: NO_SUCH_PID, startTime: '1' }));
    const stale = readLock(store.lockPath)!;
    // Another waiter took the stale lock over and holds a fresh one.
    fs.rmSync(store.lockPath);
    const fresh = JSON.stringify({ pid: process.pid, startTime: 'x' });
    holdLock(fresh);
    expect(removeStaleLock(store.lockPath, stale)).toBe(false);
    expect(fs.readFileSync(store.lockPath, 'utf8')).toBe(fresh);
    expect(fs.readdirSync(tmp).sort()).toEqual(['store', 'store.lock']);

    const now = readLock(store.lockPath)!;
    expect(removeStaleLock(store.lockPath, now)).toBe(true);
    expect(fs.readdirSync(tmp)).toEqual(['store']);
    expect(removeStaleLock(store.lockPath, now)).toBe(false);
  });
});
