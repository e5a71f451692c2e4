// The container's undo stack: newest first; a strict unwind stops at a
// failure and resumes there on retry; a best-effort unwind goes on and ends empty.
import { describe, expect, it } from 'vitest';
import { UndoStack } from '../../../../src/agent/container/undo-stack';

function stack(done: string[], failing: Set<string>): UndoStack {
  const s = new UndoStack();
  for (const what of ['directory', 'cgroup', 'rootfs', 'init process']) {
    s.push(what, async () => {
      if (failing.has(what)) throw new Error(`${what} busy`);
      done.push(what);
    });
  }
  return s;
}

describe('UndoStack', () => {
  it('unwinds newest first; a failed step stays, and a retry resumes from it', async () => {
    const done: string[] = [];
    const failing = new Set(['rootfs']);
    const s = stack(done, failing);
    await expect(s.unwind()).rejects.toThrow('rootfs busy');
    expect(done).toEqual(['init process']);
    expect(s.pending).toEqual(['directory', 'cgroup', 'rootfs']);
    failing.clear();
    await s.unwind();
    expect(done).toEqual(['init process', 'rootfs', 'cgroup', 'directory']);
    expect(s.pending).toEqual([]);
  });

  it('unwindAll goes past failures, reporting each, and ends empty', async () => {
    const done: string[] = [];
    const failed: string[] = [];
    const s = stack(done, new Set(['cgroup', 'init process']));
    await s.unwindAll((what, err) => failed.push(`${what}: ${(err as Error).message}`));
    expect(done).toEqual(['rootfs', 'directory']);
    expect(failed).toEqual(['init process: init process busy', 'cgroup: cgroup busy']);
    expect(s.pending).toEqual([]);
  });
});
