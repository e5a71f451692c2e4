// Chooses KVM or TCG. KVM only when /dev/kvm is usable, the CPU advertises
// vmx/svm and the host's KVM is not PVM (kvm_pvm only boots PVM-built guest
// kernels; a stock kernel hangs there). A forced value always wins.
import fs from 'node:fs';
import type { Accel } from './hypervisor.js';

export interface AccelDecision {
  accel: Accel;
  reason: string;
}

/** Host paths consulted; injectable for tests. */
export interface AccelProbePaths {
  devKvm: string;
  cpuinfo: string;
  pvmModule: string;
}

export const HOST_ACCEL_PATHS: AccelProbePaths = {
  devKvm: '/dev/kvm',
  cpuinfo: '/proc/cpuinfo',
  pvmModule: '/sys/module/kvm_pvm',
};

/** The virtualization flags (vmx, svm) found on any `flags` line of a cpuinfo text. */
export function virtFlags(cpuinfo: string): string[] {
  const found = new Set<string>();
  for (const line of cpuinfo.split('\n')) {
    const m = /^flags\s*:(.*)$/.exec(line);
    if (!m) continue;
    for (const flag of m[1]!.trim().split(/\s+/)) {
      if (flag === 'vmx' || flag === 'svm') found.add(flag);
    }
  }
  return [...found].sort();
}

function usable(path: string): boolean {
  try {
    fs.accessSync(path, fs.constants.R_OK | fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function detectAccel(forced: Accel | 'auto' = 'auto', paths: AccelProbePaths = HOST_ACCEL_PATHS): AccelDecision {
  if (forced === 'kvm') return { accel: 'kvm', reason: 'kvm forced by configuration' };
  if (forced === 'tcg') return { accel: 'tcg', reason: 'tcg forced by configuration' };
  if (!usable(paths.devKvm)) {
    return { accel: 'tcg', reason: `${paths.devKvm} is missing or not read-writable: using TCG (software emulation)` };
  }
  let cpuinfo = '';
  try {
    cpuinfo = fs.readFileSync(paths.cpuinfo, 'utf8');
  } catch (err) {
    return { accel: 'tcg', reason: `cannot read ${paths.cpuinfo} (${(err as Error).message}): using TCG` };
  }
  const flags = virtFlags(cpuinfo);
  if (flags.length === 0) {
    return { accel: 'tcg', reason: 'CPU has no vmx/svm flag (no hardware virtualization): using TCG' };
  }
  if (fs.existsSync(paths.pvmModule)) {
    return {
      accel: 'tcg',
      reason: `${paths.pvmModule} exists: KVM here is PVM, which hangs stock guest kernels: using TCG`,
    };
  }
  return { accel: 'kvm', reason: `${paths.devKvm} usable and CPU has ${flags.join('+')}: using KVM` };
}
