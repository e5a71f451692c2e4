// Test fixtures for the container engine: compiles the real launcher, builds a
// busybox rootfs, picks a cgroup root, and provides a ctr-like default spec.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, copyFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OciSpec } from '../../../../src/agent/container/oci-types.js';

const repoRoot = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..');

/** gcc -O2 -static -Wall guest-image/launcher/tern-launch.c into dir; returns the binary path. */
export function buildLauncher(dir: string): string {
  const out = path.join(dir, 'tern-launch');
  execFileSync('gcc', ['-O2', '-static', '-Wall', '-Werror', '-o', out, path.join(repoRoot, 'guest-image/launcher/tern-launch.c')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return out;
}

/** A rootfs with /bin/busybox and its applets as symlinks to it. */
export function buildBusyboxRootfs(dir: string): string {
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'etc', 'tmp']) mkdirSync(path.join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  execFileSync('chmod', ['755', path.join(dir, 'bin/busybox')]);
  execFileSync('chroot', [dir, '/bin/busybox', '--install', '-s', '/bin']);
  return dir;
}

/** A real cgroup v2 directory for tests (hybrid host: the unified mount), else a scratch dir. */
export function makeCgroupRoot(scratch: string): { root: string; cleanup: () => void } {
  for (const mount of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    if (existsSync(path.join(mount, 'cgroup.procs')) && existsSync(path.join(mount, 'cgroup.controllers'))) {
      const root = path.join(mount, `tern-test-${process.pid}`);
      mkdirSync(root, { recursive: true });
      return {
        root,
        cleanup: () => {
          for (const d of [path.join(root, 'tern'), root]) {
            try {
              rmSync(d, { recursive: false, force: true });
            } catch {
              execFileSync('rmdir', [d]);
            }
          }
        },
      };
    }
  }
  const root = path.join(scratch, 'cgroup');
  mkdirSync(root, { recursive: true });
  return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

const CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Roughly what `ctr run` generates (oci.WithDefaultSpec) for a cgroup v1 host. */
export function defaultSpec(args: string[], over: Partial<OciSpec> = {}): OciSpec {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs' },
    hostname: 'tern-test',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      // enforced: a small deny list keeps the busybox tests working
      seccomp: { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['kexec_load', 'reboot'], action: 'SCMP_ACT_ERRNO' }] },
    },
    ...over,
  };
}
