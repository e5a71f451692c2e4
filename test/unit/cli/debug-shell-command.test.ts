import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { partialMarkerStart, vmDirOf } from '../../../src/cli/debug-shell-command';
import { EXIT_MARKER } from '../../../src/agent/debug-shell';

describe('partialMarkerStart', () => {
  it("holds back only what may begin the guest's exit marker", () => {
    expect(partialMarkerStart('tern-guest# ')).toBe(12);
    expect(partialMarkerStart('ls [abc]')).toBe(8);
    const text = `out\r\n${EXIT_MARKER.slice(0, 10)}`;
    expect(partialMarkerStart(text)).toBe(5);
    expect(partialMarkerStart(`x${EXIT_MARKER}12`)).toBe(1);
    expect(partialMarkerStart(`x${EXIT_MARKER}12]`)).toBe(EXIT_MARKER.length + 4);
  });
});

describe('vmDirOf', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tern-dbg-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it("is sandbox.json's vmDir (a pooled VM's), else <dir>/vm", () => {
    expect(vmDirOf(dir)).toBe(join(dir, 'vm'));
    writeFileSync(join(dir, 'sandbox.json'), JSON.stringify({ vmDir: '/run/tern/pool/vm-1' }));
    expect(vmDirOf(dir)).toBe('/run/tern/pool/vm-1');
    writeFileSync(join(dir, 'sandbox.json'), '{not json');
    expect(vmDirOf(dir)).toBe(join(dir, 'vm'));
  });
});
