// FileTail on real files: whole lines only (a line being written waits for
// its end), appends, a rotation between two reads (the old file's rest read
// under its new name, then the new file), a file begun anew in place, a
// file moving to another path, and a file not there yet.
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileTail, readLines } from '../../../src/cli/log-files';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-tail-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('FileTail', () => {
  it('reads everything first, then what was appended, whole lines only', () => {
    const p = join(dir, 'a.log');
    const t = new FileTail(() => p);
    expect(t.read()).toEqual([]); // not there yet
    writeFileSync(p, 'one\ntwo\r\nthr');
    expect(t.read()).toEqual(['one', 'two']);
    expect(t.read()).toEqual([]);
    appendFileSync(p, 'ee\nfour\n');
    expect(t.read()).toEqual(['three', 'four']);
    appendFileSync(p, 'five');
    expect(t.read()).toEqual([]);
    expect(t.rest()).toEqual(['five']);
  });

  it('follows a rotation to <path>.1 between two reads', () => {
    const p = join(dir, 'shim.log');
    writeFileSync(p, 'a1\na2\n');
    const t = new FileTail(
      () => p,
      (x) => `${x}.1`,
    );
    expect(t.read()).toEqual(['a1', 'a2']);
    appendFileSync(p, 'a3\n');
    renameSync(p, `${p}.1`);
    writeFileSync(p, 'b1\n');
    expect(t.read()).toEqual(['a3', 'b1']);
    appendFileSync(p, 'b2\n');
    expect(t.read()).toEqual(['b2']);
    // Renamed away with no new file yet: the rest is read, the new file later.
    appendFileSync(p, 'b3\n');
    renameSync(p, `${p}.1`);
    expect(t.read()).toEqual(['b3']);
    writeFileSync(p, 'c1\n');
    expect(t.read()).toEqual(['c1']);
  });

  it('starts over on a file truncated in place, and on a file at another path', () => {
    const p = join(dir, 'console.log');
    writeFileSync(p, 'old boot line 1\nold boot line 2\n');
    let path = p;
    const t = new FileTail(() => path);
    expect(t.read()).toHaveLength(2);
    writeFileSync(p, 'new\n');
    expect(t.read()).toEqual(['new']);
    const q = join(dir, 'pooled-console.log');
    writeFileSync(q, 'pooled 1\npooled 2\n');
    appendFileSync(p, 'unterminated');
    path = q;
    // What the old file held after its last line end comes out as a line of its own.
    expect(t.read()).toEqual(['unterminated', 'pooled 1', 'pooled 2']);
  });

  it('keeps multi-byte characters whole across reads', () => {
    const p = join(dir, 'utf8.log');
    const bytes = Buffer.from('größe ✓\n');
    writeFileSync(p, bytes.subarray(0, 3));
    const t = new FileTail(() => p);
    expect(t.read()).toEqual([]);
    appendFileSync(p, bytes.subarray(3));
    expect(t.read()).toEqual(['größe ✓']);
  });
});

describe('readLines', () => {
  it('reads a whole file, its last line without a line end too; nothing for a missing file', () => {
    const p = join(dir, 'r.log');
    writeFileSync(p, 'x\r\ny');
    expect(readLines(p)).toEqual(['x', 'y']);
    expect(readLines(join(dir, 'missing'))).toEqual([]);
  });
});
