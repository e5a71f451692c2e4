import { describe, expect, it } from 'vitest';
import { cpusWanted } from '../../../src/shim/vm-cpus';

describe('cpusWanted', () => {
  it('is ceil(quota / period), the period defaulting to 100 ms', () => {
    expect(cpusWanted(JSON.stringify({ cpu: { quota: 200000, period: 100000 } }))).toBe(2);
    expect(cpusWanted(JSON.stringify({ cpu: { quota: 150000, period: 100000 } }))).toBe(2);
    expect(cpusWanted(JSON.stringify({ cpu: { quota: 50000 } }))).toBe(1);
    expect(cpusWanted(JSON.stringify({ cpu: { quota: 300000, period: 50000 } }))).toBe(6);
  });
  it('is undefined without a positive quota, or for bad JSON', () => {
    expect(cpusWanted(JSON.stringify({ cpu: { quota: -1 } }))).toBeUndefined();
    expect(cpusWanted(JSON.stringify({ cpu: { shares: 1024 } }))).toBeUndefined();
    expect(cpusWanted(JSON.stringify({ memory: { limit: 1 } }))).toBeUndefined();
    expect(cpusWanted('not json')).toBeUndefined();
  });
});
