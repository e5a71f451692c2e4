import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { parseArgs, toArgv } from '../../../src/shim/args';
import { makeVmDirs, OWNER_DIR_MODE, sandboxDir, socketAddress, socketPath, VM_DIR_MODE } from '../../../src/shim/paths';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('shim arguments', () => {
  it('parses containerd 1.6 start arguments', () => {
    const a = parseArgs(
      ['-namespace', 'default', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'c1', '-debug', 'start'],
      '/bundle',
    );
    expect(a).toEqual({
      namespace: 'default',
      address: '/run/containerd/containerd.sock',
      publishBinary: '/usr/bin/containerd',
      id: 'c1',
      bundle: '/bundle',
      debug: true,
      action: 'start',
    });
    expect(parseArgs(toArgv(a, 'serve'), '/elsewhere')).toEqual({ ...a, action: 'serve' });
  });

  it('rejects unknown flags, actions and unsafe ids', () => {
    expect(() => parseArgs(['-bogus', 'x', 'start'], '/')).toThrow(/unknown flag -bogus/);
    expect(() => parseArgs(['-namespace', 'n', '-id', 'a', 'explode'], '/')).toThrow(/unknown action explode/);
    expect(() => parseArgs(['-namespace', 'n', '-id', '../etc', 'start'], '/')).toThrow(/invalid id/);
    expect(() => parseArgs(['-namespace', 'n', 'start'], '/')).toThrow(/missing -id/);
  });
});

describe('paths', () => {
  it('socket address follows containerd: sha256 of "<address>/<ns>/<id>" under /run/containerd/s', () => {
    const want = createHash('sha256').update('/run/containerd/containerd.sock/default/c1').digest('hex');
    expect(socketPath('/run/containerd/containerd.sock', 'default', 'c1')).toBe(`/run/containerd/s/${want}`);
    expect(socketAddress('/run/containerd/s/ab')).toBe('unix:///run/containerd/s/ab');
  });

  it('sandbox dirs are short, distinct per namespace and id', () => {
    const a = sandboxDir('/run/tern', 'default', 'x'.repeat(64));
    expect(a.length).toBeLessThan(40);
    expect(sandboxDir('/run/tern', 'k8s.io', 'x'.repeat(64))).not.toBe(a);
  });
});

describe('bundle spec', () => {
  it('resolves root.path like runc: relative to the bundle, or absolute as given', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { readBundleSpec } = await import('../../../src/shim/bundle-spec');
    const b = mkdtempSync(join(tmpdir(), 'tern-bundle-'));
    try {
      writeFileSync(join(b, 'config.json'), JSON.stringify({ root: { path: 'rootfs' } }));
      expect(readBundleSpec(b).rootPath).toBe(join(b, 'rootfs'));
      writeFileSync(join(b, 'config.json'), JSON.stringify({ root: { path: '/srv/images/alpine' } }));
      expect(readBundleSpec(b).rootPath).toBe('/srv/images/alpine');
      writeFileSync(join(b, 'config.json'), JSON.stringify({}));
      expect(readBundleSpec(b).rootPath).toBe(join(b, 'rootfs'));
    } finally {
      rmSync(b, { recursive: true, force: true });
    }
  });

  it('tells a spec that asks for the node IPC namespace or network (no ipc or network entry) from every other spec', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { readBundleSpec } = await import('../../../src/shim/bundle-spec');
    const b = mkdtempSync(join(tmpdir(), 'tern-bundle-'));
    const wants = (annotations: Record<string, string>, types: string[]) => {
      writeFileSync(join(b, 'config.json'), JSON.stringify({ annotations, linux: { namespaces: types.map((type) => ({ type })) } }));
      return readBundleSpec(b).podWantsHostIpc;
    };
    try {
      const sandbox = { 'io.kubernetes.cri.container-type': 'sandbox' };
      expect(wants(sandbox, ['pid', 'network', 'mount', 'uts'])).toBe(true);
      expect(wants(sandbox, ['pid', 'ipc', 'network', 'mount', 'uts'])).toBe(false);
      // An app container follows its pod; a plain ctr run decides nothing about pods.
      expect(wants({ 'io.kubernetes.cri.container-type': 'container', 'io.kubernetes.cri.sandbox-id': 'p' }, ['mount'])).toBe(false);
      expect(wants({}, ['mount'])).toBe(false);
      // The node's network: a spec with namespaces but none for the network (hostNetwork, ctr --net-host).
      const net = (types: string[] | undefined) => {
        writeFileSync(join(b, 'config.json'), JSON.stringify({ linux: types ? { namespaces: types.map((type) => ({ type })) } : {} }));
        return readBundleSpec(b).wantsHostNetwork;
      };
      expect(net(['pid', 'ipc', 'mount'])).toBe(true);
      expect(net(['pid', 'network', 'mount'])).toBe(false);
      expect(net(undefined)).toBe(false);
    } finally {
      rmSync(b, { recursive: true, force: true });
    }
  });
});

describe('sandbox directory modes', () => {
  it("lets others only pass through the sandbox directory and keeps its VM directory root's alone, correcting an existing one", () => {
    const base = mkdtempSync(join(tmpdir(), 'tern-vmdirs-'));
    try {
      const owner = join(base, 'sb', 'abc');
      makeVmDirs(owner, join(owner, 'vm'));
      expect(statSync(owner).mode & 0o777).toBe(OWNER_DIR_MODE);
      expect(statSync(join(owner, 'vm')).mode & 0o777).toBe(VM_DIR_MODE);
      expect([OWNER_DIR_MODE, VM_DIR_MODE]).toEqual([0o711, 0o700]);
      chmodSync(join(owner, 'vm'), 0o755);
      makeVmDirs(owner, join(owner, 'vm'));
      expect(statSync(join(owner, 'vm')).mode & 0o777).toBe(0o700);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
