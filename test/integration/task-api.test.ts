// The Task API as a user drives it through ctr, against one running tern
// container: signals other than TERM/KILL and kill --all, an interactive
// `ctr task exec -t` on a pty of the container (resized with the user's
// terminal), Update (in the guest's cgroup, and refused past the VM's size),
// and the bad calls runc also refuses (exec into a stopped container, resize
// of a process without a terminal). Nothing of tern may be left afterwards.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TtrpcClient } from '../../src/ttrpc/client';
import type { TtrpcError } from '../../src/ttrpc/status';
import { encode } from '../../src/common/proto';
import { socketPath } from '../../src/shim/paths';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { run } from './harness/run.js';
import { waitForTask } from './harness/tern-cli.js';
import { alive, waitFor } from './harness/wait.js';

const RUNTIME = 'io.containerd.tern.v2';
const MAIN = 'tern-api-main';
const STOPPED = 'tern-api-stopped';
// The init and one child each note the signals they get, and when their traps are set; `sleep` keeps them interruptible.
const INIT_SCRIPT = [
  'trap "echo init-usr1 >> /tmp/sig.log" USR1',
  'trap "echo init-hup >> /tmp/sig.log" HUP',
  'echo init-ready >> /tmp/sig.log',
  '(trap "echo child-usr1 >> /tmp/sig.log" USR1; echo child-ready >> /tmp/sig.log; while :; do sleep 0.2; done) &',
  'while :; do sleep 0.2; done',
].join('\n');

describe('Task API through ctr', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  const scope = () => [c.dir, '/run/tern'];
  const exec = (args: string[]) => c.ctr(['task', 'exec', '--exec-id', `probe-${Date.now()}`, MAIN, ...args], { timeoutMs: 60_000 });
  const sigLog = async () => (await exec(['cat', '/tmp/sig.log'])).stdout;
  /** Files of the container's own cgroup, read from inside. */
  const cgroupFiles = async (...names: string[]) => {
    const r = await exec(['sh', '-c', `cd /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup) && cat ${names.join(' ')}`]);
    expect(r.stderr).toBe('');
    return r.stdout;
  };

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
    before = await snapshot({ scope: scope() });
    // ctr 1.6's default spec has no /sys/fs/cgroup mount: ask for one, as runc users do
    const cgroupMount = 'type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev';
    const r = await c.ctr(['run', '-d', '--runtime', RUNTIME, '--mount', cgroupMount, image, MAIN, 'sh', '-c', INIT_SCRIPT], { timeoutMs: 150_000 });
    if (r.code !== 0) throw new Error(`ctr run -d ${MAIN}: ${r.stderr}`);
    await waitForTask(c, MAIN, 'RUNNING');
  });
  afterAll(async () => {
    if (!c) return;
    try {
      for (const name of [MAIN, STOPPED]) {
        await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]).catch(() => undefined);
        await c.ctr(['task', 'delete', '-f', name], { timeoutMs: 60_000 }).catch(() => undefined);
        await c.ctr(['container', 'delete', name]).catch(() => undefined);
      }
      if (before) await expectNoLeaks(before, { scope: scope(), timeoutMs: 20_000 });
    } finally {
      await c.stop();
    }
  });

  it('delivers SIGUSR1 and SIGHUP to the init, and kill --all reaches every process', async () => {
    // A signal before its trap is set would end the process: wait until both are set.
    await waitFor('init-ready and child-ready in /tmp/sig.log', async () => {
      const l = await sigLog();
      return l.includes('init-ready') && l.includes('child-ready') ? true : undefined;
    });
    expect(await c.ctr(['task', 'kill', '-s', 'SIGUSR1', MAIN])).toMatchObject({ code: 0 });
    await waitFor('init-usr1 in /tmp/sig.log', async () => ((await sigLog()).includes('init-usr1') ? true : undefined), 30_000);
    expect(await c.ctr(['task', 'kill', '-s', 'SIGHUP', MAIN])).toMatchObject({ code: 0 });
    await waitFor('init-hup in /tmp/sig.log', async () => ((await sigLog()).includes('init-hup') ? true : undefined), 30_000);
    // without --all only the init got USR1
    expect(await sigLog()).not.toContain('child-usr1');
    expect(await c.ctr(['task', 'kill', '--all', '-s', 'SIGUSR1', MAIN])).toMatchObject({ code: 0 });
    // The two traps run in either order (each after its own `sleep` dies): wait for both lines.
    const initUsr1 = (l: string) => l.split('\n').filter((line) => line === 'init-usr1').length;
    const log = await waitFor(
      'child-usr1 and a second init-usr1 in /tmp/sig.log',
      async () => {
        const l = await sigLog();
        return l.includes('child-usr1') && initUsr1(l) >= 2 ? l : undefined;
      },
      30_000,
    );
    expect(initUsr1(log)).toBe(2);
    // the container is still running: its processes trapped the signal
    expect((await c.ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`^${MAIN}\\s+\\d+\\s+RUNNING`, 'm'));
  });

  it("exec -t: an interactive shell on a pty of the container, resized with the user's terminal", async () => {
    // ctr wants a terminal on its stdin: script(1) gives it one; the test types into script's stdin
    const ctrCmd = ['ctr', '--address', c.address, '-n', c.namespace, 'task', 'exec', '-t', '--exec-id', 'shell', MAIN, 'sh'].join(' ');
    const child = spawn('script', ['-qfec', ctrCmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
    try {
      const type = (line: string) => child.stdin!.write(`${line}\r`);
      type('echo "ready-$((6*7))"');
      await waitFor(`the shell's prompt answer (so far: ${JSON.stringify(out)})`, () => (/ready-42/.test(out) ? true : undefined), 60_000);
      type('tty; test -t 0 && echo "stdin-is-a-tty"');
      await waitFor('tty output', () => (/stdin-is-a-tty/.test(out) ? true : undefined), 30_000);
      expect(out).toMatch(/^\/dev\/pts\/\d+\r?$/m); // a pty of the container's own devpts (its init has none here: pts/0)

      // resize ctr's terminal: the kernel sends ctr SIGWINCH, ctr calls ResizePty
      const slave = ctrTerminal(child);
      const r = await run('stty', ['-F', slave, 'rows', '37', 'cols', '101']);
      expect(r.code, r.stderr).toBe(0);
      let n = 0;
      await waitFor(
        'stty size 37 101 inside the container',
        () => {
          if (/^37 101\r?$/m.test(out)) return true;
          type(`stty size; echo "size-probe-${++n}"`);
          return undefined;
        },
        30_000,
      );

      type('exit 5');
      expect(await withDeadline(exited, 60_000, 'ctr task exec -t to end')).toBe(5);
    } finally {
      if (child.exitCode === null && child.pid !== undefined && alive(child.pid)) child.kill('SIGKILL');
    }
  });

  it("Update sets the guest cgroup's limits, grows the VM (memory and CPU hot-plug) for larger limits, and refuses memory past max_memory_mib", async () => {
    // ctr 1.6 has no `task update`: call the shim as containerd does (CRI's UpdateContainerResources takes this path)
    const update = async (resources: object) => {
      const client = await TtrpcClient.connect(socketPath(c.address, c.namespace, MAIN), 5000);
      try {
        const req = encode('containerd.task.v2.UpdateTaskRequest', {
          id: MAIN,
          resources: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify(resources)) },
        });
        return await client.call('containerd.task.v2.Task', 'Update', req).then(
          () => undefined,
          (e: TtrpcError) => e,
        );
      } finally {
        await client.close();
      }
    };
    const memTotalKiB = async () => Number(/^MemTotal:\s+(\d+) kB/m.exec((await exec(['cat', '/proc/meminfo'])).stdout)?.[1]);
    const mib = 1024 * 1024;
    expect(await update({ memory: { limit: 64 * mib }, cpu: { quota: 50000, period: 100000 }, pids: { limit: 99 } })).toBeUndefined();
    expect(await cgroupFiles('memory.max', 'cpu.max', 'pids.max')).toBe(`${64 * mib}\n50000 100000\n99\n`);

    // the default VM has 512 MiB: 1 GiB needs hot-plugged memory, which the guest sees
    const before = await memTotalKiB();
    expect(before * 1024).toBeLessThan(1024 * mib);
    expect(await update({ memory: { limit: 1024 * mib } })).toBeUndefined();
    expect(await cgroupFiles('memory.max')).toBe(`${1024 * mib}\n`);
    expect((await memTotalKiB()) * 1024).toBeGreaterThanOrEqual(1024 * mib);
    // the container can use it: a 350 MiB string (more than the 512 MiB VM had free) in one process
    const fill = await exec(['awk', `BEGIN { s = sprintf("%${350 * mib}s", ""); print length(s) }`]);
    expect(fill.stdout).toBe(`${350 * mib}\n`);

    // a quota of two CPUs in a 1-vCPU VM: a second vCPU is hot-plugged and online in the guest
    expect((await exec(['cat', '/sys/devices/system/cpu/online'])).stdout).toBe('0\n');
    expect(await update({ cpu: { quota: 200000, period: 100000 } })).toBeUndefined();
    expect((await exec(['cat', '/sys/devices/system/cpu/online'])).stdout).toBe('0-1\n');
    expect(await cgroupFiles('cpu.max')).toBe('200000 100000\n');

    const big = await update({ memory: { limit: 64 * 1024 * mib } });
    expect(big?.code).toBe(9); // FailedPrecondition
    expect(big?.message).toMatch(/memory limit 68719476736 bytes needs a VM of \d+ MiB; this VM may grow to 4096 MiB \(hypervisor\.max_memory_mib\)/);
    // the earlier limit stands
    expect(await cgroupFiles('memory.max')).toBe(`${1024 * mib}\n`);
  });

  it('refuses what runc refuses: exec into a stopped container, resizing a process without a terminal', async () => {
    const r = await c.ctr(['run', '-d', '--runtime', RUNTIME, image, STOPPED, 'true'], { timeoutMs: 150_000 });
    expect(r.code, r.stderr).toBe(0);
    await waitForTask(c, STOPPED, 'STOPPED');
    const ex = await c.ctr(['task', 'exec', '--exec-id', 'late', STOPPED, 'true']);
    expect(ex.code).not.toBe(0);
    expect(ex.stderr).toMatch(/has exited|stopped/);
    expect(ex.stderr).toMatch(/failed precondition/);
    // the stopped task is still there and can be deleted as usual
    expect((await c.ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`^${STOPPED}\\s+\\d+\\s+STOPPED`, 'm'));

    const client = await TtrpcClient.connect(socketPath(c.address, c.namespace, MAIN), 5000);
    try {
      const resize = client.call(
        'containerd.task.v2.Task',
        'ResizePty',
        encode('containerd.task.v2.ResizePtyRequest', { id: MAIN, exec_id: '', width: 80, height: 24 }),
      );
      const err = await resize.then(
        () => undefined,
        (e: TtrpcError) => e,
      );
      expect(err?.code).toBe(9);
      expect(err?.message).toMatch(/has no terminal/);
    } finally {
      await client.close();
    }
    expect(await c.ctr(['task', 'delete', STOPPED], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'delete', STOPPED])).toMatchObject({ code: 0 });
  });

  it('the running container answers after all of the above, and goes on kill', async () => {
    expect((await exec(['echo', 'still-here'])).stdout).toBe('still-here\n');
    const pid = Number((await c.ctr(['task', 'ls'])).stdout.match(new RegExp(`^${MAIN}\\s+(\\d+)`, 'm'))?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(await c.ctr(['task', 'kill', '-s', 'SIGKILL', MAIN])).toMatchObject({ code: 0 });
    await waitForTask(c, MAIN, 'STOPPED');
    expect(await c.ctr(['task', 'delete', MAIN], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'delete', MAIN])).toMatchObject({ code: 0 });
  });
});

/** The terminal script(1) gave ctr: fd 0 of script's child. */
function ctrTerminal(script: ChildProcess): string {
  const children = readFileSync(`/proc/${script.pid}/task/${script.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
  for (const pid of children) {
    const fd0 = readlinkSync(`/proc/${pid}/fd/0`);
    if (fd0.startsWith('/dev/pts/')) return fd0;
  }
  throw new Error(`no child of script ${script.pid} on a pty (children: ${children.join(' ')}; fds: ${readdirSync(`/proc/${script.pid}/fd`).join(' ')})`);
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
