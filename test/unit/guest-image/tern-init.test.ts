// Compiles guest-image/init/tern-init.c and runs it on the host (not as PID 1,
// where it exits instead of powering off): the agent's exit status is passed
// through, a signal death maps to 128+signal, the agent gets the fixed
// environment and default signal dispositions, and orphans are reaped.
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const source = fileURLToPath(new URL('../../../guest-image/init/tern-init.c', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('tern-init', () => {
  let tmp = '';
  let bin = '';

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-init-'));
    bin = path.join(tmp, 'tern-init');
    execFileSync('gcc', ['-O2', '-static', '-Wall', '-Werror', '-o', bin, source], { stdio: 'pipe' });
  }, 60_000);

  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const run = (script: string): Promise<Run> =>
    new Promise((resolve) => {
      execFile(bin, ['/bin/sh', '-c', script], { timeout: 20_000 }, (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      });
    });

  it("passes the agent's exit status through and logs it", async () => {
    const r = await run('exit 7');
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/tern-init: agent \(pid \d+\) exited with status 7/);
  });

  it('reports a signal death as 128+signal', async () => {
    const r = await run('kill -KILL $$');
    expect(r.code).toBe(137);
    expect(r.stderr).toContain('killed by signal 9');
  });

  it('gives the agent UV_THREADPOOL_SIZE, PATH and default SIGTERM handling', async () => {
    const r = await run('echo "$UV_THREADPOOL_SIZE|$PATH"; grep -E "^SigIgn" /proc/self/status');
    expect(r.code).toBe(0);
    const [envLine, sigIgn] = r.stdout.trim().split('\n');
    expect(envLine).toMatch(/^8\|\/opt\/tern\/bin:/);
    // SIGHUP(1), SIGINT(2) and SIGTERM(15) must not stay ignored in the agent.
    const mask = BigInt(`0x${(sigIgn ?? '').split(/\s+/)[1]}`);
    for (const sig of [1n, 2n, 15n]) expect(mask & (1n << (sig - 1n))).toBe(0n);
  });

  it('reaps orphans that are reparented to it', async () => {
    // The grandchild outlives its parent and is reparented to tern-init; once it
    // exits, it must not stay a zombie.
    const pidFile = path.join(tmp, 'orphan.pid');
    const r = await run(
      `sh -c 'sleep 0.6 & echo $! > ${pidFile}'; sleep 0.2; p=$(cat ${pidFile}); ` +
        `[ "$(awk '/^PPid/ { print $2 }' /proc/$p/status)" = "$PPID" ] && echo reparented; ` +
        'sleep 1; if [ -e /proc/$p ]; then grep "^State" /proc/$p/status; else echo gone; fi',
    );
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['reparented', 'gone']);
  });

  it('exits with 127 when the agent cannot be executed', async () => {
    const r = await new Promise<Run>((resolve) => {
      execFile(bin, [path.join(tmp, 'missing')], { timeout: 20_000 }, (err, stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      });
    });
    expect(r.code).toBe(127);
    expect(r.stderr).toContain('cannot execute');
  });
});
