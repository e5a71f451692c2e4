// `tern install`: the block it puts in containerd's config, its idempotence
// and refusals, and the result read back by containerd itself (`containerd
// config dump` loads the config; no daemon is started).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BEGIN_MARK, lineDiff, mainConfigWithTern, planInstall, runtimeBlock, type InstallOptions } from '../../../src/cli/install';
import { installCommand } from '../../../src/cli/install-command';
import { bufferIo } from '../../../src/cli/io';

const O: InstallOptions = {
  containerdConfig: '/c.toml',
  handler: 'tern',
  ternConfig: '/etc/tern/config.toml',
  overheadMemory: '160Mi',
  overheadCpu: '250m',
};

describe('mainConfigWithTern', () => {
  it('creates a version 2 config with the block when there is none', () => {
    expect(mainConfigWithTern('/c', null, O)).toBe(`version = 2\n\n${runtimeBlock(O)}`);
    expect(runtimeBlock(O)).toContain('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tern]\n  runtime_type = "io.containerd.tern.v2"');
    expect(runtimeBlock(O)).toContain('ConfigPath = "/etc/tern/config.toml"');
  });

  it('appends the block, keeping everything else; a second pass, or a changed block, replaces it in place', () => {
    const cfg = '# mine\nversion = 2\n\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/usr/lib/cni"\n';
    const once = mainConfigWithTern('/c', cfg, O);
    expect(once).toBe(`${cfg}\n${runtimeBlock(O)}`);
    expect(mainConfigWithTern('/c', once, O)).toBe(once);
    const moved = mainConfigWithTern('/c', once, { ...O, ternConfig: '/srv/tern.toml' });
    expect(moved.split(BEGIN_MARK)).toHaveLength(2);
    expect(moved).toContain('ConfigPath = "/srv/tern.toml"');
    expect(moved.startsWith(cfg)).toBe(true);
  });

  it('leaves a handler registered by hand alone, and refuses what it cannot change safely', () => {
    const byHand = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.tern]\n  runtime_type = "io.containerd.tern.v2"\n';
    expect(mainConfigWithTern('/c', byHand, O)).toBe(byHand);
    const taken = byHand.replace('io.containerd.tern.v2', 'io.containerd.runc.v2');
    expect(() => mainConfigWithTern('/c', taken, O)).toThrow(/already defines the CRI runtime handler "tern" as "io.containerd.runc.v2"/);
    expect(() => mainConfigWithTern('/c', '[plugins]\n', O)).toThrow(/config version 1; tern install needs version 2/);
    expect(() => mainConfigWithTern('/c', 'version = = 2', O)).toThrow(/not valid TOML/);
    const inline = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  runtimes = { runc = { runtime_type = "io.containerd.runc.v2" } }\n';
    expect(() => mainConfigWithTern('/c', inline, O)).toThrow(/invalid TOML|does not take effect/);
  });

  it('wants a DNS label as the handler', () => {
    expect(() => planInstall({ ...O, handler: 'Tern_1' }, () => null)).toThrow(/want a DNS label/);
  });
});

describe('tern install', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tern-install-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('--dry-run writes nothing and shows the diff; a real run writes; a second run changes nothing; containerd reads the result', async () => {
    const cfg = join(dir, 'config.toml');
    const original = 'version = 2\n\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/usr/lib/cni"\n';
    writeFileSync(cfg, original);
    const args = ['--containerd-config', cfg, '--config', '/etc/tern/config.toml'];
    const dry = bufferIo();
    expect(await installCommand([...args, '--dry-run'], dry)).toBe(0);
    expect(dry.stdout).toContain(`would change ${cfg}`);
    expect(dry.stdout).toContain('+   runtime_type = "io.containerd.tern.v2"');
    expect(readFileSync(cfg, 'utf8')).toBe(original);

    const real = bufferIo();
    expect(await installCommand(args, real)).toBe(0);
    expect(real.stdout).toMatch(/restart containerd/);
    expect(real.stdout).toMatch(/kind: RuntimeClass\nmetadata:\n {2}name: tern\nhandler: tern\n/);
    const written = readFileSync(cfg, 'utf8');
    const again = bufferIo();
    expect(await installCommand(args, again)).toBe(0);
    expect(again.stdout).toMatch(/already installed in containerd: nothing to change/);
    expect(readFileSync(cfg, 'utf8')).toBe(written);

    // containerd itself: the handler with tern's runtime type and options, the CRI settings kept.
    const dump = execFileSync('containerd', ['--config', cfg, 'config', 'dump'], { encoding: 'utf8' });
    expect(dump).toMatch(
      /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.tern\]\n\s+[^\n]*\n(\s+[^\n]*\n)*?\s+runtime_type = "io\.containerd\.tern\.v2"/,
    );
    expect(dump).toContain('ConfigPath = "/etc/tern/config.toml"');
    expect(dump).toContain('bin_dir = "/usr/lib/cni"');
    expect(existsSync(`${cfg}.tern-install-${process.pid}`)).toBe(false);
  });

  it('lineDiff shows only what changes', () => {
    expect(lineDiff('a\nb\nc\n', 'a\nx\nc\n')).toBe('@@ line 2\n- b\n+ x\n');
    expect(lineDiff(null, 'new\n')).toBe('@@ line 1\n+ new\n+ \n');
  });
});
