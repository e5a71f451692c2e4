// The template key: stable for one guest shape, different as soon as
// anything that shapes the booted guest changes.
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../src/common/config';
import { TernError } from '../../../src/common/errors';
import { AGENT_JIT_KERNEL_PARAM, templateShape, templateVmSpec } from '../../../src/shim/templates/factory';
import { templateKey, type TemplateShape } from '../../../src/shim/templates/key';

const MTIME = new Date('2026-01-01T00:00:00Z');
let tmp: string;
let binary: string;
let shape: TemplateShape;

beforeAll(() => {
  tmp = fs.mkdtempSync(join(tmpdir(), 'tern-tkey-'));
  binary = join(tmp, 'qemu');
  const files = { qemu: 'qemu binary', vmlinux: 'kernel', 'initrd.img': 'initrd', 'guest.erofs': 'image' };
  for (const [name, text] of Object.entries(files)) {
    fs.writeFileSync(join(tmp, name), text);
    // Whole seconds, so the tests below can put an mtime back exactly.
    fs.utimesSync(join(tmp, name), MTIME, MTIME);
  }
  shape = {
    binary: 'qemu-system-x86_64',
    kernel: join(tmp, 'vmlinux'),
    initrd: join(tmp, 'initrd.img'),
    image: join(tmp, 'guest.erofs'),
    vcpus: 1,
    memoryMiB: 512,
    accel: 'auto',
    kernelParams: ['quiet'],
    hotplugSlots: 8,
    tcgTbSizeMiB: 0,
    tcgCpuModel: 'max',
    writableSlotMiB: 10_240,
    writableFsMiB: 10_240,
    layerSlots: { count: 4, sizeMiB: 4096 },
    debugShell: false,
    maxMemoryMiB: 4096,
    maxVcpus: 2,
  };
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('templateKey', () => {
  it('gives the same 24-hex key for the same inputs', () => {
    const k = templateKey(shape, binary);
    expect(k).toMatch(/^[0-9a-f]{24}$/);
    expect(templateKey({ ...shape, kernelParams: [...shape.kernelParams] }, binary)).toBe(k);
  });

  it('is the same for a shape read back from a template record (JSON), which is how stale templates are told', () => {
    const withRunAs = { ...shape, runAs: { uid: 65534, gid: 65534, name: 'nobody' } } as TemplateShape;
    expect(templateKey(JSON.parse(JSON.stringify(withRunAs)) as TemplateShape, binary)).toBe(templateKey(shape, binary));
  });

  it('changes with each shape field', () => {
    const base = templateKey(shape, binary);
    const variants: Array<Partial<TemplateShape>> = [
      { vcpus: 2 },
      { memoryMiB: 1024 },
      { kernelParams: ['quiet', 'loglevel=3'] },
      { kernelParams: [] },
      { hotplugSlots: 4 },
      { tcgTbSizeMiB: 64 },
      { tcgCpuModel: 'qemu64' },
      { writableSlotMiB: 1024 },
      { writableFsMiB: 512 },
      { layerSlots: { count: 2, sizeMiB: 4096 } },
      { layerSlots: { count: 4, sizeMiB: 2048 } },
      { accel: 'tcg' },
      { debugShell: true },
      { maxMemoryMiB: 2048 },
      { maxVcpus: 4 },
    ];
    const keys = variants.map((v) => templateKey({ ...shape, ...v }, binary));
    for (const k of keys) expect(k).not.toBe(base);
    expect(new Set(keys).size).toBe(keys.length);
  });

  it.each(['vmlinux', 'initrd.img', 'guest.erofs', 'qemu'])('changes when %s changes content or mtime', (name) => {
    const file = join(tmp, name);
    const original = fs.readFileSync(file);
    const { mtime } = fs.statSync(file);
    expect(mtime).toEqual(MTIME);
    const base = templateKey(shape, binary);
    try {
      // New content, old mtime.
      fs.writeFileSync(file, Buffer.concat([original, Buffer.from(' v2')]));
      fs.utimesSync(file, MTIME, MTIME);
      expect(templateKey(shape, binary)).not.toBe(base);
      // Old content, new mtime.
      fs.writeFileSync(file, original);
      fs.utimesSync(file, MTIME, new Date(MTIME.getTime() + 5000));
      expect(templateKey(shape, binary)).not.toBe(base);
    } finally {
      fs.writeFileSync(file, original);
      fs.utimesSync(file, MTIME, MTIME);
    }
    expect(templateKey(shape, binary)).toBe(base);
  });

  it('differs by the agent log level of the config (it is on the kernel command line), and not for the default', () => {
    const cfg = defaultConfig();
    Object.assign(cfg.hypervisor, { kernel: shape.kernel, initrd: shape.initrd, image: shape.image, kernelParams: ['quiet'] });
    const info = templateShape(cfg, 1, 512);
    expect(info.kernelParams).toEqual(['quiet']);
    cfg.agent.logLevel = 'debug';
    const debug = templateShape(cfg, 1, 512);
    expect(debug.kernelParams).toEqual(['quiet', 'tern.agent_log=debug']);
    expect(templateVmSpec(debug).kernelParams).toEqual(['quiet', 'tern.agent_log=debug']);
    expect(templateKey(debug, binary)).not.toBe(templateKey(info, binary));
    expect(cfg.hypervisor.kernelParams).toEqual(['quiet']);
  });

  it('differs when the agent may compile (agent.jit, on the kernel command line), and not for the default', () => {
    const cfg = defaultConfig();
    Object.assign(cfg.hypervisor, { kernel: shape.kernel, initrd: shape.initrd, image: shape.image, kernelParams: ['quiet'] });
    expect(cfg.agent.jit).toBe(false);
    const jitless = templateShape(cfg, 1, 512);
    expect(jitless.kernelParams).toEqual(['quiet']);
    cfg.agent.jit = true;
    const jit = templateShape(cfg, 1, 512);
    expect(jit.kernelParams).toEqual(['quiet', AGENT_JIT_KERNEL_PARAM]);
    expect(AGENT_JIT_KERNEL_PARAM).toBe('tern.agent_jit=1');
    expect(templateVmSpec(jit).kernelParams).toEqual(['quiet', 'tern.agent_jit=1']);
    expect(templateKey(jit, binary)).not.toBe(templateKey(jitless, binary));
  });

  it('follows symlinks to the file they name', () => {
    const link = join(tmp, 'current-vmlinux');
    fs.symlinkSync(shape.kernel, link);
    expect(templateKey({ ...shape, kernel: link }, binary)).toBe(templateKey(shape, binary));
  });

  it('a missing kernel fails the precondition, naming it', () => {
    const missing = join(tmp, 'no-such-vmlinux');
    let err: unknown;
    try {
      templateKey({ ...shape, kernel: missing }, binary);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('FailedPrecondition');
    expect((err as Error).message).toContain(`kernel ${missing}`);
    expect(() => templateKey(shape, join(tmp, 'no-qemu'))).toThrow(/QEMU binary/);
  });
});
