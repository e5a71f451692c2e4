// detectAccel: the KVM/TCG decision from /dev/kvm, cpuinfo flags and the PVM module,
// with the probed paths pointed at files made for each case.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { detectAccel, virtFlags, type AccelProbePaths } from '../../../src/hypervisor/accel.js';

const INTEL = 'processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae vmx sse2\n\nprocessor\t: 1\nflags\t\t: fpu vmx sse2\n';
const AMD = 'processor\t: 0\nflags\t\t: fpu svm sse2 lm\n';
const NONE = 'processor\t: 0\nflags\t\t: fpu vme hypervisor lm\nvmx flags\t: vnmi\n';

let dir: string;
let paths: AccelProbePaths;

function host(opts: { kvm: boolean; cpuinfo: string; pvm: boolean }): void {
  if (opts.kvm) fs.writeFileSync(paths.devKvm, '');
  fs.writeFileSync(paths.cpuinfo, opts.cpuinfo);
  if (opts.pvm) fs.mkdirSync(paths.pvmModule);
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-accel-'));
  paths = { devKvm: path.join(dir, 'kvm'), cpuinfo: path.join(dir, 'cpuinfo'), pvmModule: path.join(dir, 'kvm_pvm') };
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('virtFlags', () => {
  it('finds vmx or svm only on flags lines', () => {
    expect(virtFlags(INTEL)).toEqual(['vmx']);
    expect(virtFlags(AMD)).toEqual(['svm']);
    expect(virtFlags(NONE)).toEqual([]); // "vmx flags" is not the flags line
    expect(virtFlags('')).toEqual([]);
  });
});

describe('detectAccel', () => {
  it('uses KVM with /dev/kvm, vmx and no PVM', () => {
    host({ kvm: true, cpuinfo: INTEL, pvm: false });
    const d = detectAccel('auto', paths);
    expect(d.accel).toBe('kvm');
    expect(d.reason).toContain('vmx');
  });

  it('uses KVM on AMD (svm)', () => {
    host({ kvm: true, cpuinfo: AMD, pvm: false });
    expect(detectAccel('auto', paths).accel).toBe('kvm');
  });

  it('falls back to TCG without /dev/kvm', () => {
    host({ kvm: false, cpuinfo: INTEL, pvm: false });
    const d = detectAccel('auto', paths);
    expect(d).toMatchObject({ accel: 'tcg' });
    expect(d.reason).toContain(paths.devKvm);
  });

  it('falls back to TCG when the CPU has no vmx/svm (PVM-style host)', () => {
    host({ kvm: true, cpuinfo: NONE, pvm: true });
    const d = detectAccel(undefined, paths);
    expect(d.accel).toBe('tcg');
    expect(d.reason).toContain('no vmx/svm');
  });

  it('falls back to TCG when kvm_pvm is loaded even with vmx', () => {
    host({ kvm: true, cpuinfo: INTEL, pvm: true });
    const d = detectAccel('auto', paths);
    expect(d.accel).toBe('tcg');
    expect(d.reason).toContain('PVM');
  });

  it('falls back to TCG when cpuinfo cannot be read', () => {
    fs.writeFileSync(paths.devKvm, '');
    expect(detectAccel('auto', paths).accel).toBe('tcg');
  });

  it('lets a forced value win', () => {
    host({ kvm: false, cpuinfo: NONE, pvm: true });
    expect(detectAccel('kvm', paths)).toEqual({ accel: 'kvm', reason: 'kvm forced by configuration' });
    fs.rmSync(paths.pvmModule, { recursive: true });
    fs.writeFileSync(paths.devKvm, '');
    fs.writeFileSync(paths.cpuinfo, INTEL);
    expect(detectAccel('tcg', paths)).toEqual({ accel: 'tcg', reason: 'tcg forced by configuration' });
  });

  it('picks TCG on this kind of host (no vmx/svm, kvm_pvm) with the real paths', () => {
    const real = detectAccel('auto');
    const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
    if (virtFlags(cpuinfo).length === 0 || fs.existsSync('/sys/module/kvm_pvm')) expect(real.accel).toBe('tcg');
    else expect(['kvm', 'tcg']).toContain(real.accel);
    expect(real.reason.length).toBeGreaterThan(0);
  });
});
