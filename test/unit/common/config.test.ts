import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultConfig, loadConfig, parseConfig } from '../../../src/common/config';
import { TernError } from '../../../src/common/errors';

describe('config', () => {
  it('an empty file gives the defaults', () => {
    expect(parseConfig('')).toEqual(defaultConfig());
  });

  it('reads snake_case keys into typed fields', () => {
    const cfg = parseConfig(`
[hypervisor]
accel = "tcg"
memory_mib = 1024
kernel_params = ["loglevel=3"]
[agent]
boot_timeout_ms = 5000
`);
    expect(cfg.hypervisor.accel).toBe('tcg');
    expect(cfg.hypervisor.memoryMiB).toBe(1024);
    expect(cfg.hypervisor.kernelParams).toEqual(['loglevel=3']);
    expect(cfg.agent.bootTimeoutMs).toBe(5000);
    expect(cfg.hypervisor.vcpus).toBe(defaultConfig().hypervisor.vcpus);
  });

  it('runtime.layer_slots / layer_slot_mib: 4 slots of 4 GiB by default, 0 slots allowed', () => {
    expect(defaultConfig().runtime).toMatchObject({ layerSlots: 4, layerSlotMiB: 4096 });
    expect(parseConfig('[runtime]\nlayer_slots = 0\nlayer_slot_mib = 512').runtime).toMatchObject({ layerSlots: 0, layerSlotMiB: 512 });
  });

  it('runtime.start_slots: 0 (one more than the host CPUs) by default, a whole number when set', () => {
    expect(defaultConfig().runtime.startSlots).toBe(0);
    expect(parseConfig('[runtime]\nstart_slots = 3').runtime.startSlots).toBe(3);
  });

  it('runtime.layer_cache_max_mib: 0 (no bound) by default, a whole number of MiB when set', () => {
    expect(defaultConfig().runtime.layerCacheMaxMiB).toBe(0);
    expect(parseConfig('[runtime]\nlayer_cache_max_mib = 2048').runtime.layerCacheMaxMiB).toBe(2048);
  });

  it('runtime.rootfs_device_mib and rootfs_limit_mib: 10 GiB devices, no lower limit by default; a limit within the device', () => {
    expect(defaultConfig().runtime).toMatchObject({ rootfsDeviceMiB: 10_240, rootfsLimitMiB: 0 });
    expect(parseConfig('[runtime]\nrootfs_device_mib = 4096\nrootfs_limit_mib = 1024').runtime).toMatchObject({ rootfsDeviceMiB: 4096, rootfsLimitMiB: 1024 });
  });

  it('rejects unknown keys, wrong types and bad values with InvalidArgument naming them', () => {
    const bad: Array<[string, RegExp]> = [
      ['[hypervisor]\nmemroy_mib = 3', /unknown key hypervisor\.memroy_mib/],
      ['[nope]\na = 1', /unknown section \[nope\]/],
      ['[hypervisor]\nvcpus = "two"', /hypervisor\.vcpus must be a number/],
      ['[hypervisor]\naccel = "xen"', /accel must be/],
      ['[hypervisor\n', /invalid TOML/],
      ['[runtime]\nlog_level = "warning"', /runtime\.log_level must be one of fatal, error, warn, info, debug, trace, silent/],
      ['[agent]\nlog_level = "debug quiet"', /agent\.log_level must be one of/],
      ['[runtime]\nshim_log_max_kib = 10', /runtime\.shim_log_max_kib must be 0 \(no file\) or at least 64/],
      ['[runtime]\nshim_log_max_kib = 100.5', /runtime\.shim_log_max_kib must be an integer/],
      ['[agent]\ncall_timeout_ms = 0', /agent\.call_timeout_ms must be at least 1 \(every agent call has a deadline\)/],
      ['[agent]\nboot_timeout_ms = 0', /agent\.boot_timeout_ms must be at least 1/],
      ['[runtime]\nlayer_cache_max_mib = -5', /runtime\.layer_cache_max_mib must be a number \(0 or more\), not -5/],
      ['[runtime]\nlayer_cache_max_mib = "1G"', /runtime\.layer_cache_max_mib must be a number \(0 or more\), not "1G"/],
      ['[runtime]\nrootfs_device_mib = 8', /runtime\.rootfs_device_mib must be a whole number of MiB, at least 16, not 8/],
      ['[runtime]\nrootfs_limit_mib = 3.5', /runtime\.rootfs_limit_mib must be 0 \(= rootfs_device_mib\) or a whole number of MiB, at least 16, not 3\.5/],
      ['[runtime]\nrootfs_limit_mib = 20000', /runtime\.rootfs_limit_mib 20000 is larger than runtime\.rootfs_device_mib 10240/],
      ['[runtime]\nlayer_cache_max_mib = 10.5', /runtime\.layer_cache_max_mib must be a whole number of MiB \(0 = no bound\), not 10\.5/],
      ['[runtime]\nlayer_slots = 9', /runtime\.layer_slots must be a whole number from 0 to 8, not 9/],
      ['[runtime]\nlayer_slots = 1.5', /runtime\.layer_slots must be a whole number from 0 to 8, not 1\.5/],
      ['[runtime]\nlayer_slot_mib = 0', /runtime\.layer_slot_mib must be a whole number of MiB, at least 1, not 0/],
      ['[runtime]\nstart_slots = 1.5', /runtime\.start_slots must be a whole number \(0 = one more than the host's CPUs\), not 1\.5/],
    ];
    for (const [text, re] of bad) {
      let err: unknown;
      try {
        parseConfig(text);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TernError);
      expect((err as TernError).code).toBe('InvalidArgument');
      expect((err as Error).message).toMatch(re);
    }
  });

  it('reads the log keys: the agent level, the shim log cap (0 = no file)', () => {
    const cfg = parseConfig('[agent]\nlog_level = "debug"\n[runtime]\nshim_log_max_kib = 0\n');
    expect(cfg.agent.logLevel).toBe('debug');
    expect(cfg.runtime.shimLogMaxKiB).toBe(0);
    expect(defaultConfig().agent.logLevel).toBe('info');
    expect(defaultConfig().runtime.shimLogMaxKiB).toBe(4096);
  });

  it('[agent] jit: off by default, a boolean', () => {
    expect(defaultConfig().agent.jit).toBe(false);
    expect(parseConfig('[agent]\njit = true\n').agent.jit).toBe(true);
    expect(() => parseConfig('[agent]\njit = "yes"\n')).toThrow(/agent\.jit/);
  });

  it('[hypervisor] tcg_cpu_model: "max" without ERMS unless set (byte-wise rep string ops are slow under TCG)', () => {
    expect(defaultConfig().hypervisor.tcgCpuModel).toBe('max,-erms');
    expect(parseConfig('[hypervisor]\ntcg_cpu_model = "max"\n').hypervisor.tcgCpuModel).toBe('max');
  });

  it('[hypervisor] tcg_cpu_model: a QEMU CPU model with optional feature switches, nothing else', () => {
    expect(parseConfig('[hypervisor]\ntcg_cpu_model = "qemu64"\n').hypervisor.tcgCpuModel).toBe('qemu64');
    expect(parseConfig('[hypervisor]\ntcg_cpu_model = "max,-avx2,+pdpe1gb"\n').hypervisor.tcgCpuModel).toBe('max,-avx2,+pdpe1gb');
    for (const bad of ['', ' max', 'max -avx', 'max;reboot', '-max']) {
      expect(() => parseConfig(`[hypervisor]\ntcg_cpu_model = ${JSON.stringify(bad)}\n`)).toThrow(/hypervisor\.tcg_cpu_model/);
    }
    expect(() => parseConfig('[hypervisor]\ntcg_cpu_model = 1\n')).toThrow(/hypervisor\.tcg_cpu_model/);
  });

  it('an explicit path that does not exist is an error; the file is read when present', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-cfg-'));
    try {
      expect(() => loadConfig(join(dir, 'missing.toml'))).toThrow(/cannot read tern config/);
      writeFileSync(join(dir, 'c.toml'), '[runtime]\nlog_level = "debug"\n');
      expect(loadConfig(join(dir, 'c.toml')).runtime.logLevel).toBe('debug');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('[factory]: templates on by default under /run/tern/templates; both keys read from the file', () => {
    expect(defaultConfig().factory).toEqual({ template: true, templateDir: '/run/tern/templates' });
    const cfg = parseConfig('[factory]\ntemplate = false\ntemplate_dir = "/dev/shm/tern-templates"\n');
    expect(cfg.factory).toEqual({ template: false, templateDir: '/dev/shm/tern-templates' });
    expect(parseConfig('[factory]\ntemplate = false\n').factory.templateDir).toBe('/run/tern/templates');
  });

  it('[agent]: health checks every 10 s, 30 s each, 3 failures; bad values named', () => {
    expect(defaultConfig().agent).toMatchObject({ healthIntervalMs: 30_000, healthTimeoutMs: 30_000, healthFailures: 3 });
    expect(parseConfig('[agent]\nhealth_interval_ms = 0\n').agent.healthIntervalMs).toBe(0);
    expect(() => parseConfig('[agent]\nhealth_failures = 0')).toThrow(/agent\.health_failures must be an integer >= 1/);
    expect(() => parseConfig('[agent]\nhealth_failures = 1.5')).toThrow(/agent\.health_failures must be an integer >= 1/);
    expect(() => parseConfig('[agent]\nhealth_timeout_ms = 5')).toThrow(/agent\.health_timeout_ms must be at least 100/);
  });

  it('[pool]: off by default (size 0); its keys read from the file; bad values named', () => {
    expect(defaultConfig().pool).toEqual({ size: 0, socket: '/run/tern/pool.sock', dir: '/run/tern/pool', reserveMiB: 1024 });
    const cfg = parseConfig('[pool]\nsize = 4\nsocket = "/run/p.sock"\ndir = "/run/p"\nreserve_mib = 512\n');
    expect(cfg.pool).toEqual({ size: 4, socket: '/run/p.sock', dir: '/run/p', reserveMiB: 512 });
    const bad: Array<[string, RegExp]> = [
      ['[pool]\nsize = 2.5', /pool\.size must be an integer 0\.\.64/],
      ['[pool]\nsize = 65', /pool\.size must be an integer 0\.\.64/],
      ['[pool]\nsize = -1', /pool\.size must be a number/],
      ['[pool]\nsocket = "pool.sock"', /pool\.socket must be an absolute path/],
      ['[pool]\ndir = "pool"', /pool\.dir must be an absolute path/],
      ['[pool]\nsizes = 1', /unknown key pool\.sizes/],
    ];
    for (const [text, re] of bad) {
      expect(() => parseConfig(text)).toThrow(expect.objectContaining({ code: 'InvalidArgument', message: expect.stringMatching(re) }));
    }
  });

  it('[factory]: rejects a relative template_dir, a non-boolean template and unknown keys', () => {
    const bad: Array<[string, RegExp]> = [
      ['[factory]\ntemplate_dir = "templates"', /factory\.template_dir must be an absolute path/],
      ['[factory]\ntemplate_dir = ""', /factory\.template_dir must be an absolute path/],
      ['[factory]\ntemplate = "yes"', /factory\.template must be a boolean/],
      ['[factory]\ntemplate = 1', /factory\.template must be a boolean/],
      ['[factory]\ntemplate_dir = 5', /factory\.template_dir must be a string/],
      ['[factory]\ntemplates = true', /unknown key factory\.templates/],
    ];
    for (const [text, re] of bad) {
      expect(() => parseConfig(text)).toThrow(expect.objectContaining({ code: 'InvalidArgument', message: expect.stringMatching(re) }));
    }
  });
});
