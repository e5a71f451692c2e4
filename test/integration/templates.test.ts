// VM templates end to end, with the real containerd, QEMU and guest: pods
// start as copy-on-write clones of a template VM (factory.template), behave
// like cold-booted ones, take over the writable layer their template premounted,
// get their own identity, share one template built
// once under concurrency, and survive a damaged template (rebuilt, or a cold
// boot when a clone fails). Each template store here is the test's own
// (factory.template_dir under the private containerd's directory), created
// before the per-case leak snapshot and destroyed at the end.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { waitForTask } from './harness/tern-cli.js';
import { TemplateStore, type TemplateRecord } from '../../src/shim/templates/store';
import { createLogger } from '../../src/common/logging';

const RUNTIME = 'io.containerd.tern.v2';
const TEMPLATE_PARAM = 'tern.template=1';

describe('VM templates', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  let seq = 0;
  const stores: TemplateStore[] = [];
  const id = (name: string) => `tern-tpl-${name}-${++seq}`;
  const log = createLogger({ name: 'test', level: 'silent' });

  /** A tern config whose template store is its own directory. */
  const configWithStore = (name: string): { path: string; store: TemplateStore } => {
    const dir = join(c.dir, `templates-${name}`);
    const path = join(c.dir, `tern-${name}.toml`);
    writeFileSync(path, `[factory]\ntemplate = true\ntemplate_dir = ${JSON.stringify(dir)}\n`);
    const store = new TemplateStore(dir, log);
    stores.push(store);
    return { path, store };
  };
  const runRm = (cfg: string, name: string, args: string[], input?: string) =>
    c.ctr(['run', '--rm', '--runtime', RUNTIME, '--runtime-config-path', cfg, image, name, ...args], { timeoutMs: 180_000, input });
  const keysIn = (store: TemplateStore) => readdirSync(store.dir).filter((n) => /^[0-9a-f]{24}$/.test(n));

  let main: { path: string; store: TemplateStore };

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
    main = configWithStore('main');
    // Builds the template (and the store's tmpfs) before any leak snapshot.
    const first = await runRm(main.path, id('first'), ['cat', '/proc/cmdline']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    if (!first.stdout.includes(TEMPLATE_PARAM)) {
      throw new Error(
        `first start was no clone; tern log:\n${c
          .readLog()
          .split('\n')
          .filter((l) => /template|clone/i.test(l))
          .join('\n')}`,
      );
    }
    expect(keysIn(main.store)).toHaveLength(1);
  }, 400_000);
  afterAll(async () => {
    for (const s of stores) {
      try {
        await s.destroyAll();
      } catch (err) {
        console.error(`destroying template store ${s.dir}: ${(err as Error).message}`);
      }
    }
    await c?.stop();
  });
  beforeEach(async () => {
    before = await snapshot({ scope: [c.dir, '/run/tern'] });
  });
  afterEach(async () => {
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
  });

  it('a container in a clone behaves like one in a cold-booted VM: output, exit codes, stdin, kill', async () => {
    const out = await runRm(main.path, id('out'), ['sh', '-c', 'cat /proc/cmdline; uname -r; echo to-stderr >&2; exit 3']);
    expect(out.code).toBe(3);
    expect(out.stderr).toBe('to-stderr\n');
    const [cmdline, kernel] = out.stdout.trim().split('\n');
    expect(cmdline).toContain(TEMPLATE_PARAM);
    expect(kernel).toMatch(/^\d+\.\d+/);
    const stdin = await runRm(main.path, id('stdin'), ['sh', '-c', 'tr a-z A-Z'], 'hello clone\n');
    expect(stdin.code).toBe(0);
    expect(stdin.stdout).toBe('HELLO CLONE\n');
    // (PID 1 of a pid namespace ignores SIGKILL from inside it: kill a child.)
    const killed = await runRm(main.path, id('kill'), ['sh', '-c', 'sleep 30 & kill -9 $!; wait $!']);
    expect(killed.code).toBe(137);
  });

  it("a clone's first container takes over the writable layer its template premounted; the template's disk stays as it was", async () => {
    const [key] = keysIn(main.store);
    const dir = join(main.store.dir, key!);
    const { writable } = JSON.parse(readFileSync(join(dir, 'template.json'), 'utf8')) as TemplateRecord;
    expect(writable).toMatchObject({ file: 'writable.img' });
    const disk = join(dir, writable!.file);
    const before = statSync(disk);
    expect(before.size).toBe(writable!.bytes);
    const name = id('rw');
    const r = await runRm(main.path, name, [
      'sh',
      '-c',
      'echo written > /written && dd if=/dev/zero of=/zeros bs=1M count=16 2>/dev/null && sync && cat /written && wc -c < /zeros',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`written\n${16 * 1024 * 1024}\n`);
    const created = c
      .readLog()
      .split('\n')
      .find((l) => l.includes('"msg":"container created"') && l.includes(`"container":"${name}"`));
    expect(created).toContain('"premounted":true');
    // Clones write to their copies only.
    const after = statSync(disk);
    expect([after.mtimeMs, after.blocks]).toEqual([before.mtimeMs, before.blocks]);
  });

  it('two clones of one template differ in boot id, hostname and randomness, and keep the host clock', async () => {
    const names = [id('a'), id('b')];
    try {
      for (const n of names) {
        const r = await c.ctr(['run', '-d', '--runtime', RUNTIME, '--runtime-config-path', main.path, image, n, 'sleep', '600'], { timeoutMs: 180_000 });
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
      }
      const seen: Array<{ bootId: string; host: string; rand: string; cmdline: string }> = [];
      let n = 0;
      for (const name of names) {
        const t0 = Date.now() / 1000;
        const r = await c.ctr(
          [
            'task',
            'exec',
            '--exec-id',
            `probe${++n}`,
            name,
            'sh',
            '-c',
            'cat /proc/sys/kernel/random/boot_id; hostname; od -An -N16 -tx1 /dev/urandom | tr -d " "; adjtimex | grep time.tv; cat /proc/cmdline',
          ],
          { timeoutMs: 60_000 },
        );
        const t1 = Date.now() / 1000;
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        const lines = r.stdout.trim().split('\n');
        const sec = Number(/tv_sec:\s+(\d+)/.exec(r.stdout)?.[1]);
        const usec = Number(/tv_usec:\s+(\d+)/.exec(r.stdout)?.[1]);
        const guest = sec + usec / 1e6;
        expect(guest).toBeGreaterThan(t0 - 1);
        expect(guest).toBeLessThan(t1 + 1);
        seen.push({ bootId: lines[0]!, host: lines[1]!, rand: lines[2]!, cmdline: lines[lines.length - 1]! });
      }
      for (const s of seen) {
        expect(s.cmdline).toContain(TEMPLATE_PARAM);
        expect(s.bootId).toMatch(/^[0-9a-f-]{36}$/);
        expect(s.rand).toMatch(/^[0-9a-f]{32}$/);
      }
      expect(seen[0]!.bootId).not.toBe(seen[1]!.bootId);
      expect(seen[0]!.host).not.toBe(seen[1]!.host);
      expect(seen[0]!.rand).not.toBe(seen[1]!.rand);
    } finally {
      for (const name of names) {
        await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]);
        await waitGone(c, name);
        await c.ctr(['container', 'rm', name]);
      }
    }
  });

  it('10 containers started at once all run from one template, built once, and all clean up', async () => {
    const fresh = configWithStore('concurrent');
    mkdirSync(fresh.store.dir, { recursive: true });
    const names = Array.from({ length: 10 }, (_, i) => id(`c${i}`));
    try {
      const runs = await Promise.all(
        names.map((n) =>
          c.ctr(
            ['run', '-d', '--runtime', RUNTIME, '--runtime-config-path', fresh.path, image, n, 'sh', '-c', 'cat /proc/cmdline > /cmdline; exec sleep 600'],
            {
              timeoutMs: 300_000,
            },
          ),
        ),
      );
      for (const r of runs) {
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
      }
      let i = 0;
      for (const n of names) {
        const r = await c.ctr(['task', 'exec', '--exec-id', `p${++i}`, n, 'cat', '/cmdline'], { timeoutMs: 60_000 });
        expect(r.code).toBe(0);
        expect(r.stdout).toContain(TEMPLATE_PARAM);
      }
      expect(keysIn(fresh.store)).toHaveLength(1);
      expect(readdirSync(fresh.store.dir).filter((n) => n.endsWith('.failed') || n.startsWith('.build-'))).toEqual([]);
    } finally {
      await Promise.all(
        names.map(async (n) => {
          await c.ctr(['task', 'kill', '-s', 'SIGKILL', n]);
          await waitGone(c, n);
          await c.ctr(['container', 'rm', n]);
        }),
      );
      await fresh.store.destroyAll();
    }
  }, 600_000);

  it('a template with a corrupted state file or a deleted memory file is rebuilt, and the container starts', async () => {
    const [key] = keysIn(main.store);
    const dir = join(main.store.dir, key!);
    const created = () => (JSON.parse(readFileSync(join(dir, 'template.json'), 'utf8')) as { createdAt: string }).createdAt;
    const first = created();
    const state = join(dir, 'state');
    const buf = readFileSync(state);
    buf.fill(0x5a, 100, 200);
    writeFileSync(state, buf);
    const r1 = await runRm(main.path, id('corrupt'), ['cat', '/proc/cmdline']);
    expect(r1.code).toBe(0);
    expect(r1.stdout).toContain(TEMPLATE_PARAM);
    const second = created();
    expect(second).not.toBe(first);

    writeFileSync(join(dir, 'memory'), ''); // truncated: no longer the guest's RAM
    const r2 = await runRm(main.path, id('nomem'), ['cat', '/proc/cmdline']);
    expect(r2.code).toBe(0);
    expect(r2.stdout).toContain(TEMPLATE_PARAM);
    expect(created()).not.toBe(second);
    expect(keysIn(main.store)).toEqual([key]);
  }, 400_000);

  it('a clone that cannot be restored falls back to a cold boot and the template is dropped', async () => {
    const [key] = keysIn(main.store);
    const dir = join(main.store.dir, key!);
    // A state file that checks out against its record but is no migration stream.
    const garbage = Buffer.alloc(4096, 0x42);
    writeFileSync(join(dir, 'state'), garbage);
    const rec = JSON.parse(readFileSync(join(dir, 'template.json'), 'utf8')) as Record<string, unknown>;
    const { createHash } = await import('node:crypto');
    rec.stateBytes = garbage.length;
    rec.stateSha256 = createHash('sha256').update(garbage).digest('hex');
    writeFileSync(join(dir, 'template.json'), JSON.stringify(rec));
    const r = await runRm(main.path, id('fallback'), ['cat', '/proc/cmdline']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain(TEMPLATE_PARAM);
    expect(existsSync(dir)).toBe(false);
    // The next start builds a good one again.
    const again = await runRm(main.path, id('rebuilt'), ['cat', '/proc/cmdline']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(TEMPLATE_PARAM);
  }, 400_000);

  it("a running clone outlives its template's removal, and the next start builds a new one", async () => {
    const [key] = keysIn(main.store);
    const name = id('orphan');
    const r = await c.ctr(['run', '-d', '--runtime', RUNTIME, '--runtime-config-path', main.path, image, name, 'sleep', '1000'], { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    await waitForTask(c, name, 'RUNNING');
    try {
      // the clone maps the memory file privately: removing the files changes nothing for it
      rmSync(join(main.store.dir, key!), { recursive: true, force: true });
      const ex = await c.ctr([
        'task',
        'exec',
        '--exec-id',
        'after-rm',
        name,
        'sh',
        '-c',
        'head -c 1000000 /dev/urandom | wc -c; cat /proc/sys/kernel/hostname',
      ]);
      expect(ex.stderr).toBe('');
      expect(ex.stdout).toMatch(/^1000000\ntern-/);
      // a new pod gets a new template
      const next = await runRm(main.path, id('after-rm'), ['cat', '/proc/cmdline']);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stdout).toContain(TEMPLATE_PARAM);
      expect(keysIn(main.store)).toEqual([key]);
      // and the orphaned clone still answers
      expect((await c.ctr(['task', 'exec', '--exec-id', 'still', name, 'echo', 'still-here'])).stdout).toBe('still-here\n');
    } finally {
      await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]);
      await waitGone(c, name);
      await c.ctr(['task', 'delete', name], { timeoutMs: 60_000 });
      await c.ctr(['container', 'delete', name]);
    }
  }, 400_000);
});

async function waitGone(c: Containerd, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ls = await c.ctr(['task', 'ls']);
    if (!ls.stdout.split('\n').some((l) => l.split(/\s+/)[0] === name && !/STOPPED/.test(l))) return;
    if (Date.now() > deadline) throw new Error(`task ${name} still running`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
