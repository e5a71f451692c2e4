import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { parseArgs, toArgv } from '../../../src/shim/args';
import { sandboxDir, socketAddress, socketPath } from '../../../src/shim/paths';

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
    const { readBundleSpec } = await import('../../../src/shim/spec');
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
});
