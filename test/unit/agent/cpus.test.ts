import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { countCpuList, onlineAllCpus } from '../../../src/agent/cpus';

describe('countCpuList', () => {
  it("counts the kernel's cpu list format", () => {
    expect(countCpuList('0\n')).toBe(1);
    expect(countCpuList('0-3')).toBe(4);
    expect(countCpuList('0-1,3,5-6')).toBe(5);
    expect(countCpuList('')).toBe(0);
  });
});

describe('onlineAllCpus', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tern-cpus-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it("writes 1 into every offline CPU's online file and leaves the others", async () => {
    mkdirSync(join(dir, 'cpu0')); // no online file, as for the boot CPU
    for (const [n, state] of [
      [1, '0'],
      [2, '1'],
      [3, '0'],
    ] as const) {
      mkdirSync(join(dir, `cpu${n}`));
      writeFileSync(join(dir, `cpu${n}`, 'online'), `${state}\n`);
    }
    mkdirSync(join(dir, 'cpufreq'));
    writeFileSync(join(dir, 'online'), '0-3\n'); // what the kernel would say afterwards
    expect(await onlineAllCpus(dir)).toBe(4);
    expect(readFileSync(join(dir, 'cpu1', 'online'), 'utf8')).toBe('1');
    expect(readFileSync(join(dir, 'cpu2', 'online'), 'utf8')).toBe('1\n');
    expect(readFileSync(join(dir, 'cpu3', 'online'), 'utf8')).toBe('1');
  });
});
