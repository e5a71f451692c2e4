// The warm pool end to end, with the real containerd, QEMU and guest: a
// `tern pool serve` process keeps ready VMs; shims take them instead of
// restoring a clone; a taken VM belongs to its pod (its teardown, or
// `delete` after its shim died, removes it); the pool's idle VMs power
// themselves off when the pool is killed, and the next pool removes what is
// left. Every case starts its own pool after the leak snapshot and stops it
// before the leak check, so anything either side leaves is reported.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { readPid, waitFor, waitGone } from './harness/wait.js';
import { run } from './harness/run.js';
import { TemplateStore } from '../../src/shim/templates/store';
import { createLogger } from '../../src/common/logging';
import type { PoolStatus } from '../../src/shim/pool/protocol';

const RUNTIME = 'io.containerd.tern.v2';
const STATE_DIR = '/run/tern';
const POOL_SIZE = 2;

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

describe('warm pool', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  let cfgPath: string;
  let poolDir: string;
  let store: TemplateStore;
  let seq = 0;
  const pools = new Set<ChildProcess>();
  const id = (name: string) => `tern-pool-${name}-${++seq}`;
  const tern = join(repoRoot(), 'dist', 'tern.js');
  const logs = new Map<ChildProcess, string>();

  const startPool = (): ChildProcess => {
    const child = spawn(process.execPath, [tern, 'pool', 'serve', '--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    logs.set(child, '');
    const keep = (b: Buffer) => logs.set(child, (logs.get(child)! + b.toString()).slice(-20_000));
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    pools.add(child);
    child.once('exit', () => pools.delete(child));
    return child;
  };
  const status = async (): Promise<PoolStatus | undefined> => {
    const r = await run(process.execPath, [tern, 'pool', 'status', '--json', '--config', cfgPath], { timeoutMs: 10_000 });
    return r.code === 0 ? (JSON.parse(r.stdout) as PoolStatus) : undefined;
  };
  const full = (pool: ChildProcess) =>
    waitFor(
      'the pool to be full',
      async () => {
        if (pool.exitCode !== null) throw new Error(`pool exited ${pool.exitCode}: ${logs.get(pool)}`);
        const s = await status();
        return s && s.ready.length === POOL_SIZE && s.starting === 0 ? s : undefined;
      },
      180_000,
    );
  /** SIGTERM, then the exit code; a pool still there 60 s later is killed and the test fails. */
  const stopPool = async (pool: ChildProcess): Promise<number | null> => {
    if (pool.exitCode !== null || pool.signalCode !== null) return pool.exitCode;
    const exited = new Promise<number | null>((r) => pool.once('exit', (code) => r(code)));
    pool.kill('SIGTERM');
    const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), 60_000).unref());
    const outcome = await Promise.race([exited, timer]);
    if (outcome === 'late') {
      pool.kill('SIGKILL');
      throw new Error(`the pool did not exit within 60 s of SIGTERM: ${logs.get(pool)}`);
    }
    return outcome;
  };
  /** `ctr run -d` of a long sleep with the pool's config (--null-io: no FIFOs left if the task vanishes). */
  const runDetached = async (name: string) => {
    const r = await c.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, '--runtime-config-path', cfgPath, image, name, 'sleep', '1000'], {
      timeoutMs: 150_000,
    });
    expect(r).toMatchObject({ code: 0, stderr: '' });
  };
  const runRm = (name: string, args: string[], input?: string) =>
    c.ctr(['run', '--rm', '--runtime', RUNTIME, '--runtime-config-path', cfgPath, image, name, ...args], { timeoutMs: 180_000, input });

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
    const templateDir = join(c.dir, 'templates');
    poolDir = join(c.dir, 'pool');
    cfgPath = join(c.dir, 'tern-pool.toml');
    writeFileSync(
      cfgPath,
      [
        '[factory]',
        `template_dir = ${JSON.stringify(templateDir)}`,
        '[pool]',
        `size = ${POOL_SIZE}`,
        `socket = ${JSON.stringify(join(c.dir, 'pool.sock'))}`,
        `dir = ${JSON.stringify(poolDir)}`,
        'reserve_mib = 256',
        '',
      ].join('\n'),
    );
    store = new TemplateStore(templateDir, createLogger({ name: 'test', level: 'silent' }));
    // The template (and its tmpfs) is a cache: built before any leak snapshot.
    const first = await runRm(id('first'), ['true']);
    expect(first.code).toBe(0);
  }, 400_000);
  afterAll(async () => {
    for (const p of pools) {
      if (p.exitCode === null) p.kill('SIGKILL');
    }
    await store?.destroyAll().catch((err: Error) => console.error(`destroying the template store: ${err.message}`));
    await c?.stop();
  });
  beforeEach(async () => {
    before = await snapshot({ scope: [c.dir, STATE_DIR] });
  });
  afterEach(async () => {
    for (const p of pools) await stopPool(p);
    await expectNoLeaks(before, { scope: [c.dir, STATE_DIR], timeoutMs: 15_000 });
  });

  it('a container in a pooled VM behaves like one in a cold-booted VM, and the pool refills', async () => {
    const pool = startPool();
    const s0 = await full(pool);
    const fds0 = fdCount(s0.pid);
    const rss0 = rssKiB(s0.pid);
    const out = await runRm(id('out'), ['sh', '-c', 'hostname; echo to-stderr >&2; exit 3']);
    expect(out.code).toBe(3);
    expect(out.stderr).toBe('to-stderr\n');
    expect(out.stdout.trim()).toMatch(/^tern-tern-pool-ou/);
    const s1 = await full(pool);
    expect(s1.served).toBe(s0.served + 1);
    // The VM that served was one of the ready ones, and a new one took its place.
    expect(s0.ready.map((v) => v.name).filter((n) => !s1.ready.some((v) => v.name === n))).toHaveLength(1);
    const stdin = await runRm(id('stdin'), ['sh', '-c', 'tr a-z A-Z'], 'hello pool\n');
    expect(stdin).toMatchObject({ code: 0, stdout: 'HELLO POOL\n' });
    // (PID 1 of a pid namespace ignores SIGKILL from inside it: kill a child.)
    const killed = await runRm(id('kill'), ['sh', '-c', 'sleep 30 & kill -9 $!; wait $!']);
    expect(killed.code).toBe(137);
    expect((await status())!.served).toBe(s0.served + 3);
    // A long-lived process: after serving and refilling it holds what it held before.
    const s3 = await full(pool);
    expect(fdCount(s3.pid)).toBe(fds0);
    expect(rssKiB(s3.pid) - rss0).toBeLessThan(32 * 1024);
    expect(await stopPool(pool)).toBe(0);
    expect(readdirSync(poolDir)).toEqual([]);
  }, 600_000);

  it('two pooled VMs have their own boot id, hostname and randomness', async () => {
    const pool = startPool();
    await full(pool);
    const probe = 'cat /proc/sys/kernel/random/boot_id; hostname; od -An -N16 -tx1 /dev/urandom | tr -d " "';
    const [a, b] = await Promise.all([runRm(id('a'), ['sh', '-c', probe]), runRm(id('b'), ['sh', '-c', probe])]);
    expect(a!.code).toBe(0);
    expect(b!.code).toBe(0);
    const la = a!.stdout.trim().split('\n');
    const lb = b!.stdout.trim().split('\n');
    expect(la).toHaveLength(3);
    for (let i = 0; i < 3; i++) expect(la[i]).not.toBe(lb[i]);
    expect((await status())!.served).toBe(2);
  }, 600_000);

  it('the pool killed with SIGKILL: its idle VMs power themselves off; the next pool removes what is left', async () => {
    const pool = startPool();
    const s = await full(pool);
    pool.kill('SIGKILL');
    for (const vm of s.ready) await waitGone(`pooled QEMU ${vm.pid} to power off`, vm.pid, 60_000);
    // Its directories (and their tmpfs) are still there: the next pool sweeps them.
    expect(readdirSync(poolDir).sort()).toEqual(s.ready.map((v) => v.name).sort());
    const next = startPool();
    const s2 = await full(next);
    expect(readdirSync(poolDir).sort()).toEqual(s2.ready.map((v) => v.name).sort());
    expect(await stopPool(next)).toBe(0);
  }, 600_000);

  it('a shim killed after it took a pooled VM: containerd runs delete, which removes the VM and its pool directory', async () => {
    const pool = startPool();
    await full(pool);
    const name = id('dead-shim');
    await runDetached(name);
    const owned = await waitFor('the taken VM', () => {
      for (const n of readdirSync(poolDir)) {
        try {
          const o = JSON.parse(readFileSync(join(poolDir, n, 'owner.json'), 'utf8')) as { sandboxId: string };
          if (o.sandboxId === name) return join(poolDir, n);
        } catch {
          /* an idle one */
        }
      }
      return undefined;
    });
    const qemuPid = await waitFor("the taken VM's QEMU pid", () => readPid(join(owned, 'vm', 'qemu.pid')));
    const sb = readdirSync(join(STATE_DIR, 'sb'))
      .map((h) => join(STATE_DIR, 'sb', h))
      .find((d) => existsSync(join(d, 'sandbox.json')) && (JSON.parse(readFileSync(join(d, 'sandbox.json'), 'utf8')) as { id: string }).id === name);
    const rec = JSON.parse(readFileSync(join(sb!, 'sandbox.json'), 'utf8')) as { shimPid: number; pooledDir: string; vmDir: string };
    expect(rec.pooledDir).toBe(owned);
    expect(rec.vmDir).toBe(join(owned, 'vm'));
    process.kill(rec.shimPid, 'SIGKILL');
    await waitGone('QEMU gone', qemuPid);
    await waitFor('the taken VM directory gone', () => (existsSync(owned) ? undefined : true));
    await c.ctr(['task', 'rm', '-f', name]);
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
  }, 600_000);

  it("the pool stops at once while a VM it handed over still runs; that VM stays its pod's", async () => {
    const pool = startPool();
    await full(pool);
    const name = id('outlives');
    await runDetached(name);
    expect(await stopPool(pool)).toBe(0);
    const e = await c.ctr(['task', 'exec', '--exec-id', 'after', name, 'echo', 'still-here'], { timeoutMs: 60_000 });
    expect(e).toMatchObject({ code: 0, stdout: 'still-here\n' });
    await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]);
    await waitFor('task stopped', async () => ((await c.ctr(['task', 'ls'])).stdout.includes('RUNNING') ? undefined : true));
    await c.ctr(['task', 'rm', '-f', name]);
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
  }, 600_000);

  it('with no pool running the pod starts as a template clone, and `tern pool status` fails', async () => {
    const r = await run(process.execPath, [tern, 'pool', 'status', '--config', cfgPath], { timeoutMs: 10_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/warm pool at .*pool\.sock/);
    const out = await runRm(id('nopool'), ['cat', '/proc/cmdline']);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('tern.template=1');
  }, 300_000);
});
