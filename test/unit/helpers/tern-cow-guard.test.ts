// The copy-on-write guard (helpers/tern-cow-guard.c), compiled here and
// preloaded into a probe (cow-guard-probe.c) that does to a sparse memory
// file on a tmpfs what a template clone's QEMU does: maps it privately, writes
// every page, punches a hole (a discard) and asks for huge pages. Guarded, the
// template's file neither grows nor loses a page; unguarded (or guarding
// another file), the same run fills every hole of the file and zeroes a page.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const HELPERS = join(__dirname, '../../../helpers');
/** A tmpfs, where a fault on a hole allocates a page of the file. */
const SHM = '/dev/shm';
const MIB_BLOCKS = 2048;

let dir: string;
let memFile: string;

interface ProbeResult {
  blocksBefore: number;
  blocksAfter: number;
  firstByte: string;
  punchRc: number;
  mappings: number;
  hugeMappings: number;
}

function probe(env: Record<string, string>): ProbeResult {
  const out = execFileSync(join(dir, 'probe'), [memFile], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 30_000,
  });
  const [blocksBefore, blocksAfter, firstByte, punchRc, mappings, hugeMappings] = out.trim().split(' ');
  return {
    blocksBefore: Number(blocksBefore),
    blocksAfter: Number(blocksAfter),
    firstByte: firstByte ?? '',
    punchRc: Number(punchRc),
    mappings: Number(mappings),
    hugeMappings: Number(hugeMappings),
  };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-cow-guard-'));
  memFile = join(mkdtempSync(join(SHM, 'tern-cow-guard-')), 'memory');
  writeFileSync(memFile, '');
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-shared', '-fPIC', '-o', join(dir, 'guard.so'), join(HELPERS, 'tern-cow-guard.c'), '-ldl']);
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', join(dir, 'probe'), join(__dirname, 'cow-guard-probe.c')]);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  if (memFile) rmSync(join(memFile, '..'), { recursive: true, force: true });
});

describe('tern-cow-guard', () => {
  it("a clone's writes to holes and its discards leave the template's file as it was", () => {
    const r = probe({ LD_PRELOAD: join(dir, 'guard.so'), TERN_COW_GUARD_FILE: memFile });
    expect(r.punchRc).toBe(0);
    expect(r.firstByte).toBe('A');
    expect(r.blocksAfter).toBe(r.blocksBefore);
    // The holes are anonymous mappings of their own, none marked for huge pages.
    expect(r.mappings).toBeGreaterThan(1);
    expect(r.hugeMappings).toBe(0);
  });

  it('without the guard the same run fills the holes of the file and punches it', () => {
    const r = probe({});
    expect(r.blocksAfter - r.blocksBefore).toBeGreaterThan(7 * MIB_BLOCKS);
    expect(r.firstByte).toBe('0');
    expect(r.mappings).toBe(1);
  });

  it('another file than the one named passes through unchanged', () => {
    const other = join(dir, 'other');
    writeFileSync(other, '');
    const r = probe({ LD_PRELOAD: join(dir, 'guard.so'), TERN_COW_GUARD_FILE: other });
    expect(r.blocksAfter - r.blocksBefore).toBeGreaterThan(7 * MIB_BLOCKS);
    expect(r.firstByte).toBe('0');
  });

  it('refuses to run when the file it should guard is missing', () => {
    expect(() => probe({ LD_PRELOAD: join(dir, 'guard.so'), TERN_COW_GUARD_FILE: join(dir, 'missing') })).toThrow(/cannot stat the template memory file/);
  });
});
