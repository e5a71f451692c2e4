// Pure spec -> plan translation: exact plans, exact plan text, errors by field.
import { describe, expect, it } from 'vitest';
import { renderPlan, type LaunchPlan } from '../../../../src/agent/container/plan.js';
import { MS, parseMountOptions, translateMount, translateProcess, translateSpec } from '../../../../src/agent/container/plan-from-spec.js';
import type { OciSpec } from '../../../../src/agent/container/oci-types.js';
import { defaultSpec } from './fixtures.js';

const ctx = { rootfs: '/run/tern-agent/containers/c1/rootfs', cgroup: { path: '/sys/fs/cgroup/tern/c1', returnTo: '/sys/fs/cgroup' }, terminal: false };
const stdDevices: LaunchPlan['devices'] = (
  [
    ['null', 1, 3],
    ['zero', 1, 5],
    ['full', 1, 7],
    ['random', 1, 8],
    ['urandom', 1, 9],
    ['tty', 5, 0],
  ] as const
).map(([n, major, minor]) => ({ path: `/dev/${n}`, type: 'c', major, minor, mode: 0o666, uid: 0, gid: 0 }));
const stdSymlinks = [
  { target: '/proc/self/fd', link: '/dev/fd' },
  { target: '/proc/self/fd/0', link: '/dev/stdin' },
  { target: '/proc/self/fd/1', link: '/dev/stdout' },
  { target: '/proc/self/fd/2', link: '/dev/stderr' },
];

describe('translateSpec', () => {
  it('translates a small spec into the exact plan', () => {
    const spec: OciSpec = {
      process: {
        args: ['sh', '-c', 'echo hi'],
        env: ['PATH=/bin', 'A=b c'],
        cwd: '/work',
        user: { uid: 1000, gid: 100, umask: 0o22, additionalGids: [10, 20] },
        rlimits: [
          { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 },
          { type: 'RLIMIT_CORE', soft: -1, hard: 2 ** 64 },
        ],
        noNewPrivileges: true,
        oomScoreAdj: 100,
        capabilities: { bounding: ['CAP_CHOWN', 'CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'], ambient: ['CAP_NET_ADMIN'] },
      },
      root: { path: 'rootfs', readonly: true },
      hostname: 'h1',
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
        { destination: '/etc/hosts', type: 'bind', source: '/run/shared/hosts', options: ['rbind', 'ro', 'rprivate'] },
      ],
      linux: {
        namespaces: [
          { type: 'pid' },
          { type: 'mount' },
          { type: 'network', path: '/var/run/netns/x' },
          { type: 'ipc', path: '/proc/7/ns/ipc' },
          { type: 'uts' },
        ],
        maskedPaths: ['/proc/kcore'],
        readonlyPaths: ['/proc/sys'],
        sysctl: { 'kernel.shmmax': '1000' },
        resources: { memory: { limit: 64 << 20 }, cpu: { shares: 1024, quota: 50000, period: 100000 }, pids: { limit: 100 } },
      },
    };
    const t = translateSpec(spec, { ...ctx, statSource: (p) => (p.endsWith('hosts') ? 'file' : 'dir') });
    const expected: LaunchPlan = {
      mode: 'create',
      cgroup: ctx.cgroup,
      unshare: ['pid', 'mnt', 'uts'],
      join: [{ type: 'ipc', path: '/proc/7/ns/ipc' }],
      rootfs: ctx.rootfs,
      rootPropagation: MS.SLAVE | MS.REC,
      readonlyRoot: true,
      mounts: [
        { kind: 'dir', flags: MS.NOSUID | MS.NOEXEC | MS.NODEV, source: 'proc', target: '/proc', fstype: 'proc', data: '' },
        { kind: 'file', flags: MS.BIND | MS.REC, source: '/run/shared/hosts', target: '/etc/hosts', fstype: '', data: '' },
        { kind: 'none', flags: MS.BIND | MS.REMOUNT | MS.RDONLY, source: '', target: '/etc/hosts', fstype: '', data: '' },
        { kind: 'none', flags: MS.PRIVATE | MS.REC, source: '', target: '/etc/hosts', fstype: '', data: '' },
      ] as LaunchPlan['mounts'],
      devices: stdDevices,
      symlinks: stdSymlinks,
      console: false,
      maskedPaths: ['/proc/kcore'],
      readonlyPaths: ['/proc/sys'],
      sysctls: [{ path: 'kernel/shmmax', value: '1000' }],
      hostname: 'h1',
      terminal: false,
      uid: 1000,
      gid: 100,
      additionalGids: [10, 20],
      umask: 0o22,
      cwd: '/work',
      env: ['PATH=/bin', 'A=b c'],
      args: ['sh', '-c', 'echo hi'],
      rlimits: [
        { resource: 7, soft: 1024n, hard: 4096n },
        { resource: 4, soft: (1n << 64n) - 1n, hard: (1n << 64n) - 1n },
      ],
      noNewPrivileges: true,
      oomScoreAdj: 100,
      capabilities: { bounding: (1n << 0n) | (1n << 5n), effective: 1n << 5n, permitted: 1n << 5n, inheritable: 0n, ambient: 1n << 12n },
      winsize: undefined,
    };
    expect(t.plan).toEqual(expected);
    expect(t.limits).toEqual({ memoryMax: 64 << 20, cpuShares: 1024, cpuQuota: 50000, cpuPeriod: 100000, pidsMax: 100 });
    expect(t.warnings).toEqual(["linux.namespaces: network path /var/run/netns/x ignored; the VM's network is shared"]);

    expect(renderPlan(t.plan)).toBe(
      [
        'version\t1',
        'mode\tcreate',
        'cgroup\t/sys/fs/cgroup/tern/c1\t/sys/fs/cgroup',
        'setns\tipc\t/proc/7/ns/ipc',
        'unshare\tpid',
        'unshare\tmnt',
        'unshare\tuts',
        `root\t${ctx.rootfs}`,
        `propagation\t${MS.SLAVE | MS.REC}`,
        'mount\tdir\t14\tproc\t/proc\tproc\t',
        'mount\tfile\t20480\t/run/shared/hosts\t/etc/hosts\t\t',
        'mount\tnone\t4129\t\t/etc/hosts\t\t',
        'mount\tnone\t278528\t\t/etc/hosts\t\t',
        'device\t/dev/null\tc\t1\t3\t0666\t0\t0',
        'device\t/dev/zero\tc\t1\t5\t0666\t0\t0',
        'device\t/dev/full\tc\t1\t7\t0666\t0\t0',
        'device\t/dev/random\tc\t1\t8\t0666\t0\t0',
        'device\t/dev/urandom\tc\t1\t9\t0666\t0\t0',
        'device\t/dev/tty\tc\t5\t0\t0666\t0\t0',
        'symlink\t/proc/self/fd\t/dev/fd',
        'symlink\t/proc/self/fd/0\t/dev/stdin',
        'symlink\t/proc/self/fd/1\t/dev/stdout',
        'symlink\t/proc/self/fd/2\t/dev/stderr',
        'mask\t/proc/kcore',
        'readonly_path\t/proc/sys',
        'readonly_root',
        'sysctl\tkernel/shmmax\t1000',
        'hostname\th1',
        'rlimit\t7\t1024\t4096',
        'rlimit\t4\t18446744073709551615\t18446744073709551615',
        'oom_score_adj\t100',
        'user\t1000\t100',
        'groups\t10\t20',
        'umask\t0022',
        'cwd\t/work',
        'env\tPATH=/bin',
        'env\tA=b c',
        'arg\tsh',
        'arg\t-c',
        'arg\techo hi',
        'no_new_privs',
        'caps\t21\t20\t20\t0\t1000',
        '',
      ].join('\n'),
    );
  });

  it("accepts ctr's default spec: cgroup becomes cgroup2, seccomp is compiled, network is not unshared", () => {
    const t = translateSpec(defaultSpec(['true']), { ...ctx, terminal: true });
    expect(t.plan.unshare).toEqual(['pid', 'ipc', 'uts', 'mnt']);
    expect(t.plan.mounts.find((m) => m.target === '/sys/fs/cgroup')).toEqual({
      kind: 'dir',
      flags: MS.RDONLY | MS.NOSUID | MS.NOEXEC | MS.NODEV,
      source: 'cgroup2',
      target: '/sys/fs/cgroup',
      fstype: 'cgroup2',
      data: '',
    });
    expect(t.plan.mounts.find((m) => m.target === '/dev')).toMatchObject({ flags: MS.NOSUID | MS.STRICTATIME, data: 'mode=755,size=65536k', fstype: 'tmpfs' });
    expect(t.plan.symlinks).toContainEqual({ target: 'pts/ptmx', link: '/dev/ptmx' });
    expect(t.plan.console).toBe(true);
    expect(t.plan.terminal).toBe(true);
    expect(t.warnings).toEqual([]);
    expect(t.plan.seccomp?.program.length).toBeGreaterThan(0);
    expect(t.limits).toEqual({});
  });

  it("carries a pinned container's guest CPUs into its cgroup limits and warns about mems", () => {
    const t = translateSpec({ process: { args: ['true'] }, linux: { resources: { cpu: { cpus: '0-1', mems: '0' } } } }, ctx);
    expect(t.limits).toEqual({ cpusetCpus: '0-1' });
    expect(t.warnings).toContain('linux.resources.cpu.mems: ignored (the guest has one memory node)');
  });

  it('rejects what tern cannot honour, naming the field', () => {
    const bad: [Partial<OciSpec>, RegExp][] = [
      [{ linux: { namespaces: [{ type: 'user' }] } }, /linux\.namespaces: user/],
      [{ linux: { namespaces: [{ type: 'mount', path: '/proc/1/ns/mnt' }] } }, /linux\.namespaces/],
      [{ linux: { uidMappings: [{}] } }, /linux\.uidMappings/],
      [{ hooks: { prestart: [{ path: '/x' }] } }, /hooks\.prestart/],
      [{ hostname: 'x', linux: { namespaces: [{ type: 'pid' }] } }, /hostname/],
      [{ process: { args: [] } }, /process\.args/],
      [{ process: { args: ['x'], rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] } }, /process\.rlimits: unknown type RLIMIT_BOGUS/],
      [{ process: { args: ['x'], cwd: 'rel' } }, /process\.cwd/],
      [{ mounts: [{ destination: '/x', type: 'bind', source: 'relative', options: ['bind'] }] }, /mounts: bind source/],
      [{ linux: { resources: { unified: { 'memory.high': '1' } } } }, /linux\.resources\.unified/],
      [{ domainname: 'x', linux: { namespaces: [{ type: 'pid' }] } }, /domainname: needs a uts namespace/],
      [{ linux: { maskedPaths: ['proc/kcore'] } }, /linux\.maskedPaths: path must be absolute/],
      [{ linux: { readonlyPaths: ['sys'] } }, /linux\.readonlyPaths: path must be absolute/],
      [{ linux: { devices: [{ path: '/dev/x', type: 'q' }] } }, /linux\.devices: \/dev\/x: unknown type/],
      [{ linux: { devices: [{ path: '/dev/x', type: 'c' }] } }, /linux\.devices: \/dev\/x: major and minor/],
      [{ linux: { seccomp: { defaultAction: 'SCMP_ACT_NOTIFY' } } }, /linux\.seccomp\.defaultAction/],
      [{ linux: { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/agent.sock' } } }, /linux\.seccomp\.listenerPath/],
      [{ linux: { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_NEW_LISTENER'] } } }, /linux\.seccomp\.flags/],
      [
        { linux: { seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_BOGUS' }] } } },
        /linux\.seccomp\.syscalls\[0\]\.action/,
      ],
      [
        {
          linux: {
            seccomp: {
              defaultAction: 'SCMP_ACT_ALLOW',
              syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }],
            },
          },
        },
        /linux\.seccomp\.syscalls\[0\]\.args\[0\]\.index/,
      ],
    ];
    for (const [over, re] of bad) {
      expect(() => translateSpec({ process: { args: ['true'] }, ...over }, ctx)).toThrow(re);
      try {
        translateSpec({ process: { args: ['true'] }, ...over }, ctx);
      } catch (e) {
        expect((e as { code: string }).code).toBe('InvalidArgument');
      }
    }
  });

  it("creates devices with the guest's numbers and leaves out those the guest lacks (privileged: guest devices)", () => {
    const guest: Record<string, { type: 'c' | 'b'; major: number; minor: number }> = {
      '/dev/vda': { type: 'b', major: 254, minor: 0 },
      '/dev/ttyS0': { type: 'c', major: 4, minor: 64 },
    };
    const t = translateSpec(
      {
        process: { args: ['true'] },
        linux: {
          devices: [
            { path: '/dev/vda', type: 'b', major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 },
            { path: '/dev/ttyS0', type: 'c', major: 4, minor: 64 },
            { path: '/dev/kvm', type: 'c', major: 10, minor: 232 },
            { path: '/dev/null', type: 'c', major: 1, minor: 3, fileMode: 0o600 },
            { path: '/dev/fifo0', type: 'p' },
          ],
        },
      },
      { ...ctx, guestDevice: (p) => guest[p] ?? (p === '/dev/null' ? { type: 'c', major: 1, minor: 3 } : undefined) },
    );
    expect(t.plan.devices).toEqual([
      { ...stdDevices[0], mode: 0o600 },
      ...stdDevices.slice(1),
      { path: '/dev/vda', type: 'b', major: 254, minor: 0, mode: 0o660, uid: 0, gid: 6 },
      { path: '/dev/ttyS0', type: 'c', major: 4, minor: 64, mode: 0o666, uid: 0, gid: 0 },
      { path: '/dev/fifo0', type: 'p', major: 0, minor: 0, mode: 0o666, uid: 0, gid: 0 },
    ]);
    expect(t.warnings).toEqual(['linux.devices: /dev/kvm is not a character device in the guest; left out (the VM has its own devices)']);
  });

  it('carries domainname and the seccomp filter into the plan text', () => {
    const t = translateSpec(
      {
        process: { args: ['true'] },
        hostname: 'h',
        domainname: 'example.org',
        linux: { namespaces: [{ type: 'uts' }], seccomp: { defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG'] } },
      },
      ctx,
    );
    const text = renderPlan(t.plan);
    expect(text).toContain('hostname\th\ndomainname\texample.org\n');
    expect(text).toMatch(/\nseccomp\t2\t[0-9a-f]+\n$/);
  });

  it('escapes backslash, tab and newline in plan values and refuses NUL', () => {
    const t = translateSpec({ process: { args: ['sh', '-c', 'echo a\tb\necho c\\d'] } }, ctx);
    expect(renderPlan(t.plan)).toContain('\narg\techo a\\tb\\necho c\\\\d\n');
    const n = translateSpec({ process: { args: ['echo', 'a\0b'] } }, ctx);
    expect(() => renderPlan(n.plan)).toThrow(/must not contain NUL/);
  });
});

describe('mount options', () => {
  it('separates flags, propagation and data', () => {
    expect(parseMountOptions(['rw', 'nosuid', 'relatime', 'mode=755', 'rshared', 'size=1m', 'ro'])).toEqual({
      flags: MS.NOSUID | MS.RELATIME | MS.RDONLY,
      propagation: [MS.SHARED | MS.REC],
      bind: false,
      recursive: false,
      data: ['mode=755', 'size=1m'],
    });
  });
  it('turns a plain bind into one call and bind+ro into bind then remount', () => {
    expect(translateMount({ destination: '/a', source: '/b', options: ['bind'] })).toEqual([
      { kind: 'dir', flags: MS.BIND, source: '/b', target: '/a', fstype: '', data: '' },
    ]);
    expect(translateMount({ destination: '/a', type: 'none', source: '/b', options: ['rbind', 'ro', 'nosuid'] })).toEqual([
      { kind: 'dir', flags: MS.BIND | MS.REC, source: '/b', target: '/a', fstype: '', data: '' },
      { kind: 'none', flags: MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID, source: '', target: '/a', fstype: '', data: '' },
    ]);
  });
  it('takes a relative destination as relative to / (as runc does) and refuses a mount without one', () => {
    expect(translateMount({ destination: 'run/x', type: 'tmpfs', source: 'tmpfs' })[0]?.target).toBe('/run/x');
    expect(() => translateMount({ destination: '', type: 'tmpfs', source: 'tmpfs' })).toThrowError(/mounts: a mount has no destination/);
  });
});

describe('translateProcess', () => {
  it("joins the init process's namespaces and root", () => {
    const { plan } = translateProcess(
      { args: ['ls'], env: ['PATH=/bin'], terminal: true, consoleSize: { height: 30, width: 90 } },
      {
        initPid: 42,
        cgroup: ctx.cgroup,
        terminal: true,
      },
    );
    expect(plan.mode).toBe('exec');
    expect(plan.join).toEqual(['pid', 'ipc', 'uts', 'cgroup', 'mnt'].map((t) => ({ type: t, path: `/proc/42/ns/${t}` })));
    expect(plan.execRoot).toBe('/proc/42/root');
    expect(plan.winsize).toEqual({ rows: 30, cols: 90 });
    expect(plan.mounts).toEqual([]);
    expect(renderPlan(plan)).toContain('exec_root\t/proc/42/root\n');
    expect(renderPlan(plan)).not.toContain('propagation');
  });
});
