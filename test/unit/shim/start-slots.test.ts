// Start slots over real abstract unix sockets: a slot is held by whoever
// binds its name, so a holder here may be another process; a start waits for
// a slot without polling and goes on when its holder lets go, dies, or has
// held it past the bound, and a start that waits too long goes on without one.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { startSlotCount, takeStartSlot, type StartSlot } from '../../../src/shim/start-slots';

const LONG = 60_000;
const opts = (name: string, count: number, o: { maxHoldMs?: number; maxWaitMs?: number } = {}) => ({
  name,
  count,
  maxHoldMs: o.maxHoldMs ?? LONG,
  maxWaitMs: o.maxWaitMs ?? LONG,
});
const freshName = () => `tern-test/start-slots-${randomBytes(6).toString('hex')}`;

const held: StartSlot[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const s of held.splice(0)) s.release();
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/** Another process holding slot `index` of `name`, as another shim would; resolves once it holds it. */
function holderProcess(name: string, index: number): Promise<ChildProcess> {
  const script = `require('net').createServer().listen(${JSON.stringify(`\0${name}/${index}`)}, () => process.stdout.write('held\\n'))`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
  });
}

async function take(o: ReturnType<typeof opts>): Promise<StartSlot> {
  const s = await takeStartSlot(o);
  held.push(s);
  return s;
}

describe('start slots', () => {
  it('count: runtime.start_slots, or one more than the host CPUs when 0', () => {
    expect(startSlotCount(3, 8)).toBe(3);
    expect(startSlotCount(0, 8)).toBe(9);
    expect(startSlotCount(0, 0)).toBe(2);
  });

  it('free slots are taken at once, each by one start', async () => {
    const name = freshName();
    const a = await take(opts(name, 2));
    const b = await take(opts(name, 2));
    expect([a.index, b.index].sort()).toEqual([0, 1]);
    expect(a.waitedMs).toBeLessThan(1000);
  });

  it('with every slot held, a start waits until one is let go, then takes it', async () => {
    const name = freshName();
    const a = await take(opts(name, 1));
    let got: StartSlot | undefined;
    const waiting = take(opts(name, 1)).then((s) => (got = s));
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toBeUndefined();
    a.release();
    const b = await waiting;
    expect(b.index).toBe(0);
    expect(b.waitedMs).toBeGreaterThanOrEqual(250);
  });

  it("a slot held by another process comes free when that process dies, without the holder's help", async () => {
    const name = freshName();
    const holder = await holderProcess(name, 0);
    let got: StartSlot | undefined;
    const waiting = take(opts(name, 1)).then((s) => (got = s));
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toBeUndefined();
    holder.kill('SIGKILL');
    expect((await waiting).index).toBe(0);
  });

  it('a holder lets go after maxHoldMs even if its start has not ended', async () => {
    const name = freshName();
    await take(opts(name, 1, { maxHoldMs: 200 }));
    const b = await take(opts(name, 1));
    expect(b.index).toBe(0);
    expect(b.waitedMs).toBeGreaterThanOrEqual(150);
  });

  it('a start that waits past maxWaitMs goes on without a slot', async () => {
    const name = freshName();
    await holderProcess(name, 0);
    const s = await take(opts(name, 1, { maxWaitMs: 200 }));
    expect(s.index).toBeUndefined();
    expect(s.waitedMs).toBeGreaterThanOrEqual(200);
    s.release();
  });

  it('a released slot is free for the next start, and releasing twice is harmless', async () => {
    const name = freshName();
    const a = await take(opts(name, 1));
    a.release();
    a.release();
    const b = await take(opts(name, 1, { maxWaitMs: 100 }));
    expect(b.index).toBe(0);
  });
});
