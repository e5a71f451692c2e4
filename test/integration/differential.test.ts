// Differential suite: the same image, ctr options and probes under runc and
// under tern, outputs normalized and compared (harness/differential.ts). Each
// group of probes with the same options is ONE container run per runtime
// (a tern run boots a VM), shared by the test cases that read its sections.
// The accepted differences live in EXPECTED_DIFFERENCES, each with its reason.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import {
  compareNormalized,
  expectNoOwnLeaks,
  privateTernState,
  normalizeDevList,
  normalizeLines,
  normalizeMountinfo,
  PROBES,
  probeScript,
  runPair,
  runPairWithSpec,
  runWithSpec,
  type PairResult,
  type Probe,
  type Section,
  type SpecJson,
} from './harness/differential.js';
import { snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

describe('runc vs tern: same image, options and probes', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  // tern keeps its sandboxes in a state directory of this suite's own
  const state = privateTernState();
  const savedRunDir = process.env.TERN_RUN_DIR;
  const markers = () => [c.dir, state.dir];

  beforeAll(async () => {
    process.env.TERN_RUN_DIR = join(state.dir, 'state'); // where the leak detector looks
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')], env: state.env });
    image = await importTestImage(c);
  });
  afterAll(async () => {
    try {
      await c?.stop();
    } finally {
      state.cleanup();
      if (savedRunDir === undefined) delete process.env.TERN_RUN_DIR;
      else process.env.TERN_RUN_DIR = savedRunDir;
    }
  });
  beforeEach(async () => {
    before = await snapshot({ scope: markers() });
  });
  afterEach(async () => {
    await expectNoOwnLeaks(c, before, markers());
  });

  /** Runs `fn` once, on first use; later callers share the result. */
  const once = <T>(fn: () => Promise<T>) => {
    let p: Promise<T> | undefined;
    return () => (p ??= fn());
  };

  const section = (pair: PairResult, rt: 'runc' | 'tern', name: string): Section => {
    const s = pair.sections[rt][name];
    if (!s) throw new Error(`${rt}: no section ${name}\n--- stdout ---\n${pair[rt].stdout}\n--- stderr ---\n${pair[rt].stderr}`);
    return s;
  };

  /** Normalize one section on both sides, drop the expected differences, and require the rest to be equal. */
  const same = (pair: PairResult, name: string, normalize: (s: string) => string[], probe = name) => {
    const r = section(pair, 'runc', name);
    const t = section(pair, 'tern', name);
    const cmp = compareNormalized(probe, normalize(r.out), normalize(t.out));
    expect(cmp.tern, `${name}: tern (left) vs runc (right)`).toEqual(cmp.runc);
    expect(t.rc, `${name}: exit status`).toBe(r.rc);
    return { runc: r, tern: t, cmp };
  };
  const plain = (s: string) => normalizeLines(s);
  const sorted = (s: string) => normalizeLines(s, true);

  const bothOk = (pair: PairResult) => {
    expect(pair.runc.code, pair.runc.stderr).toBe(0);
    expect(pair.tern.code, pair.tern.stderr).toBe(0);
  };

  // ---------- ctr run with no options ----------
  const defaults = once(() =>
    runPair(
      c,
      'diff-default',
      [],
      image,
      probeScript([
        PROBES.id,
        PROBES.status,
        PROBES.ulimit,
        PROBES.env,
        PROBES.pwd,
        PROBES.hostname,
        PROBES.umask,
        PROBES.mountinfo,
        PROBES.dev,
        PROBES.masked,
      ]),
    ),
  );

  describe('default options', () => {
    it('id', async () => {
      const p = await defaults();
      bothOk(p);
      const { runc } = same(p, 'id', plain);
      expect(runc.out).toMatch(/^uid=0\(root\) gid=0\(root\)/);
    });
    it('capabilities, NoNewPrivs and Seccomp in /proc/self/status', async () => {
      const { runc } = same(await defaults(), 'status', plain);
      expect(runc.out).toContain('CapBnd:\t00000000a80425fb');
      expect(runc.out).toContain('NoNewPrivs:\t1');
    });
    it('ulimit -a', async () => {
      const { runc, cmp } = same(await defaults(), 'ulimit', plain);
      expect(runc.out).toMatch(/open files\s+\(-n\) 1024/);
      expect(cmp.excused.runc.length).toBe(2);
    });
    it('env (sorted)', async () => {
      const { runc } = same(await defaults(), 'env', sorted);
      expect(runc.out).toContain('HOME=/root');
    });
    it('pwd', async () => {
      expect(same(await defaults(), 'pwd', plain).runc.out).toBe('/');
    });
    it("hostname: the VM's own name (ctr sets none)", async () => {
      const p = await defaults();
      const { cmp } = same(p, 'hostname', plain);
      // 'tern' for a cold-booted VM, 'tern-<first 12 of the sandbox id>' for a clone of a template.
      expect(cmp.excused.tern).toHaveLength(1);
      expect(cmp.excused.tern[0]).toMatch(/^tern(-[A-Za-z0-9-]{1,12})?$/);
    });
    it('umask', async () => {
      expect(same(await defaults(), 'umask', plain).runc.out).toBe('0022');
    });
    it('mountinfo: mount points, ro/rw and fs types', async () => {
      const { runc } = same(await defaults(), 'mountinfo', normalizeMountinfo);
      expect(normalizeMountinfo(runc.out)).toContain('/proc/sys ro,nosuid,nodev,noexec,relatime proc');
    });
    it('ls -la /dev: names, types and device numbers', async () => {
      const { runc } = same(await defaults(), 'dev', normalizeDevList);
      expect(normalizeDevList(runc.out)).toContain('null c 1:3');
    });
    it('masked and read-only paths fail the same way', async () => {
      const { runc } = same(await defaults(), 'masked', plain);
      expect(runc.out).toMatch(/write \/proc\/sys\/kernel\/domainname: rc=1 .*Read-only file system/);
      expect(runc.out).toContain('cat /proc/keys: rc=0 0');
    });
  });

  // ---------- ctr options that combine in one run ----------
  const seccompProbe: Probe = { name: 'seccomp-effect', sh: 'unshare -U true; echo "unshare rc=$?"' };
  const rootProbe: Probe = { name: 'read-only-root', sh: 'touch /newfile; echo "touch rc=$?"; echo x > /tmp/f; echo "tmp rc=$?"' };
  const variations = once(() =>
    runPair(
      c,
      'diff-options',
      [
        '--env',
        'FOO=bar baz',
        '--env',
        'PATH=/bin:/usr/bin',
        '--cwd',
        '/var',
        '--read-only',
        '--cap-add',
        'CAP_NET_ADMIN',
        '--cap-drop',
        'CAP_CHOWN',
        '--allow-new-privs',
        '--seccomp',
        '--memory-limit',
        String(48 * 1024 * 1024),
        '--mount',
        'type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro',
      ],
      image,
      probeScript([PROBES.env, PROBES.pwd, PROBES.status, rootProbe, seccompProbe, PROBES.memoryLimit, { ...PROBES.mountinfo, name: 'mountinfo-options' }]),
    ),
  );

  describe('ctr options', () => {
    it('--env', async () => {
      const p = await variations();
      bothOk(p);
      const { runc } = same(p, 'env', sorted);
      expect(runc.out).toContain('FOO=bar baz');
      expect(runc.out).toContain('PATH=/bin:/usr/bin');
    });
    it('--cwd', async () => {
      expect(same(await variations(), 'pwd', plain).runc.out).toBe('/var');
    });
    it('--read-only', async () => {
      const p = await variations();
      const { runc } = same(p, 'read-only-root', plain);
      expect(runc.out).toContain('touch rc=1');
      const mi = same(p, 'mountinfo-options', normalizeMountinfo, 'mountinfo-options');
      expect(normalizeMountinfo(mi.runc.out)).toContain('/ ro,relatime overlay');
    });
    it('--cap-add CAP_NET_ADMIN --cap-drop CAP_CHOWN --allow-new-privs --seccomp: /proc/self/status', async () => {
      const { runc } = same(await variations(), 'status', plain);
      expect(runc.out).toContain('CapEff:\t00000000a80435fa'); // default set - CHOWN + NET_ADMIN
      expect(runc.out).toContain('NoNewPrivs:\t0');
      expect(runc.out).toContain('Seccomp:\t2');
    });
    it('--seccomp: the default profile denies what it denies under runc', async () => {
      const { runc } = same(await variations(), 'seccomp-effect', plain);
      expect(runc.out).toMatch(/unshare rc=[1-9]/);
    });
    it("--memory-limit, read from the container's own cgroup (v1 under runc here, v2 in the guest)", async () => {
      expect(same(await variations(), 'memory-limit', plain).runc.out).toBe(String(48 * 1024 * 1024));
    });
  });

  it('--tty: a terminal on stdio, TERM set', async () => {
    // the pty comes from the container's own devpts (its name there) and is bound on /dev/console
    const ttyProbe: Probe = {
      name: 'tty',
      sh: 'for fd in 0 1 2; do test -t $fd && echo "fd$fd tty"; done; tty; ls -l /dev/console | cut -c1; ls -1 /dev/pts; stat -c "%t:%T" /dev/console "$(tty)"',
    };
    const p = await runPair(c, 'diff-tty', ['--tty'], image, probeScript([ttyProbe, PROBES.env, PROBES.status]), { tty: true });
    bothOk(p);
    const { runc, cmp } = same(p, 'tty', plain);
    expect(runc.out).toMatch(/^fd0 tty\nfd1 tty\nfd2 tty\n\/dev\/pts\/0\nc\n0\nptmx\n(\w+:\w+)\n\1$/);
    expect(cmp.excused.tern).toEqual([]);
    expect(same(p, 'env', sorted).runc.out).toContain('TERM=xterm');
    same(p, 'status', plain);
  });

  it("--privileged: every capability, no masked or read-only paths, the guest's devices", async () => {
    const devProbe: Probe = { name: 'privileged-dev', sh: 'ls -la /dev' };
    // (no reads of /proc/kcore here: unmasked in the guest, it is the size of the address space)
    const procSys: Probe = { name: 'privileged-proc-sys', sh: 'echo x > /proc/sys/kernel/domainname; echo "rc=$?"; cat /proc/sys/kernel/domainname' };
    const p = await runPair(
      c,
      'diff-priv',
      ['--privileged'],
      image,
      probeScript([PROBES.status, { ...PROBES.mountinfo, name: 'privileged-mountinfo' }, devProbe, procSys]),
    );
    bothOk(p);
    const { runc } = same(p, 'status', plain);
    expect(runc.out).toMatch(/CapEff:\t000001ff/);
    const mi = same(p, 'privileged-mountinfo', normalizeMountinfo);
    expect(normalizeMountinfo(mi.runc.out).some((l) => l.startsWith('/proc/sys '))).toBe(false);
    same(p, 'privileged-dev', normalizeDevList);
    // the standard nodes are the same on both sides
    const std = (s: string) => normalizeDevList(s).filter((l) => /^(null|zero|full|random|urandom|tty) /.test(l));
    expect(std(section(p, 'tern', 'privileged-dev').out)).toEqual(std(section(p, 'runc', 'privileged-dev').out));
    expect(std(section(p, 'runc', 'privileged-dev').out).length).toBe(6);
    expect(same(p, 'privileged-proc-sys', plain).runc.out).toBe('rc=0\nx');
  });

  // ---------- spec fields ctr cannot set: the spec is edited ----------
  const FSIZE = 1024 * 1024;
  const specRun = once(() =>
    runPairWithSpec(
      c,
      'diff-spec',
      image,
      probeScript(
        [
          PROBES.id,
          PROBES.umask,
          PROBES.ulimit,
          PROBES.env,
          { name: 'uts', sh: 'hostname; cat /proc/sys/kernel/domainname' },
          { name: 'sysctl', sh: 'cat /proc/sys/kernel/msgmax /proc/sys/kernel/shmmni' },
          { name: 'extra-paths', sh: 'wc -c < /etc/group; touch /tmp/x; echo "tmp rc=$?"; touch /var/tmp/x; echo "var rc=$?"' },
          { name: 'fsize', sh: '(dd if=/dev/zero of=/var/tmp/big bs=1k count=2048 2>/dev/null); echo "dd rc=$?"; wc -c < /var/tmp/big' },
          { name: 'nofile', sh: 'ulimit -n; (exec 3</dev/null 40</dev/null) 2>/dev/null; echo "fd40 rc=$?"' },
        ],
        // the init itself is killed by its file size limit last
        'exec dd if=/dev/zero of=/var/tmp/big2 bs=1k count=2048',
      ),
      (spec) => {
        spec.process.user = { uid: 65534, gid: 65534, additionalGids: [10, 20], umask: 0o027 };
        spec.process.rlimits = [
          { type: 'RLIMIT_NOFILE', soft: 32, hard: 64 },
          { type: 'RLIMIT_FSIZE', soft: FSIZE, hard: FSIZE },
          { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
        ];
        spec.hostname = 'difftest';
        spec.domainname = 'diff.example';
        spec.linux.sysctl = { 'kernel.msgmax': '12345', 'kernel.shmmni': '2048' };
        spec.linux.maskedPaths = [...spec.linux.maskedPaths, '/etc/group'];
        spec.linux.readonlyPaths = [...spec.linux.readonlyPaths, '/tmp'];
      },
    ),
  );

  describe('spec fields ctr cannot set', () => {
    it('user, additional groups', async () => {
      const p = await specRun();
      const { runc } = same(p, 'id', plain);
      expect(runc.out).toBe('uid=65534(nobody) gid=65534 groups=10,20');
    });
    it('umask', async () => {
      expect(same(await specRun(), 'umask', plain).runc.out).toBe('0027');
    });
    it('rlimits (ulimit -a) and HOME of the user', async () => {
      const p = await specRun();
      const { runc } = same(p, 'ulimit', plain);
      expect(runc.out).toMatch(/file size \(blocks\)\s+\(-f\) 2048/);
      expect(same(p, 'env', sorted).runc.out).toContain('HOME=/nonexistent');
    });
    it('hostname, domainname and sysctls', async () => {
      const p = await specRun();
      const uts = same(p, 'uts', plain);
      expect(uts.runc.out.split('\n')[0]).toBe('difftest');
      expect(uts.cmp.excused.tern).toEqual(['diff.example']);
      expect(same(p, 'sysctl', plain).runc.out).toBe('12345\n2048');
    });
    it('extra masked and read-only paths', async () => {
      const { runc } = same(await specRun(), 'extra-paths', plain);
      expect(runc.out).toBe('0\ntouch: /tmp/x: Read-only file system\ntmp rc=1\nvar rc=0');
    });
    it('a process past RLIMIT_FSIZE dies of SIGXFSZ; RLIMIT_NOFILE refuses fd 40; the init stopped by its rlimit ends the same way', async () => {
      const p = await specRun();
      expect(same(p, 'fsize', plain).runc.out).toMatch(new RegExp(`^(File size limit exceeded\n)?dd rc=153\n${FSIZE}$`));
      expect(same(p, 'nofile', plain).runc.out).toMatch(/^32\nfd40 rc=[1-9]/);
      // the init is pid 1 of its namespace: the kernel drops SIGXFSZ for it, so its write fails with EFBIG instead
      expect(p.runc.code, p.runc.stderr).toBe(1);
      expect(p.runc.stderr).toMatch(/File too large/);
      expect(p.tern.code, p.tern.stderr).toBe(p.runc.code);
      expect(p.tern.stderr).toBe(p.runc.stderr);
    });
  });

  describe('bad specs: refused by both, tern names the field', () => {
    const badSpecs: [string, (spec: SpecJson) => void, RegExp][] = [
      ['relative cwd', (s) => void (s.process.cwd = 'tmp'), /process\.cwd: must be absolute: tmp: invalid argument/],
      ['empty args', (s) => void (s.process.args = []), /process\.args: must not be empty: invalid argument/],
      [
        'unknown rlimit',
        (s) => void (s.process.rlimits = [{ type: 'RLIMIT_FOO', soft: 1, hard: 1 }]),
        /process\.rlimits: unknown type RLIMIT_FOO: invalid argument/,
      ],
      [
        'a sysctl global to the kernel',
        (s) => void (s.linux.sysctl = { 'vm.swappiness': '10' }),
        /linux\.sysctl: vm\.swappiness is not in a separate kernel namespace.*: invalid argument/,
      ],
      [
        'a namespace path that does not exist',
        (s) => {
          s.linux.namespaces = s.linux.namespaces.map((n: { type: string }) => (n.type === 'ipc' ? { type: 'ipc', path: '/proc/999999/ns/ipc' } : n));
        },
        /open namespace \/proc\/999999\/ns\/ipc: No such file or directory/,
      ],
      ['a cwd that is a file', (s) => void (s.process.cwd = '/etc/passwd'), /cwd \/etc\/passwd: Not a directory/],
      ['a command missing from the image', (s) => void (s.process.args = ['/no/such']), /exec: "\/no\/such": stat \/no\/such: No such file or directory/],
    ];
    for (const [name, edit, message] of badSpecs) {
      it(name, async () => {
        const slug = name.replace(/\W+/g, '-');
        const [runc, tern] = await Promise.all([
          runWithSpec(c, 'runc', image, `diff-bad-${slug}-runc`, ['true'], edit),
          runWithSpec(c, 'tern', image, `diff-bad-${slug}-tern`, ['true'], edit),
        ]);
        expect(runc.code, runc.stderr).not.toBe(0);
        expect(tern.code, tern.stderr).not.toBe(0);
        expect(tern.stderr).toMatch(message);
      });
    }
    it('a relative mount destination is taken from / by both', async () => {
      const p = await runPairWithSpec(c, 'diff-relmount', image, probeScript([{ name: 'relmount', sh: 'grep -c " /rel-tmp " /proc/self/mountinfo' }]), (s) => {
        s.mounts.push({ destination: 'rel-tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] });
      });
      bothOk(p);
      expect(same(p, 'relmount', plain).runc.out).toBe('1');
    });
  });

  it('a spec field tern cannot honour fails with InvalidArgument naming the field', async () => {
    const r = await runWithSpec(c, 'tern', image, 'diff-refused-tern', ['true'], (spec) => {
      spec.linux.namespaces = [...spec.linux.namespaces, { type: 'user' }];
      spec.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
      spec.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/linux\.(uidMappings|namespaces)/);
    expect(r.stderr).toMatch(/invalid argument/i);
  });
});
