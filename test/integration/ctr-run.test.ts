// The walking skeleton end to end, with the real containerd, QEMU and guest:
// `ctr run --runtime io.containerd.tern.v2` runs a container inside a VM.
// One private containerd serves every case; each case boots its own VM
// (one VM per pod) and checks that nothing of tern is left afterwards.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { run } from './harness/run.js';
import { waitForTask } from './harness/tern-cli.js';
import { TtrpcClient } from '../../src/ttrpc/client';
import type { TtrpcError } from '../../src/ttrpc/status';
import { decode, encode } from '../../src/common/proto';
import { socketPath } from '../../src/shim/paths';

const RUNTIME = 'io.containerd.tern.v2';

describe('ctr run with tern', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  let seq = 0;
  const id = (name: string) => `tern-${name}-${++seq}`;
  const tern = (args: string[], opts?: { input?: string; timeoutMs?: number }) =>
    c.ctr(['run', '--rm', '--runtime', RUNTIME, ...args], { timeoutMs: 150_000, ...opts });

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
  });
  afterAll(async () => {
    await c?.stop();
  });
  beforeEach(async () => {
    before = await snapshot({ scope: [c.dir, '/run/tern'] });
  });
  afterEach(async () => {
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
  });

  it('prints the guest kernel release, which differs from the host', async () => {
    const r = await tern([image, id('uname'), 'uname', '-r']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const guest = r.stdout.trim();
    expect(guest).toMatch(/^\d+\.\d+\.\d+-\S+-amd64$/);
    expect(guest).not.toBe(release());
  });

  it('propagates exit codes; a command missing from the image fails clearly', async () => {
    const r7 = await tern([image, id('exit'), 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r7.code).toBe(7);
    expect(r7.stdout).toBe('out\n');
    expect(r7.stderr).toBe('err\n');

    const missing = await tern([image, id('missing'), 'no-such-command']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/no-such-command/);
    expect(missing.stderr).toMatch(/not found/);
  });

  it('passes stdin through, with EOF', async () => {
    const r = await tern([image, id('stdin'), 'sh', '-c', 'cat; echo done'], { input: 'abc\n' });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('abc\ndone\n');
  });

  it('runs with a terminal under a pty', async () => {
    const ctrCmd = [
      'ctr',
      '--address',
      c.address,
      '-n',
      c.namespace,
      'run',
      '--rm',
      '-t',
      '--runtime',
      RUNTIME,
      image,
      id('tty'),
      'sh',
      '-c',
      "'test -t 0 && test -t 1 && echo is-a-tty; echo tty-ok'",
    ];
    const r = await run('script', ['-qec', ctrCmd.join(' '), '/dev/null'], { timeoutMs: 150_000, input: '' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/is-a-tty\r*\n/);
    expect(r.stdout).toMatch(/tty-ok/);
  });

  it('reports 137 for a process killed by SIGKILL', async () => {
    const name = id('sigkill');
    const child = spawn('ctr', ['--address', c.address, '-n', c.namespace, 'run', '--rm', '--runtime', RUNTIME, image, name, 'sleep', '1000'], {
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitForTask(c, name, 'RUNNING');
      const k = await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]);
      expect(k.code).toBe(0);
      expect(await exited).toBe(137);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('detached: task ps lists the process, kill stops it, rm removes it', async () => {
    const name = id('detached');
    const r = await c.ctr(['run', '-d', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
    expect(r.code).toBe(0);
    await waitForTask(c, name, 'RUNNING');
    const ps = await c.ctr(['task', 'ps', name]);
    expect(ps.code).toBe(0);
    expect(ps.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(2);

    // The shim's own socket: bad calls get clear codes and the shim keeps serving.
    const client = await TtrpcClient.connect(socketPath(c.address, c.namespace, name), 5000);
    try {
      const codeOf = (p: Promise<unknown>) =>
        p.then(
          () => 0,
          (e: TtrpcError) => e.code,
        );
      const T = 'containerd.task.v2.Task';
      expect(await codeOf(client.call(T, 'State', encode('containerd.task.v2.StateRequest', { id: 'no-such-container' })))).toBe(5);
      expect(await codeOf(client.call(T, 'NoSuchMethod', new Uint8Array()))).toBe(12);
      expect(await codeOf(client.call(T, 'Checkpoint', encode('containerd.task.v2.CheckpointTaskRequest', { id: name })))).toBe(12);
      expect(await codeOf(client.call(T, 'State', Buffer.alloc(5 * 1024 * 1024)))).toBe(8);
      const state = decode<{ status: number; pid: number }>(
        'containerd.task.v2.StateResponse',
        await client.call(T, 'State', encode('containerd.task.v2.StateRequest', { id: name })),
      );
      expect(state.status).toBe(2);
      expect(state.pid).toBeGreaterThan(0);
    } finally {
      await client.close();
    }
    // An extra process in the running container: own stdio, own exit status.
    const ex = await c.ctr(['task', 'exec', '--exec-id', 'probe', name, 'sh', '-c', 'echo from-exec; echo err-exec >&2; exit 3']);
    expect(ex.stdout).toBe('from-exec\n');
    expect(ex.stderr).toBe('err-exec\n');
    expect(ex.code).toBe(3);

    // Freezer in the guest: PAUSED, then running again.
    expect(await c.ctr(['task', 'pause', name])).toMatchObject({ code: 0 });
    await waitForTask(c, name, 'PAUSED');
    expect(await c.ctr(['task', 'resume', name])).toMatchObject({ code: 0 });
    await waitForTask(c, name, 'RUNNING');
    // cgroup metrics from the guest, in the type this host's containerd expects.
    const metrics = await c.ctr(['task', 'metrics', name]);
    expect(metrics.stderr).toBe('');
    expect(metrics.code).toBe(0);
    const usage = /memory\.usage_in_bytes\s+(\d+)/.exec(metrics.stdout) ?? /memory\.usage\s+(\d+)/.exec(metrics.stdout);
    expect(usage, metrics.stdout).not.toBeNull();
    expect(Number(usage![1])).toBeGreaterThan(0);

    expect(await c.ctr(['task', 'kill', '-s', 'SIGKILL', name])).toMatchObject({ code: 0 });
    await waitForTask(c, name, 'STOPPED');
    expect(await c.ctr(['task', 'rm', name])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
    const ls = await c.ctr(['task', 'ls']);
    expect(ls.stdout).not.toContain(name);
  });

  it('a container over its memory limit is OOM-killed in the guest: exit 137 and /tasks/oom', async () => {
    const events = spawn('ctr', ['--address', c.address, 'events'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let seen = '';
    events.stdout!.setEncoding('utf8').on('data', (d: string) => (seen += d));
    try {
      const name = id('oom');
      const r = await tern(['--memory-limit', String(32 * 1024 * 1024), image, name, 'sh', '-c', 'x=0123456789; while true; do x=$x$x; done']);
      expect(r.code).toBe(137);
      const deadline = Date.now() + 10_000;
      while (!seen.includes('/tasks/oom') && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
      expect(seen).toMatch(new RegExp(`/tasks/oom.*${name}`));
    } finally {
      events.kill('SIGKILL');
    }
  });

  it('loads kernel modules on demand for a privileged container (bridge, veth, dummy); an unprivileged one is refused, not told the module is missing', async () => {
    const script =
      'brctl addbr foobar && ip -o link show foobar; ip link add v1 type veth peer name v2 && echo veth-ok; ip link add d0 type dummy && echo dummy-ok; cut -d" " -f1 /proc/modules';
    const r = await tern(['--privileged', image, id('modules'), 'sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\d+: foobar: /m);
    expect(r.stdout).toMatch(/^veth-ok$/m);
    expect(r.stdout).toMatch(/^dummy-ok$/m);
    const loaded = r.stdout.split('\n');
    for (const m of ['bridge', 'stp', 'llc', 'veth', 'dummy']) expect(loaded).toContain(m);

    const plain = await tern([image, id('modules-unpriv'), 'sh', '-c', 'brctl addbr foobar']);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/Operation not permitted/);
  });

  it('sees its own hostname, pid 1 and its memory limit', async () => {
    const script = 'hostname; echo pid=$$; cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max';
    const name = id('identity');
    // ctr 1.6's default spec has no /sys/fs/cgroup mount: ask for one, as runc users do.
    const cgroupMount = 'type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev';
    const r = await tern(['--memory-limit', '67108864', '--mount', cgroupMount, image, name, 'sh', '-c', script]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [host, pid, mem] = r.stdout.trim().split('\n');
    // 'tern' for a cold-booted VM, 'tern-<sandbox id>' for a clone of a template.
    expect(host).toMatch(/^tern(-|$)/);
    expect(host).not.toBe(hostname());
    expect(pid).toBe('pid=1');
    expect(mem).toBe('67108864');
  });

  it("keeps one container's writes from another and from the image's layers on the host", async () => {
    const a = await tern([image, id('writer'), 'sh', '-c', 'echo secret > /etc/tern-marker && cat /etc/tern-marker']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe('secret\n');
    const b = await tern([image, id('reader'), 'sh', '-c', 'test -e /etc/tern-marker && echo present || echo absent']);
    expect(b.code).toBe(0);
    expect(b.stdout).toBe('absent\n');
    const snapshots = join(c.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    const found = readdirSync(snapshots).filter((s) => existsSync(join(snapshots, s, 'fs', 'etc', 'tern-marker')));
    expect(found).toEqual([]);
  });

  it('QEMU exiting during boot, a missing QEMU and a silent agent each fail with the cause named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-cfg-'));
    try {
      const attempt = async (name: string, toml: string) => {
        const cfg = join(dir, `${name}.toml`);
        writeFileSync(cfg, toml);
        return tern(['--runtime-config-path', cfg, image, id(name), 'true'], { timeoutMs: 120_000 });
      };
      // The guest kernel finds no init and panics; QEMU (-no-reboot) exits.
      const panic = await attempt('panic', '[hypervisor]\nkernel_params = ["rdinit=/no-such-init"]\n');
      expect(panic.code).not.toBe(0);
      expect(panic.stderr).toMatch(/VM exited during boot/);
      const noQemu = await attempt('noqemu', '[hypervisor]\nbinary = "/nonexistent/qemu-system-x86_64"\n');
      expect(noQemu.code).not.toBe(0);
      expect(noQemu.stderr).toMatch(/\/nonexistent\/qemu-system-x86_64/);
      // A cold boot (a clone of a template may well answer within 300 ms).
      const silent = await attempt('silent', '[agent]\nboot_timeout_ms = 300\n[factory]\ntemplate = false\n');
      expect(silent.code).not.toBe(0);
      expect(silent.stderr).toMatch(/guest agent did not answer within 300 ms/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing guest kernel fails the run with an error naming it, leaving nothing behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-cfg-'));
    try {
      const cfg = join(dir, 'config.toml');
      writeFileSync(cfg, '[hypervisor]\nkernel = "/nonexistent/vmlinuz-tern"\n');
      const r = await tern(['--runtime-config-path', cfg, image, id('nokernel'), 'true'], { timeoutMs: 60_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/\/nonexistent\/vmlinuz-tern/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
