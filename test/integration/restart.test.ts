// containerd restarted while tern tasks run (as a package upgrade or a crash
// would do): the shim keeps its VM and container; the new containerd finds the
// shim through the bundle's address file and reconnects; exec, kill (with the
// exit reported), delete and a new container all work afterwards, and nothing
// is left once everything is removed. containerd's own restart shows up as a
// new process, so the leak check spans the whole test, containerd included.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importTestImage, startContainerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { alive, waitGone } from './harness/wait.js';

const RUNTIME = 'io.containerd.tern.v2';
const STATE_DIR = '/run/tern';
const BASE_DIR = '/run/tern-test';

function shimPidOf(id: string): number {
  for (const h of readdirSync(join(STATE_DIR, 'sb'))) {
    try {
      const rec = JSON.parse(readFileSync(join(STATE_DIR, 'sb', h, 'sandbox.json'), 'utf8')) as { id: string; shimPid: number };
      if (rec.id === id) return rec.shimPid;
    } catch {
      /* another sandbox */
    }
  }
  throw new Error(`no tern sandbox ${id}`);
}

describe('containerd restart', () => {
  it('a running tern task survives a containerd restart: exec, kill with its exit status, delete and new runs work after it', async () => {
    const before = await snapshot({ scope: [BASE_DIR, STATE_DIR] });
    const c = await startContainerd({ baseDir: BASE_DIR, extraPath: [join(repoRoot(), 'build', 'bin')] });
    try {
      const image = await importTestImage(c);
      const name = 'restart-survivor';
      const r = await c.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
      expect(r).toMatchObject({ code: 0, stderr: '' });
      const shim = shimPidOf(name);
      const oldContainerd = c.pid;

      await c.restart();
      expect(c.pid).not.toBe(oldContainerd);
      expect(alive(shim)).toBe(true);

      const ls = await c.ctr(['task', 'ls']);
      expect(ls.stdout).toMatch(new RegExp(`^${name}\\s+\\d+\\s+RUNNING`, 'm'));
      const e = await c.ctr(['task', 'exec', '--exec-id', 'after-restart', name, 'sh', '-c', 'echo alive; exit 4'], { timeoutMs: 60_000 });
      expect(e).toMatchObject({ code: 4, stdout: 'alive\n' });

      // Kill: the exit reaches the new containerd as an event (the shim reconnected to publish it).
      expect((await c.ctr(['task', 'kill', '-s', 'SIGKILL', name])).code).toBe(0);
      const deadline = Date.now() + 60_000;
      for (;;) {
        const st = (await c.ctr(['task', 'ls'])).stdout;
        if (new RegExp(`^${name}\\s+\\d+\\s+STOPPED`, 'm').test(st)) break;
        if (Date.now() > deadline) throw new Error(`task not stopped after kill:\n${st}`);
        await new Promise((res) => setTimeout(res, 200));
      }
      const del = await c.ctr(['task', 'delete', name]);
      expect(del.code).toBe(0);
      expect(del.stdout + del.stderr).toMatch(/137/);
      expect((await c.ctr(['container', 'rm', name])).code).toBe(0);
      // The shim leaves once containerd has deleted its last task.
      await waitGone(`shim ${shim} to exit after its task was deleted`, shim, 30_000);

      // And the restarted containerd starts new tern containers.
      const again = await c.ctr(['run', '--rm', '--runtime', RUNTIME, image, 'restart-new', 'echo', 'fresh'], { timeoutMs: 150_000 });
      expect(again).toMatchObject({ code: 0, stdout: 'fresh\n' });
    } finally {
      await c.stop();
    }
    await expectNoLeaks(before, { scope: [BASE_DIR, STATE_DIR], timeoutMs: 20_000 });
  }, 600_000);
});
