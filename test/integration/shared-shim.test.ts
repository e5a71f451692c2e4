// One shim process serves every pod of a containerd namespace (shim-daemon.ts),
// with the real containerd and QEMU: a second pod joins the running shim
// instead of starting one; a pod deleted leaves the others served; the process
// and its control socket go with the last pod; a shim killed with SIGKILL is
// cleaned up for every pod it served, control socket included.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { readPid, waitFor, waitGone } from './harness/wait.js';

const RUNTIME = 'io.containerd.tern.v2';
const STATE_DIR = '/run/tern';

interface OnDisk {
  shimPid: number;
  shimStartTime?: string;
  controlSocket?: string;
  qemuPid: number;
  dir: string;
}

function sandboxOnDisk(id: string): OnDisk {
  const root = join(STATE_DIR, 'sb');
  for (const h of readdirSync(root)) {
    try {
      const rec = JSON.parse(readFileSync(join(root, h, 'sandbox.json'), 'utf8')) as Omit<OnDisk, 'qemuPid' | 'dir'> & { id: string; vmDir?: string };
      if (rec.id !== id) continue;
      const qemuPid = readPid(join(rec.vmDir || join(root, h, 'vm'), 'qemu.pid'));
      if (qemuPid === undefined) continue;
      return { shimPid: rec.shimPid, shimStartTime: rec.shimStartTime, controlSocket: rec.controlSocket, qemuPid, dir: join(root, h) };
    } catch {
      /* another sandbox, or not written yet */
    }
  }
  throw new Error(`no tern sandbox ${id} under ${root}`);
}

/** Processes whose command line is a tern shim's, by pid. */
function ternShims(): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('containerd-shim-tern-v2\0');
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('one shim process for many pods', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;

  const taskStatus = async (name: string) => {
    const ls = await c.ctr(['task', 'ls']);
    const line = ls.stdout.split('\n').find((l) => l.split(/\s+/)[0] === name);
    return line?.split(/\s+/)[2];
  };
  const runPod = async (name: string) => {
    // --null-io: ctr itself would leave its client FIFO directory behind once a task vanishes under it.
    const r = await c.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
    expect(r, r.stderr).toMatchObject({ code: 0 });
    await waitFor(`${name} running`, async () => ((await taskStatus(name)) === 'RUNNING' ? true : undefined));
  };
  const removePod = async (name: string) => {
    await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]);
    await waitFor(`${name} stopped`, async () => ((await taskStatus(name)) === 'STOPPED' ? true : undefined));
    expect(await c.ctr(['task', 'delete', name])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
  };

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
  });
  afterAll(async () => {
    await c?.stop();
  });
  beforeEach(async () => {
    before = await snapshot({ scope: [c.dir, STATE_DIR] });
  });
  afterEach(async () => {
    await expectNoLeaks(before, { scope: [c.dir, STATE_DIR], timeoutMs: 20_000 });
  });

  it('a second pod joins the running shim; deleting one leaves the other served; the shim and its control socket go with the last', async () => {
    const shimsBefore = ternShims();
    await runPod('shared-a');
    await runPod('shared-b');
    const a = sandboxOnDisk('shared-a');
    const b = sandboxOnDisk('shared-b');
    expect(b.shimPid).toBe(a.shimPid);
    expect(b.shimStartTime).toBe(a.shimStartTime);
    expect(ternShims().filter((p) => !shimsBefore.includes(p))).toEqual([a.shimPid]);
    expect(a.qemuPid).not.toBe(b.qemuPid);
    // The control socket both records name is where the launcher found the running shim.
    expect(a.controlSocket).toMatch(/^\/run\/containerd\/s\/tern-[0-9a-f]{16}$/);
    expect(b.controlSocket).toBe(a.controlSocket);
    expect(statSync(a.controlSocket!).isSocket()).toBe(true);

    await removePod('shared-a');
    await waitGone("the first pod's QEMU gone", a.qemuPid);
    expect(existsSync(a.dir)).toBe(false);
    // The other pod is still served by the same process: exec reaches its container.
    const ex = await c.ctr(['task', 'exec', '--exec-id', 'probe', 'shared-b', 'sh', '-c', 'echo still-served'], { timeoutMs: 60_000 });
    expect(ex).toMatchObject({ code: 0, stdout: 'still-served\n' });
    expect(existsSync(`/proc/${a.shimPid}`)).toBe(true);

    await removePod('shared-b');
    await waitGone('the shim process gone with its last pod', a.shimPid);
    expect(existsSync(a.controlSocket!)).toBe(false);
  });

  it('the shim killed with SIGKILL: delete cleans up every pod it served, and its control socket', async () => {
    await runPod('killed-a');
    await runPod('killed-b');
    const a = sandboxOnDisk('killed-a');
    const b = sandboxOnDisk('killed-b');
    expect(b.shimPid).toBe(a.shimPid);
    process.kill(a.shimPid, 'SIGKILL');
    // containerd notices the dead shim and runs `containerd-shim-tern-v2 delete` for each of its pods.
    await waitGone('first QEMU gone', a.qemuPid);
    await waitGone('second QEMU gone', b.qemuPid);
    for (const name of ['killed-a', 'killed-b']) {
      await waitFor(`${name} stopped or gone`, async () => {
        const s = await taskStatus(name);
        return s === undefined || s === 'STOPPED' ? true : undefined;
      });
      await c.ctr(['task', 'rm', '-f', name]);
      expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
    }
    await waitFor("the dead shim's control socket removed", () => (existsSync(a.controlSocket!) ? undefined : true), 30_000);
    expect(existsSync(a.dir)).toBe(false);
    expect(existsSync(b.dir)).toBe(false);
  });
});
