import { mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareGuestSpec, vmSize } from '../../../src/shim/guest-spec';

const tmp = mkdtempSync(join(tmpdir(), 'tern-gspec-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('guest spec rewriting', () => {
  it('copies host files in, turns the pod shm into a guest tmpfs, keeps guest-side mounts', () => {
    const hosts = join(tmp, 'hosts');
    writeFileSync(hosts, '127.0.0.1 localhost\n10.88.0.7 web\n');
    chmodSync(hosts, 0o644);
    const shm = join(tmp, 'shm');
    mkdirSync(shm);
    const spec = {
      process: { args: ['sh'] },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/etc/hosts', type: 'bind', source: hosts, options: ['rbind', 'rprivate', 'rw'] },
        { destination: '/dev/shm', type: 'bind', source: shm, options: ['rbind', 'ro'] },
        { destination: '/dev/fuse', type: 'bind', source: '/dev/fuse', options: ['bind'] },
      ],
    };
    const out = prepareGuestSpec(JSON.stringify(spec), 'c1');
    expect(out.files).toEqual([{ path: '/run/tern-agent/files/c1/0', data: Buffer.from('127.0.0.1 localhost\n10.88.0.7 web\n'), mode: 0o644 }]);
    const mounts = JSON.parse(out.specJson).mounts;
    expect(mounts).toEqual([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/etc/hosts', type: 'bind', source: '/run/tern-agent/files/c1/0', options: ['rbind', 'rprivate', 'rw'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/fuse', type: 'bind', source: '/dev/fuse', options: ['bind'] },
    ]);
  });

  it('turns host directories and large files into volumes under the shared directory', () => {
    const vol = join(tmp, 'vol');
    mkdirSync(vol);
    const big = join(tmp, 'big');
    writeFileSync(big, Buffer.alloc((1 << 20) + 1));
    const spec = {
      mounts: [
        { destination: '/data', type: 'bind', source: vol, options: ['rbind', 'rw'] },
        { destination: '/cfg', type: 'bind', source: vol, options: ['bind', 'ro', 'nosuid'] },
        { destination: '/big', type: 'bind', source: big, options: ['rbind', 'ro', 'rw'] },
      ],
    };
    const out = prepareGuestSpec(JSON.stringify(spec), 'c2');
    expect(out.files).toEqual([]);
    expect(out.volumes).toEqual([
      { source: vol, name: 'c2/0', kind: 'dir', readOnly: false, recursive: true },
      { source: vol, name: 'c2/1', kind: 'dir', readOnly: true, recursive: false },
      { source: big, name: 'c2/2', kind: 'file', readOnly: false, recursive: true },
    ]);
    expect(JSON.parse(out.specJson).mounts).toEqual([
      { destination: '/data', type: 'bind', source: '/run/tern-agent/shared/c2/0', options: ['rbind', 'rw'] },
      { destination: '/cfg', type: 'bind', source: '/run/tern-agent/shared/c2/1', options: ['bind', 'ro', 'nosuid'] },
      { destination: '/big', type: 'bind', source: '/run/tern-agent/shared/c2/2', options: ['rbind', 'ro', 'rw'] },
    ]);
  });

  it('rejects missing sources, sockets, and ids that cannot name a directory', () => {
    const missing = { mounts: [{ destination: '/x', type: 'bind', source: join(tmp, 'nope') }] };
    expect(() => prepareGuestSpec(JSON.stringify(missing), 'c3')).toThrow(/source .*nope for \/x/);
    const sock = join(tmp, 'sock');
    const srv = spawnSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(sock)})`]);
    expect(srv.status).toBe(0);
    const sockSpec = { mounts: [{ destination: '/run/x.sock', type: 'bind', source: sock, options: ['rbind'] }] };
    expect(() => prepareGuestSpec(JSON.stringify(sockSpec), 'c4')).toThrow(/is a socket; only directories and regular files/);
    const dirSpec = { mounts: [{ destination: '/data', type: 'bind', source: tmp, options: ['rbind'] }] };
    expect(() => prepareGuestSpec(JSON.stringify(dirSpec), '../evil')).toThrow(/cannot name a volume directory/);
  });
});

describe('VM size from sandbox annotations', () => {
  const base = { vcpus: 1, memoryMiB: 256 };
  it('adds the pod memory limit to the base and takes the CPU quota, capped at the host', () => {
    expect(vmSize({}, base, 2)).toEqual({ vcpus: 1, memoryMiB: 256 });
    expect(
      vmSize(
        {
          'io.kubernetes.cri.sandbox-cpu-quota': '150000',
          'io.kubernetes.cri.sandbox-cpu-period': '100000',
          'io.kubernetes.cri.sandbox-memory': String(128 * 1024 * 1024),
        },
        base,
        2,
      ),
    ).toEqual({ vcpus: 2, memoryMiB: 384 });
    expect(vmSize({ 'io.kubernetes.cri.sandbox-cpu-quota': '800000', 'io.kubernetes.cri.sandbox-cpu-period': '100000' }, base, 2).vcpus).toBe(2);
  });
  it('refuses a VM larger than the host, saying both sizes', () => {
    expect(() => vmSize({ 'io.kubernetes.cri.sandbox-memory': String(8 * 1024 ** 3) }, base, 2, 4 * 1024 ** 3)).toThrow(/needs 8448 MiB .* host has 4096 MiB/);
  });
  it('rejects nonsense annotations', () => {
    expect(() => vmSize({ 'io.kubernetes.cri.sandbox-memory': 'lots' }, base, 2)).toThrow(/sandbox-memory/);
  });
});
