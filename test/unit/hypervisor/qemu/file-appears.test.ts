// Waiting for a file without polling: seen when created later or already
// there, a deadline when it never comes, and an early end when told to stop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fileAppears } from '../../../../src/hypervisor/qemu/file-appears.js';

describe('fileAppears', () => {
  let dir: string;
  const never = new Promise<void>(() => {});
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-appears-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('resolves when the file is created after the wait began, long before the deadline', async () => {
    const file = path.join(dir, 'qmp.sock');
    const t0 = Date.now();
    const waiting = fileAppears(file, 10_000, never);
    setTimeout(() => fs.writeFileSync(file, ''), 30);
    expect(await waiting).toBe('appeared');
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('resolves at once for a file already there, and ignores other files', async () => {
    fs.writeFileSync(path.join(dir, 'a'), '');
    expect(await fileAppears(path.join(dir, 'a'), 10_000, never)).toBe('appeared');
    const waiting = fileAppears(path.join(dir, 'b'), 300, never);
    fs.writeFileSync(path.join(dir, 'other'), '');
    expect(await waiting).toBe('timeout');
  });

  it('ends when told to stop (the creator exited)', async () => {
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const waiting = fileAppears(path.join(dir, 'never'), 10_000, stopped);
    stop();
    expect(await waiting).toBe('stopped');
  });

  it('still keeps its deadline in a directory that does not exist', async () => {
    expect(await fileAppears(path.join(dir, 'gone', 'x'), 100, never)).toBe('timeout');
  });
});
