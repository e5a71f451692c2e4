// The integration harness's pid file reader: a pid file QEMU has created but
// not yet written must read as "no pid yet", never as 0 (process.kill(0, 0)
// succeeds for the caller's own process group, so a wait for pid 0 to go
// would never end).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readPid } from '../../integration/harness/wait';

describe('readPid', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tern-read-pid-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const withText = (text: string): string => {
    const f = join(dir, 'qemu.pid');
    writeFileSync(f, text);
    return f;
  };

  it('reads a written pid, with or without its newline', () => {
    expect(readPid(withText('4242\n'))).toBe(4242);
    expect(readPid(withText('4242'))).toBe(4242);
  });

  it('has no pid for a missing, empty or partial file', () => {
    expect(readPid(join(dir, 'absent.pid'))).toBeUndefined();
    expect(readPid(withText(''))).toBeUndefined();
    expect(readPid(withText('\n'))).toBeUndefined();
  });

  it('never answers 0, 1 or something that is not a number', () => {
    expect(readPid(withText('0\n'))).toBeUndefined();
    expect(readPid(withText('1\n'))).toBeUndefined();
    expect(readPid(withText('12ab\n'))).toBeUndefined();
    expect(readPid(withText('-5\n'))).toBeUndefined();
  });
});
