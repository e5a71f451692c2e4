// The answer a shim that tore its sandbox down completely leaves in its bundle
// for containerd's `delete` (read by the native launcher, shim-launcher.test.ts).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/common/logging';
import { decode } from '../../../src/common/proto';
import { DELETE_ANSWER_FILE, leaveDeleteAnswer } from '../../../src/shim/delete';

const dir = mkdtempSync(join(tmpdir(), 'tern-delete-answer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const log = createLogger({ name: 'test', level: 'silent' });

describe('leaveDeleteAnswer', () => {
  it('leaves the DeleteResponse of a sandbox that is gone: no pid, status 137, now', () => {
    const before = Date.now();
    leaveDeleteAnswer(dir, log);
    expect(readdirSync(dir)).toEqual([DELETE_ANSWER_FILE]);
    const r = decode('containerd.task.v2.DeleteResponse', readFileSync(join(dir, DELETE_ANSWER_FILE))) as {
      pid?: number;
      exit_status: number;
      exited_at: { seconds: number | bigint | string };
    };
    expect(r.pid ?? 0).toBe(0);
    expect(r.exit_status).toBe(137);
    expect(Number(r.exited_at.seconds) * 1000).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
  });

  it('a bundle that is gone gets nothing and keeps no temporary file', () => {
    const gone = join(dir, 'gone');
    leaveDeleteAnswer(gone, log);
    expect(existsSync(gone)).toBe(false);
  });
});
