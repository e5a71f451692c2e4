import { describe, expect, it } from 'vitest';
import { GROW_STEP_MIB, GUEST_OVERHEAD_MIB, memoryLimitOf, memoryToAdd } from '../../../src/shim/vm-memory';
import type { TernError } from '../../../src/common/errors';

const MiB = 1024 * 1024;

describe('memoryLimitOf', () => {
  it('reads a positive memory.limit of LinuxResources JSON', () => {
    expect(memoryLimitOf(JSON.stringify({ memory: { limit: 64 * MiB } }))).toBe(64 * MiB);
    expect(memoryLimitOf(JSON.stringify({ memory: { limit: -1 } }))).toBeUndefined();
    expect(memoryLimitOf(JSON.stringify({ cpu: { quota: 1 } }))).toBeUndefined();
    expect(memoryLimitOf('null')).toBeUndefined();
    expect(memoryLimitOf('{oops')).toBeUndefined();
  });
});

describe('memoryToAdd', () => {
  it("is 0 when the VM already holds the limit and the guest kernel's share", () => {
    expect(memoryToAdd(256 * MiB, 512, 4096)).toBe(0);
    expect(memoryToAdd((512 - GUEST_OVERHEAD_MIB) * MiB, 512, 4096)).toBe(0);
  });
  it("adds whole memory blocks: the limit plus the guest kernel's share, rounded up", () => {
    const add = memoryToAdd(1024 * MiB, 512, 4096);
    expect(add % GROW_STEP_MIB).toBe(0);
    expect(512 + add).toBe(1024 + GUEST_OVERHEAD_MIB);
    expect(memoryToAdd(1000 * MiB + 1, 512, 4096)).toBe(1152 - 512 + 0); // 1001 + 128 = 1129 -> 1152
  });
  it('refuses past hypervisor.max_memory_mib, and when the VM cannot grow, naming the sizes', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e as TernError;
      }
      throw new Error('no error');
    };
    const past = err(() => memoryToAdd(8192 * MiB, 512, 4096));
    expect(past.code).toBe('FailedPrecondition');
    expect(past.message).toMatch(/needs a VM of 8320 MiB; this VM may grow to 4096 MiB \(hypervisor\.max_memory_mib\)/);
    const fixed = err(() => memoryToAdd(1024 * MiB, 512, 0));
    expect(fixed.message).toMatch(/this VM has 512 MiB and cannot grow \(hypervisor\.max_memory_mib = 0\)/);
  });
});
