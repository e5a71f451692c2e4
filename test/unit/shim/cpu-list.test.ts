import { describe, expect, it } from 'vitest';
import { formatCpuList, parseCpuList } from '../../../src/shim/cpu-list';

describe('parseCpuList', () => {
  it('reads single CPUs and ranges into sorted, distinct numbers', () => {
    expect(parseCpuList('1')).toEqual([1]);
    expect(parseCpuList('0-3,5')).toEqual([0, 1, 2, 3, 5]);
    expect(parseCpuList('5,0-1,1')).toEqual([0, 1, 5]);
    expect(parseCpuList(' 2-2 \n')).toEqual([2]);
    expect(parseCpuList('0, 2')).toEqual([0, 2]);
  });
  it('refuses what is not a CPU list, saying which entry', () => {
    expect(() => parseCpuList('')).toThrow(/empty CPU list/);
    expect(() => parseCpuList('x-')).toThrow(/"x-" is not a CPU number or range/);
    expect(() => parseCpuList('1-')).toThrow(/"1-" is not a CPU number or range/);
    expect(() => parseCpuList('0,,1')).toThrow(/"" is not a CPU number or range/);
    expect(() => parseCpuList('-1')).toThrow(/not a CPU number or range/);
    expect(() => parseCpuList('0-7:2/4')).toThrow(/not a CPU number or range/);
    expect(() => parseCpuList('3-1')).toThrow(/"3-1" is a range that ends before it starts/);
    expect(() => parseCpuList('0-100000')).toThrow(/names a CPU past 8191/);
  });
});

describe('formatCpuList', () => {
  it("writes the kernel's compact form", () => {
    expect(formatCpuList([1])).toBe('1');
    expect(formatCpuList([0, 1])).toBe('0-1');
    expect(formatCpuList([5, 0, 2, 1, 1])).toBe('0-2,5');
    expect(formatCpuList([0, 2, 4, 5, 6, 9])).toBe('0,2,4-6,9');
    expect(formatCpuList([])).toBe('');
  });
  it('round-trips with parseCpuList', () => {
    for (const l of ['0', '0-3', '1,3,5-7', '0-1,8191']) expect(formatCpuList(parseCpuList(l))).toBe(l);
  });
});
