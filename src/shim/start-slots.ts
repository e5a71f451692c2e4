// Start slots: how many pods of this host may do their guest's start work at
// once. Under TCG a start is CPU-bound in QEMU, and QEMU translates a clone's
// code afresh in each process: with more starts running than CPUs, each is
// switched out again and again and finds its caches cold, so the same start
// costs more CPU (measured: QEMU 0.87 s alone, 1.27 s each with 20 at once).
// A start that waits for a slot costs nothing while it waits.
//
// A slot is an abstract unix socket name (Linux, per network namespace):
// binding it is exclusive and the kernel lets go of it when its holder's
// process dies, so a crashed shim never keeps a slot and nothing is left on
// disk. A start that finds every slot taken connects to the holders and tries
// again when one of them closes (a slot let go, or a dead holder): no polling.
// A holder keeps a slot at most `maxHoldMs`, and a start waits at most
// `maxWaitMs` before it goes on without one: a slot never fails a start.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { availableParallelism } from 'node:os';

/** The host's set of slots (abstract socket names under it; one set per network namespace). */
export const START_SLOTS_NAME = 'tern/start-slots';
/** A start lets go of its slot after this long even if its first container is not created yet (a cold boot). */
export const START_SLOT_MAX_HOLD_MS = 5_000;
/** A start waits this long for a slot at most, then goes on without one. */
export const START_SLOT_MAX_WAIT_MS = 30_000;

/**
 * How many slots: runtime.start_slots, or when that is 0 one more than the
 * host's CPUs (a start does not keep a CPU busy all along: it also waits on
 * the host's side; measured on 2 CPUs, 10 and 20 at once: 2 and 4 slots did
 * as well as 3 or a little worse, 1 far worse, no limit worst).
 */
export function startSlotCount(configured: number, cpus = availableParallelism()): number {
  return configured > 0 ? Math.floor(configured) : Math.max(1, cpus) + 1;
}

export interface StartSlotOptions {
  /** How many slots there are (>= 1). */
  count: number;
  /** Name of the set (one per host and network namespace in the product; tests use their own). */
  name: string;
  /** A holder lets go after this long even if its start has not ended. */
  maxHoldMs: number;
  /** A start waits this long at most, then goes on without a slot. */
  maxWaitMs: number;
}

/** A slot held (or, when `index` is undefined, the start went on without one). */
export interface StartSlot {
  readonly index: number | undefined;
  /** How long the start waited for it, in ms. */
  readonly waitedMs: number;
  /** Why there is no slot, when binding one failed (not when the wait ran out). */
  readonly error?: string;
  release(): void;
}

function slotAddress(name: string, index: number): string {
  return `\0${name}/${index}`;
}

interface Bound {
  server: Server;
  /** Waiters' connections: kept open until the slot is let go, which they see as the close. */
  waiters: Set<Socket>;
}

/** Binds the slot at `address`; undefined when another process holds it. */
function tryBind(address: string): Promise<Bound | undefined> {
  return new Promise((resolve, reject) => {
    const waiters = new Set<Socket>();
    const server = createServer((c) => {
      waiters.add(c);
      c.unref();
      c.on('error', () => undefined);
      c.on('close', () => waiters.delete(c));
    });
    server.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve(undefined) : reject(err)));
    server.listen(address, () => resolve({ server, waiters }));
  });
}

/** Resolves when any of the slots' holders lets go (its connection closes, or connecting fails). */
function anyLetGo(addresses: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const socks: Socket[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      for (const s of socks) s.destroy();
      resolve();
    };
    const timer = setTimeout(finish, timeoutMs);
    for (const a of addresses) {
      const s = connect(a);
      socks.push(s);
      s.on('error', finish);
      s.on('close', finish);
    }
  });
}

/**
 * Takes a free slot, waiting for one while all are held (bounded by
 * maxWaitMs). Never fails: a slot that cannot be bound for another reason
 * than its holder (`error` says why) lets the start go on without one.
 */
export async function takeStartSlot(opts: StartSlotOptions): Promise<StartSlot> {
  const t0 = performance.now();
  const without = (error?: string): StartSlot => ({ index: undefined, waitedMs: Math.round(performance.now() - t0), error, release: () => undefined });
  const count = Math.max(1, Math.floor(opts.count));
  const addresses = Array.from({ length: count }, (_, i) => slotAddress(opts.name, i));
  const first = process.pid % count;
  try {
    for (;;) {
      for (let k = 0; k < count; k++) {
        const index = (first + k) % count;
        const bound = await tryBind(addresses[index]!);
        if (bound) return held(bound, index, performance.now() - t0, opts.maxHoldMs);
      }
      const left = opts.maxWaitMs - (performance.now() - t0);
      if (left <= 0) return without();
      await anyLetGo(addresses, left);
    }
  } catch (err) {
    return without((err as Error).message);
  }
}

function held({ server, waiters }: Bound, index: number, waitedMs: number, maxHoldMs: number): StartSlot {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearTimeout(timer);
    server.close();
    for (const c of waiters) c.destroy();
  };
  const timer = setTimeout(release, maxHoldMs);
  timer.unref();
  // A held slot does not keep the process alive (its waiters' connections do not either).
  server.unref();
  return { index, waitedMs: Math.round(waitedMs), release };
}
