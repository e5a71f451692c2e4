// runCommand and withDeadline with real child processes and timers: a helper
// that never exits, and one whose grandchild keeps its output pipe open
// (execFile would wait for that pipe), both end at the deadline, killed.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '../../../src/common/run-command';
import { withDeadline } from '../../../src/common/deadline';
import { TernError } from '../../../src/common/errors';
import { procAlive as alive } from '../../../src/common/proc';

const dir = mkdtempSync(join(tmpdir(), 'tern-run-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function gone(pid: number, ms = 2000): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return !alive(pid);
}

describe('runCommand', () => {
  it('resolves with stdout, and rejects Internal with stderr on failure', async () => {
    await expect(runCommand('sh', ['-c', 'echo hi'], { timeoutMs: 5000 })).resolves.toBe('hi\n');
    await expect(runCommand('sh', ['-c', 'echo nope >&2; exit 3'], { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'Internal',
      message: 'sh -c echo nope >&2; exit 3: nope',
    });
    await expect(runCommand('/nonexistent/tool', [], { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'Internal' });
  });

  it('a helper that never exits: DeadlineExceeded naming it, and it is killed', async () => {
    const pidFile = join(dir, 'helper.pid');
    const script = `echo $$ > ${pidFile}; exec sleep 30`;
    const t0 = Date.now();
    const err = await runCommand('sh', ['-c', script], { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(err).toBeInstanceOf(TernError);
    expect(err).toMatchObject({ code: 'DeadlineExceeded', message: `sh -c ${script} did not finish within 150 ms` });
    expect(await gone(Number(readFileSync(pidFile, 'utf8')))).toBe(true);
  });

  it('a grandchild holding the output pipe does not hold the call past its deadline', async () => {
    const pidFile = join(dir, 'grandchild.pid');
    // The shell exits at once; its background sleep keeps stdout open.
    const t0 = Date.now();
    const err = await runCommand('sh', ['-c', `sleep 30 & echo $! > ${pidFile}; exit 0`], { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(err).toMatchObject({ code: 'DeadlineExceeded' });
    expect((err as Error).message).toMatch(/did not finish within 200 ms$/);
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  });
});

describe('withDeadline', () => {
  it('passes a settled promise through and clears its timer', async () => {
    await expect(withDeadline(Promise.resolve(7), 50, 'x did not happen')).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error('boom')), 50, 'x did not happen')).rejects.toThrow('boom');
  });

  it('rejects DeadlineExceeded naming what did not happen, after running onTimeout', async () => {
    let stopped = false;
    const err = await withDeadline(new Promise(() => undefined), 30, 'the thing did not finish', () => (stopped = true)).catch((e: unknown) => e);
    expect(stopped).toBe(true);
    expect(err).toMatchObject({ code: 'DeadlineExceeded', message: 'the thing did not finish within 30 ms' });
  });
});
