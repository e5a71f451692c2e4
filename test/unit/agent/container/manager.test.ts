// ContainerManager with the real launcher (compiled here), a busybox rootfs as
// the single lower layer, real overlay/tmpfs mounts and a real cgroup v2 dir.
import { readFileSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TernError } from '../../../../src/common/errors.js';
import { ContainerManager } from '../../../../src/agent/container/manager.js';
import type { OciSpec } from '../../../../src/agent/container/oci-types.js';
import { buildBusyboxRootfs, buildLauncher, defaultSpec, makeCgroupRoot, tempDir } from './fixtures.js';
import { procAlive as alive } from '../../../../src/common/proc';

let scratch: string;
let launcher: string;
let lower: string;
let cgroup: { root: string; cleanup: () => void };
let mgr: ContainerManager;
let runDir: string;
let seq = 0;
const created = new Set<string>();
const released: string[] = [];

beforeAll(() => {
  scratch = tempDir('tern-mgr-');
  launcher = buildLauncher(scratch);
  lower = buildBusyboxRootfs(path.join(scratch, 'lower'));
  cgroup = makeCgroupRoot(scratch);
  runDir = path.join(scratch, 'run');
  mgr = new ContainerManager({
    runDir,
    cgroupRoot: cgroup.root,
    launcherPath: launcher,
    resolveLayer: async (layer) => ({ path: lower, release: async () => void released.push(layer.serial) }),
  });
});

afterEach(async () => {
  for (const id of created) await mgr.removeContainer(id).catch(() => undefined);
  created.clear();
});

afterAll(async () => {
  await mgr?.shutdown();
  cgroup?.cleanup();
  if (scratch) {
    expect(mountsUnder(scratch)).toEqual([]);
    rmSync(scratch, { recursive: true, force: true });
  }
});

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(dir));
}

type Io = { terminal: boolean; stdin: boolean; stdout: boolean; stderr: boolean };
const plainIo: Io = { terminal: false, stdin: false, stdout: true, stderr: true };

async function create(args: string[], io: Io = plainIo, spec?: OciSpec): Promise<{ id: string; pid: number }> {
  const id = `c${process.pid}-${++seq}`;
  created.add(id);
  const { pid } = await mgr.createContainer({
    containerId: id,
    spec: spec ?? defaultSpec(args),
    layers: [{ serial: `layer-${seq}`, fs_type: 'erofs' }],
    ...io,
  });
  return { id, pid };
}

async function readAll(id: string, execId: string, which: 'stdout' | 'stderr'): Promise<string> {
  let out = '';
  for (;;) {
    const r = await mgr.readStream(id, execId, which, 4096);
    if (r.eof) return out;
    out += r.data.toString();
  }
}

async function run(args: string[], io: Io = plainIo, spec?: OciSpec) {
  const { id, pid } = await create(args, io, spec);
  await mgr.startContainer(id);
  const [stdout, stderr, exit] = await Promise.all([readAll(id, '', 'stdout'), io.stderr ? readAll(id, '', 'stderr') : '', mgr.waitProcess(id, '')]);
  return { id, pid, stdout, stderr, exit };
}

describe('ContainerManager with the real launcher', () => {
  it('runs echo hi: stdout read back, exit 0, pid reported', async () => {
    const t0 = BigInt(Date.now()) * 1_000_000n;
    const r = await run(['echo', 'hi']);
    expect(r.stdout).toBe('hi\n');
    expect(r.exit.exitStatus).toBe(0);
    expect(r.pid).toBeGreaterThan(1);
    expect(r.exit.exitedAtNs).toBeGreaterThanOrEqual(t0);
  });

  it('reports the exit code of sh -c "exit 7"', async () => {
    const r = await run(['sh', '-c', 'echo oops >&2; exit 7']);
    expect(r.exit.exitStatus).toBe(7);
    expect(r.stderr).toBe('oops\n');
  });

  it('reports 137 for a sleep killed by SIGKILL; signalling again is NotFound', async () => {
    const { id, pid } = await create(['sleep', '100']);
    await mgr.startContainer(id);
    expect(alive(pid)).toBe(true);
    await mgr.signalProcess(id, '', 9, false);
    expect((await mgr.waitProcess(id, '')).exitStatus).toBe(137);
    await expect(mgr.signalProcess(id, '', 9, false)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('echoes stdin through cat and ends with EOF after closeStdin', async () => {
    const { id } = await create(['cat'], { terminal: false, stdin: true, stdout: true, stderr: false });
    await mgr.startContainer(id);
    expect(await mgr.writeStdin(id, '', Buffer.from('hello\n'))).toBe(6);
    const first = await mgr.readStream(id, '', 'stdout', 100);
    expect(first.data.toString()).toBe('hello\n');
    await mgr.closeStdin(id, '');
    expect(await readAll(id, '', 'stdout')).toBe('');
    expect((await mgr.waitProcess(id, '')).exitStatus).toBe(0);
  });

  it('sets the hostname, runs as pid 1, and /dev/stdout works', async () => {
    const r = await run([
      'sh',
      '-c',
      'hostname; echo $$; echo via-dev-stdout > /dev/stdout; ls /dev; ls /sys/fs/cgroup/cgroup.procs; grep CapBnd /proc/self/status',
    ]);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('tern-test');
    expect(lines[1]).toBe('1');
    expect(lines[2]).toBe('via-dev-stdout');
    for (const d of ['null', 'zero', 'urandom', 'pts', 'shm', 'fd', 'ptmx']) expect(lines).toContain(d);
    expect(lines).toContain('/sys/fs/cgroup/cgroup.procs');
    expect(lines).toContain('CapBnd:\t00000000a80425fb'); // the ctr/docker default set
    expect(r.exit.exitStatus).toBe(0);
  });

  it('applies user, groups, umask, cwd (created when missing), env, rlimits and capabilities', async () => {
    const spec = defaultSpec(['sh', '-c', 'id -u; id -g; id -G; umask; pwd; echo $GREETING; ulimit -n; grep CapEff /proc/self/status'], {});
    spec.process = {
      ...spec.process!,
      user: { uid: 1000, gid: 1001, additionalGids: [5, 7], umask: 0o27 },
      cwd: '/home/app',
      env: ['PATH=/bin', 'GREETING=hey'],
    };
    const r = await run([], plainIo, spec);
    expect(r.stdout.trim().split('\n')).toEqual(['1000', '1001', '1001 5 7', '0027', '/home/app', 'hey', '1024', 'CapEff:\t0000000000000000']);
    expect(r.exit.exitStatus).toBe(0);
  });

  it('enforces the seccomp filter (argument conditions too) in init and execs', async () => {
    const spec = defaultSpec([
      'sh',
      '-c',
      'grep ^Seccomp: /proc/self/status; touch /tmp/a; chmod 700 /tmp/a && echo 700-ok; chmod 777 /tmp/a || echo 777-denied; mkdir /tmp/d || echo mkdir-denied; echo ready; exec sleep 100',
    ]);
    spec.linux!.seccomp = {
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
        { names: ['chmod'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 0o777, op: 'SCMP_CMP_EQ' }] },
        { names: ['fchmodat'], action: 'SCMP_ACT_ERRNO', args: [{ index: 2, value: 0o777, op: 'SCMP_CMP_EQ' }] },
        { names: ['no_such_syscall'], action: 'SCMP_ACT_ERRNO' },
      ],
    };
    const { id } = await create([], { ...plainIo, stderr: true }, spec);
    await mgr.startContainer(id);
    let out = '';
    while (!out.includes('ready')) {
      const r = await mgr.readStream(id, '', 'stdout', 4096);
      if (r.eof) break;
      out += r.data.toString();
    }
    expect(out.trim().split('\n')).toEqual(['Seccomp:\t2', '700-ok', '777-denied', 'mkdir-denied', 'ready']);
    await mgr.execProcess(id, 'e1', { args: ['sh', '-c', 'mkdir /tmp/e 2>&1 || echo exec-denied'], env: ['PATH=/bin'] }, plainIo);
    const [eout] = await Promise.all([readAll(id, 'e1', 'stdout'), mgr.waitProcess(id, 'e1')]);
    expect(eout).toContain('Permission denied');
    expect(eout).toContain('exec-denied');
    await mgr.signalProcess(id, '', 9, true);
  });

  it('passes arguments with newlines, tabs and backslashes unchanged', async () => {
    const r = await run(['sh', '-c', 'printf "%s|" "$0" "$1"; echo\necho second-line', 'a\tb', 'c\\n\\d']);
    expect(r.stdout).toBe('a\tb|c\\n\\d|\nsecond-line\n');
    expect(r.exit.exitStatus).toBe(0);
  });

  it('makes device nodes, defaults HOME to / without /etc/passwd, sets domainname, keeps nosuid/nodev/noexec on read-only paths', async () => {
    const spec = defaultSpec([
      'sh',
      '-c',
      'stat -c "%F %t:%T %a" /dev/null /dev/tty; echo HOME=$HOME; cat /proc/sys/kernel/domainname; grep " /proc/sys " /proc/self/mountinfo | cut -d" " -f6',
    ]);
    spec.domainname = 'example.org';
    const r = await run([], plainIo, spec);
    expect(r.stdout.trim().split('\n')).toEqual([
      'character special file 1:3 666',
      'character special file 5:0 666',
      'HOME=/',
      'example.org',
      'ro,nosuid,nodev,noexec,relatime',
    ]);
    expect(r.exit.exitStatus).toBe(0);
  });

  it('rejects createContainer when the executable is missing, naming it, and leaves nothing behind', async () => {
    const id = `missing-${process.pid}`;
    const err = await mgr.createContainer({ containerId: id, spec: defaultSpec(['nonexistent-tool']), layers: [], ...plainIo }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TernError);
    expect((err as Error).message).toContain('exec: "nonexistent-tool": executable file not found in $PATH');
    expect(existsSync(path.join(runDir, 'containers', id))).toBe(false);
    expect(existsSync(path.join(cgroup.root, 'tern', id))).toBe(false);
    expect(mountsUnder(scratch)).toEqual([]);
    await expect(mgr.startContainer(id)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('runs in terminal mode through a pty and applies resize', async () => {
    const io = { terminal: true, stdin: false, stdout: true, stderr: true };
    const { id } = await create(['sh', '-c', '[ -t 1 ] && echo is-a-tty; sleep 0.3; stty size'], io);
    await mgr.resizeTty(id, '', 40, 100);
    await mgr.startContainer(id);
    const out = await readAll(id, '', 'stdout');
    expect(out).toContain('is-a-tty\r\n');
    expect(out).toContain('40 100');
    expect(await readAll(id, '', 'stderr')).toBe('');
    expect((await mgr.waitProcess(id, '')).exitStatus).toBe(0);
  });

  it('execs into a running container: same hostname, rootfs and pid namespace; lists processes', async () => {
    const { id, pid } = await create(['sh', '-c', 'echo marker > /tmp/m; echo ready; exec sleep 100']);
    await mgr.startContainer(id);
    expect((await mgr.readStream(id, '', 'stdout', 100)).data.toString()).toBe('ready\n');
    const ex = await mgr.execProcess(
      id,
      'e1',
      { args: ['sh', '-c', 'hostname; cat /tmp/m; cat /proc/1/comm; echo $$'], env: ['PATH=/bin'], cwd: '/tmp' },
      plainIo,
    );
    expect(ex.pid).toBeGreaterThan(0);
    const [out, exit] = await Promise.all([readAll(id, 'e1', 'stdout'), mgr.waitProcess(id, 'e1')]);
    const lines = out.trim().split('\n');
    expect(lines.slice(0, 3)).toEqual(['tern-test', 'marker', 'sleep']);
    expect(Number(lines[3])).toBeGreaterThan(1);
    expect(exit.exitStatus).toBe(0);
    await expect(mgr.execProcess(id, 'e1', { args: ['true'] }, plainIo)).rejects.toMatchObject({ code: 'AlreadyExists' });
    await expect(mgr.execProcess(id, 'e2', { args: ['no-such-binary'], env: ['PATH=/bin'] }, plainIo)).rejects.toThrow(/executable file not found/);

    const tio = { terminal: true, stdin: true, stdout: true, stderr: true };
    await mgr.execProcess(id, 't1', { args: ['sh', '-c', '[ -t 0 ] && echo exec-tty; read line; echo got-$line'], env: ['PATH=/bin'] }, tio);
    await mgr.writeStdin(id, 't1', Buffer.from('abc\n'));
    const [tout, texit] = await Promise.all([readAll(id, 't1', 'stdout'), mgr.waitProcess(id, 't1')]);
    expect(tout).toContain('exec-tty\r\n');
    expect(tout).toContain('got-abc\r\n');
    expect(texit.exitStatus).toBe(0);

    const pids = await mgr.listProcesses(id);
    if (cgroup.root.startsWith('/sys/fs/cgroup')) expect(pids).toEqual([pid]);
    await mgr.signalProcess(id, '', 9, true);
    expect((await mgr.waitProcess(id, '')).exitStatus).toBe(137);
  });

  it('applies errors by code: NotFound, AlreadyExists, FailedPrecondition on a second start', async () => {
    await expect(mgr.startContainer('nope')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(mgr.waitProcess('nope', '')).rejects.toMatchObject({ code: 'NotFound' });
    await expect(mgr.removeContainer('nope')).rejects.toMatchObject({ code: 'NotFound' });
    const { id } = await create(['true']);
    await expect(mgr.createContainer({ containerId: id, spec: defaultSpec(['true']), layers: [], ...plainIo })).rejects.toMatchObject({
      code: 'AlreadyExists',
    });
    await expect(mgr.readStream(id, 'nope', 'stdout', 10)).rejects.toMatchObject({ code: 'NotFound' });
    await mgr.startContainer(id);
    await expect(mgr.startContainer(id)).rejects.toMatchObject({ code: 'FailedPrecondition' });
    expect((await mgr.waitProcess(id, '')).exitStatus).toBe(0);
  });

  it('removes a running container completely: processes, mounts, cgroup, directories, layers', async () => {
    const { id, pid } = await create(['sleep', '100']);
    await mgr.startContainer(id);
    const ex = await mgr.execProcess(id, 'bg', { args: ['sleep', '100'], env: ['PATH=/bin'] }, plainIo);
    expect(mountsUnder(path.join(runDir, 'containers', id)).length).toBeGreaterThan(0);
    const before = released.length;
    await mgr.removeContainer(id);
    created.delete(id);
    expect(alive(pid)).toBe(false);
    expect(alive(ex.pid)).toBe(false);
    expect(mountsUnder(path.join(runDir, 'containers', id))).toEqual([]);
    expect(existsSync(path.join(runDir, 'containers', id))).toBe(false);
    expect(existsSync(path.join(cgroup.root, 'tern', id))).toBe(false);
    expect(released.length).toBe(before + 1);
    await expect(mgr.removeContainer(id)).rejects.toMatchObject({ code: 'NotFound' });
  });

  it('kills a created-but-never-started container on remove', async () => {
    const { id, pid } = await create(['echo', 'never']);
    expect(alive(pid)).toBe(true);
    await mgr.removeContainer(id);
    created.delete(id);
    expect(alive(pid)).toBe(false);
  });
});
