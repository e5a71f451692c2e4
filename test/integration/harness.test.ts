// Tests of the integration-test harness itself, with runc: the private containerd,
// the local test image, ctr exit codes, and that the leak detector both passes a clean
// run and catches leaked processes and mounts.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { diff, expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { run } from './harness/run.js';

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('integration harness (runc)', () => {
  let before: Snapshot;
  let c: Containerd;
  let image: string;

  beforeAll(async () => {
    before = await snapshot();
    c = await startContainerd();
    image = await importTestImage(c);
  });

  afterAll(async () => {
    await c?.stop();
  });

  it('runs a private containerd, not the system one', async () => {
    expect(c.address.startsWith(`${c.dir}/`)).toBe(true);
    expect(c.address).not.toBe('/run/containerd/containerd.sock');
    const v = await c.ctr(['version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/Server:\s+Version:\s+1\.\d+/);
    const images = await c.ctr(['images', 'ls', '-q']);
    expect(images.stdout.split('\n')).toContain(image);
  });

  it('runs the test image with runc and prints its output', async () => {
    const r = await c.ctr(['run', '--rm', image, 'harness-echo', 'echo', 'hello']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('hello\n');
  });

  it("has the image's users, PATH and applets", async () => {
    const r = await c.ctr(['run', '--rm', image, 'harness-env', 'sh', '-c', 'id -un; echo "$PATH"; ls -d /tmp']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('root\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/tmp\n');
  });

  it("propagates the container's exit code through ctr", async () => {
    const r = await c.ctr(['run', '--rm', image, 'harness-exit', 'sh', '-c', 'exit 7']);
    expect(r.code).toBe(7);
  });

  it('passes standard input through ctr', async () => {
    // ctr 1.6 does not pass end-of-file on stdin to the container: read one line only.
    const r = await c.ctr(['run', '--rm', image, 'harness-stdin', 'sh', '-c', 'read l; echo "$l" | tr a-z A-Z'], {
      input: 'abc\n',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ABC\n');
  });

  it('finds no leaks after the runs above', async () => {
    await expectNoLeaks(before, { scope: [c.dir] });
  });

  it('reports a leaked process until it is gone', async () => {
    const start = await snapshot();
    // argv[0] starting with "tern" is one of the detector's own patterns.
    // TERN_TEST_DIR is how processes started by the private containerd are attributed to it.
    const child = spawn('bash', ['-c', 'exec -a tern-leak-probe sleep 600'], {
      stdio: 'ignore',
      env: { ...process.env, TERN_TEST_DIR: c.dir },
    });
    const pid = child.pid!;
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await waitFor(() => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('tern-leak-probe\0'), 5_000);
      await expect(expectNoLeaks(start, { timeoutMs: 1_000, scope: [c.dir] })).rejects.toThrow(new RegExp(`process ${pid} .*tern-leak-probe 600`));
      // Outside the scope, the same process is not attributed to this test.
      expect(diff(start, await snapshot({ scope: ['/nonexistent-scope'] }))).toEqual([]);
    } finally {
      process.kill(pid, 'SIGKILL');
      await exited;
    }
    await expectNoLeaks(start, { scope: [c.dir] });
  });

  it('reports a leaked mount', async () => {
    const start = await snapshot();
    const mnt = join(c.dir, 'leak-mnt');
    mkdirSync(mnt);
    const m = await run('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
    expect(m.code).toBe(0);
    try {
      const leaks = diff(start, await snapshot({ scope: [c.dir] }));
      expect(leaks).toContain(`mount ${mnt} type tmpfs source tmpfs`);
    } finally {
      expect((await run('umount', [mnt])).code).toBe(0);
    }
    await expectNoLeaks(start, { scope: [c.dir] });
  });

  it('stops containerd and removes its directory', async () => {
    const dir = c.dir;
    const pid = c.pid;
    await c.stop();
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    await expectNoLeaks(before, { scope: [dir] });
  });
});
