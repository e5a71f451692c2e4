// `start`'s wait for the daemon it launched, with real child processes: one
// that says "ok" on fd 3, and one that never does, which is killed at the
// deadline with DeadlineExceeded.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { waitForReady } from '../../../src/shim/start-command';

const daemon = (script: string) => spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });

describe('waitForReady', () => {
  it("resolves with the daemon's word once it closes fd 3", async () => {
    const child = daemon("require('fs').writeSync(3, 'ok unix:///s\\n'); require('fs').closeSync(3); setTimeout(() => {}, 100)");
    await expect(waitForReady(child, 5000)).resolves.toBe('ok unix:///s');
  });

  it('a daemon that never becomes ready: DeadlineExceeded naming it, and it is killed', async () => {
    const child = daemon('setInterval(() => {}, 1000)');
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)));
    const t0 = performance.now();
    const err = await waitForReady(child, 100).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(err).toMatchObject({ code: 'DeadlineExceeded', message: `shim daemon (pid ${child.pid}) did not become ready within 100 ms; killed` });
    expect(await exited).toBe('SIGKILL');
    expect((child.stdio[3] as NodeJS.ReadableStream & { destroyed: boolean }).destroyed).toBe(true);
  });
});
