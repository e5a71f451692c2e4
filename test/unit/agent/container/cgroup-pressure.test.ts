// PSI files: exact values from the text a 6.1 kernel writes, every kind of
// malformed text refused with its reason, and the readers over a scratch
// tree (a missing file is absent without a log line; a malformed one is
// absent with a debug line) and over this host's own /proc/pressure.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parsePressure, readCgroupPressure, readGuestPressure } from '../../../../src/agent/container/cgroup-pressure.js';
import { tempDir } from './fixtures.js';

const scratch = tempDir('tern-psi-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A log that keeps every line, by level. */
function recordingLog() {
  const lines: Array<[string, object, string]> = [];
  const at = (level: string) => (obj: object, msg: string) => void lines.push([level, obj, msg]);
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

// as Linux 6.1 writes them
const CPU = 'some avg10=12.34 avg60=5.67 avg300=0.89 total=123456789\nfull avg10=1.00 avg60=0.50 avg300=0.10 total=42\n';
const MEMORY = 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n';

describe('parsePressure', () => {
  it('reads the some and full lines exactly', () => {
    expect(parsePressure(CPU)).toEqual({
      ok: true,
      pressure: {
        some: { avg10: 12.34, avg60: 5.67, avg300: 0.89, total_usec: 123456789 },
        full: { avg10: 1, avg60: 0.5, avg300: 0.1, total_usec: 42 },
      },
    });
    expect(parsePressure(MEMORY)).toEqual({
      ok: true,
      pressure: { some: { avg10: 0, avg60: 0, avg300: 0, total_usec: 0 }, full: { avg10: 0, avg60: 0, avg300: 0, total_usec: 0 } },
    });
  });

  it('takes a file with only a some line (cpu before Linux 5.13): full absent', () => {
    expect(parsePressure('some avg10=100.00 avg60=99.99 avg300=50.00 total=9007199254740991')).toEqual({
      ok: true,
      pressure: { some: { avg10: 100, avg60: 99.99, avg300: 50, total_usec: 9007199254740991 }, full: null },
    });
  });

  it.each([
    ['', 'no some line'],
    ['full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n', 'no some line'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00\n', 'some line: 3 fields, want avg10 avg60 avg300 total'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00 total=1 extra=2\n', 'some line: 5 fields, want avg10 avg60 avg300 total'],
    ['some avg60=0.00 avg10=0.00 avg300=0.00 total=1\n', 'some line: "avg60=0.00" where avg10= belongs'],
    ['some avg10 avg60=0.00 avg300=0.00 total=1\n', 'some line: "avg10" where avg10= belongs'],
    ['some avg10=-1.00 avg60=0.00 avg300=0.00 total=1\n', 'some line: avg10 "-1.00" is not a number'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00 total=1.5\n', 'some line: total "1.5" is not a number'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00 total=\n', 'some line: total "" is not a number'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00 total=99999999999999999999\n', 'some line: total 99999999999999999999 is too large'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=2\n', 'two some lines'],
    ['some avg10=0.00 avg60=0.00 avg300=0.00 total=1\nhalf avg10=0.00\n', 'line "half avg10=0.00": not some or full'],
    ['\u0000\u0001garbage', 'line "\\u0000\\u0001garbage": not some or full'],
  ])('refuses %j: %s', (text, reason) => {
    expect(parsePressure(text)).toEqual({ ok: false, reason });
  });
});

describe('readCgroupPressure and readGuestPressure', () => {
  it('reads each file; a missing one is absent silently, a malformed one is absent with a debug line', async () => {
    const dir = path.join(scratch, 'cg');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'cpu.pressure'), CPU);
    writeFileSync(path.join(dir, 'memory.pressure'), 'some avg10=0.00\n');
    const { lines, log } = recordingLog();
    const p = await readCgroupPressure(dir, log);
    expect(p).toEqual({
      cpu: { some: { avg10: 12.34, avg60: 5.67, avg300: 0.89, total_usec: 123456789 }, full: { avg10: 1, avg60: 0.5, avg300: 0.1, total_usec: 42 } },
      memory: null,
      io: null,
    });
    expect(lines).toEqual([
      ['debug', { file: path.join(dir, 'memory.pressure'), reason: 'some line: 1 fields, want avg10 avg60 avg300 total' }, 'malformed pressure file skipped'],
    ]);
  });

  it('gives nothing and logs nothing where there is no PSI at all (psi=0: no files)', async () => {
    const { lines, log } = recordingLog();
    expect(await readGuestPressure(log, path.join(scratch, 'no-such-dir'))).toEqual({ cpu: null, memory: null, io: null });
    expect(await readCgroupPressure(path.join(scratch, 'no-such-cgroup'), log)).toEqual({ cpu: null, memory: null, io: null });
    expect(lines).toEqual([]);
  });

  it('logs at debug a file it cannot read for another reason (a directory where the file belongs)', async () => {
    const dir = path.join(scratch, 'odd');
    mkdirSync(path.join(dir, 'io.pressure'), { recursive: true });
    const { lines, log } = recordingLog();
    expect((await readCgroupPressure(dir, log)).io).toBeNull();
    expect(lines.map(([level, obj, msg]) => [level, (obj as { file: string }).file, msg])).toEqual([
      ['debug', path.join(dir, 'io.pressure'), 'pressure file unreadable'],
    ]);
  });

  it("parses this host kernel's own /proc/pressure (the unit tests' hosts have PSI)", async () => {
    const { lines, log } = recordingLog();
    const p = await readGuestPressure(log);
    expect(lines).toEqual([]);
    for (const r of ['cpu', 'memory', 'io'] as const) {
      const some = p[r]?.some;
      expect(some, r).toBeTruthy();
      expect(some!.total_usec, r).toBeGreaterThanOrEqual(0);
      expect(some!.avg10, r).toBeLessThanOrEqual(100);
    }
  });
});
