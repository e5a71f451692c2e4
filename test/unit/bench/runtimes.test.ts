// The benchmark's tern configs: one per start path, each a config tern
// accepts, with BENCH_TERN_CONFIG's sections added to every one.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { extraTernConfig, writeRuntimeFiles } from '../../../bench/runtimes';
import { parseConfig } from '../../../src/common/config';

const dir = mkdtempSync(join(tmpdir(), 'tern-bench-runtimes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  delete process.env.BENCH_TERN_CONFIG;
});

describe('writeRuntimeFiles', () => {
  it('writes a config per tern start path that tern parses, with the extra sections in each', () => {
    const files = writeRuntimeFiles(dir, 3, '[runtime]\nlayer_slots = 0\n');
    const cold = parseConfig(readFileSync(files.ternConfig['tern-cold'], 'utf8'));
    const template = parseConfig(readFileSync(files.ternConfig['tern-template'], 'utf8'));
    const pool = parseConfig(readFileSync(files.ternConfig['tern-pool'], 'utf8'));
    expect([cold.factory.template, template.factory.template, pool.factory.template]).toEqual([false, true, true]);
    expect(pool.pool.size).toBe(3);
    for (const c of [cold, template, pool]) expect(c.runtime.layerSlots).toBe(0);
    // Without extra sections: the defaults.
    const plain = writeRuntimeFiles(dir, 2, '');
    expect(parseConfig(readFileSync(plain.ternConfig['tern-template'], 'utf8')).runtime.layerSlots).toBe(4);
  });

  it('takes the extra sections from BENCH_TERN_CONFIG (\\n as a line break), never [factory] or [pool]', () => {
    process.env.BENCH_TERN_CONFIG = '[runtime]\\nlayer_slots = 2';
    expect(extraTernConfig()).toBe('[runtime]\nlayer_slots = 2\n');
    process.env.BENCH_TERN_CONFIG = '[pool]\nsize = 9';
    expect(() => extraTernConfig()).toThrow("BENCH_TERN_CONFIG: [factory] and [pool] are the benchmark's own");
    delete process.env.BENCH_TERN_CONFIG;
    expect(extraTernConfig()).toBe('');
  });
});
