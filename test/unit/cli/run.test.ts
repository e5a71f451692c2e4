// Argument parsing and exit codes of the tern CLI, run in-process: 0 ok,
// 1 failure reported, 2 usage error with the usage text on stderr.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferIo } from '../../../src/cli/io';
import { runCli, VERSION } from '../../../src/cli/run';

async function tern(...argv: string[]) {
  const io = bufferIo();
  const code = await runCli(argv, io);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('usage errors exit 2 with usage on stderr', () => {
  it.each([
    [[]],
    [['bogus']],
    [['check', '--bogus']],
    [['config', '--validate']],
    [['sandboxes', 'frobnicate']],
    [['sandboxes', 'inspect']],
    [['ls', 'inspect', 'a', 'b']],
    [['version', 'extra']],
    [['help', 'nope']],
  ])('tern %j', async (argv) => {
    const r = await tern(...argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^tern: /);
    expect(r.stderr).toMatch(/Usage: tern/);
  });
});

describe('help and version', () => {
  it('prints help on stdout and exits 0', async () => {
    for (const argv of [['--help'], ['-h'], ['help']]) {
      const r = await tern(...argv);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: tern <command>/);
      expect(r.stdout).toMatch(/sandboxes/);
    }
    const sub = await tern('help', 'check');
    expect(sub.code).toBe(0);
    expect(sub.stdout).toMatch(/^Usage: tern check/);
    expect((await tern('sandboxes', '--help')).stdout).toMatch(/^Usage: tern sandboxes/);
    expect((await tern('config', '-h')).stdout).toMatch(/--validate/);
  });

  it('prints the package version', async () => {
    expect(VERSION).toMatch(/^\d+\.\d+\.\d+/);
    expect(await tern('version')).toEqual({ code: 0, stdout: `tern ${VERSION}\n`, stderr: '' });
    expect(JSON.parse((await tern('version', '--json')).stdout)).toMatchObject({ version: VERSION });
  });
});

describe('config', () => {
  it('--validate: "valid" and exit 0 for a good file', async () => {
    const good = join(dir, 'good.toml');
    writeFileSync(good, '[hypervisor]\nvcpus = 2\nmemory_mib = 1024\n');
    expect(await tern('config', '--validate', good)).toEqual({ code: 0, stdout: 'valid\n', stderr: '' });
  });

  it('--validate: exit 1 naming the key path for a bad file', async () => {
    const bad = join(dir, 'bad.toml');
    writeFileSync(bad, '[hypervisor]\nvcpus = "two"\n');
    const r = await tern('config', '--validate', bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/hypervisor\.vcpus must be a number/);
    const typo = join(dir, 'typo.toml');
    writeFileSync(typo, '[runtime]\nstate_dri = "/x"\n');
    expect((await tern('config', '--validate', typo)).stderr).toMatch(/unknown key runtime\.state_dri/);
    const missing = await tern('config', '--validate', join(dir, 'absent.toml'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read/);
  });

  it('prints the effective config with sources, as TOML and JSON', async () => {
    const file = join(dir, 'eff.toml');
    writeFileSync(file, '[hypervisor]\nvcpus = 2\nkernel_params = ["quiet"]\n\n[runtime]\nstate_dir = "/tmp/x"\n');
    const r = await tern('config', '--config', file);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('vcpus = 2  # file\n');
    expect(r.stdout).toContain('kernel_params = [ "quiet" ]  # file\n');
    expect(r.stdout).toContain('memory_mib = 512  # default\n');
    expect(r.stdout).toContain('state_dir = "/tmp/x"  # file\n');
    const j = JSON.parse((await tern('config', '--json', '-c', file)).stdout);
    expect(j.path).toBe(file);
    expect(j.config.hypervisor.vcpus).toEqual({ value: 2, source: 'file' });
    expect(j.config.agent.boot_timeout_ms).toEqual({ value: 90000, source: 'default' });
  });

  it('exits 1 when the config file is broken or an explicit one is missing', async () => {
    const bad = join(dir, 'bad2.toml');
    writeFileSync(bad, '[hypervisor]\naccel = "xen"\n');
    const r = await tern('config', '--config', bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/hypervisor\.accel/);
    expect((await tern('config', '-c', join(dir, 'nope.toml'))).code).toBe(1);
    expect((await tern('sandboxes', '-c', join(dir, 'nope.toml'))).code).toBe(1);
  });

  it('--validate and --config together is a usage error', async () => {
    expect((await tern('config', '--validate', 'a', '--config', 'b')).code).toBe(2);
  });
});
