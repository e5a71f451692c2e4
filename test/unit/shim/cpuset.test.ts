import { describe, expect, it } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { guestCpuList, readCpuset, specCpuset, updateCpuset, withGuestCpus } from '../../../src/shim/cpuset';
import { prepareGuestSpec, specWithGuestCpus } from '../../../src/shim/guest-spec';

const twoCpus = () => [0, 1];
const invalid = (fn: () => unknown): TernError => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('InvalidArgument');
    return err as TernError;
  }
  throw new Error('did not throw');
};

describe('readCpuset', () => {
  it('absent leaves the pinning alone, "" unpins, a list pins to those host CPUs', () => {
    expect(readCpuset(undefined, 'cpu.cpus', twoCpus)).toEqual({ kind: 'unchanged' });
    expect(readCpuset('', 'cpu.cpus', twoCpus)).toEqual({ kind: 'unpin' });
    expect(readCpuset('1', 'cpu.cpus', twoCpus)).toEqual({ kind: 'pin', hostCpus: [1] });
    expect(readCpuset('0-1', 'cpu.cpus', twoCpus)).toEqual({ kind: 'pin', hostCpus: [0, 1] });
  });
  it('reads the host CPUs only when a list is given', () => {
    const never = () => {
      throw new Error('host CPUs read');
    };
    expect(readCpuset(undefined, 'k', never).kind).toBe('unchanged');
    expect(readCpuset('', 'k', never).kind).toBe('unpin');
  });
  it('refuses a CPU the host does not have, naming the key, the value and the host CPUs', () => {
    expect(invalid(() => readCpuset('7', 'cpu.cpus', twoCpus)).message).toBe('cpu.cpus "7": host CPU 7 does not exist (this host\'s online CPUs are 0-1)');
    expect(invalid(() => readCpuset('1-4', 'linux.resources.cpu.cpus', twoCpus)).message).toBe(
      'linux.resources.cpu.cpus "1-4": host CPUs 2-4 do not exist (this host\'s online CPUs are 0-1)',
    );
  });
  it('refuses a malformed list or a value that is not a string', () => {
    expect(invalid(() => readCpuset('x-', 'cpu.cpus', twoCpus)).message).toBe('cpu.cpus "x-": "x-" is not a CPU number or range (want N or N-M)');
    expect(invalid(() => readCpuset(1, 'cpu.cpus', twoCpus)).message).toMatch(/^cpu\.cpus 1: not a string/);
  });
});

describe('guest CPUs for a host set', () => {
  it('k host CPUs are guest CPUs 0..k-1, at most the VM has', () => {
    expect(guestCpuList(1, 1)).toBe('0');
    expect(guestCpuList(2, 4)).toBe('0-1');
    expect(guestCpuList(4, 2)).toBe('0-1');
    expect(guestCpuList(3, 3)).toBe('0-2');
  });
  it('rewrites cpu.cpus and keeps the rest', () => {
    const r = { cpu: { quota: 50000, cpus: '5-6' }, memory: { limit: 1 } };
    expect(withGuestCpus(r, '0-1')).toEqual({ cpu: { quota: 50000, cpus: '0-1' }, memory: { limit: 1 } });
    expect(r.cpu.cpus).toBe('5-6');
    expect(withGuestCpus({}, '0')).toEqual({ cpu: { cpus: '0' } });
  });
});

describe('cpusets in a spec and an update', () => {
  it('a spec pins by linux.resources.cpu.cpus; empty or absent pins nothing', () => {
    expect(specCpuset({ linux: { resources: { cpu: { cpus: '1' } } } }, twoCpus)).toEqual([1]);
    expect(specCpuset({ linux: { resources: { cpu: { cpus: '' } } } }, twoCpus)).toBeUndefined();
    expect(specCpuset({}, twoCpus)).toBeUndefined();
    expect(invalid(() => specCpuset({ linux: { resources: { cpu: { cpus: '7' } } } }, twoCpus)).message).toMatch(
      /^linux\.resources\.cpu\.cpus "7": host CPU 7/,
    );
  });
  it('an update names cpu.cpus', () => {
    expect(updateCpuset({ cpu: { cpus: '0' } }, twoCpus)).toEqual({ kind: 'pin', hostCpus: [0] });
    expect(updateCpuset({ memory: {} } as never, twoCpus)).toEqual({ kind: 'unchanged' });
    expect(updateCpuset(null, twoCpus)).toEqual({ kind: 'unchanged' });
  });
  it('prepareGuestSpec keeps the host CPUs aside and refuses bad ones before any work', () => {
    const spec = { process: { args: ['sh'] }, linux: { resources: { cpu: { cpus: '1', shares: 2 } } } };
    const out = prepareGuestSpec(JSON.stringify(spec), 'c1', twoCpus);
    expect(out.hostCpus).toEqual([1]);
    const guest = JSON.parse(specWithGuestCpus(out.specJson, '0'));
    expect(guest.linux.resources.cpu).toEqual({ cpus: '0', shares: 2 });
    expect(guest.process).toEqual({ args: ['sh'] });
    expect(prepareGuestSpec(JSON.stringify({ process: {} }), 'c2', twoCpus).hostCpus).toBeUndefined();
    const bad = { linux: { resources: { cpu: { cpus: 'x-' } } } };
    expect(invalid(() => prepareGuestSpec(JSON.stringify(bad), 'c3', twoCpus)).message).toMatch(/^linux\.resources\.cpu\.cpus "x-"/);
  });
});
