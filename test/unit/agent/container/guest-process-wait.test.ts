// Process.wait() against a real launcher stand-in (a shell script speaking
// the status protocol) whose process never exits: the wait has no deadline,
// but the caller's signal ends it with Canceled and leaves no waiter behind;
// destroy() then kills the launcher within its bound.
import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestProcess } from '../../../../src/agent/container/guest-process';
import { procAlive as alive } from '../../../../src/common/proc';

const dir = mkdtempSync(join(tmpdir(), 'tern-procwait-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Reports its pid, starts on "start", then never exits. */
const launcher = join(dir, 'launcher.sh');
writeFileSync(launcher, '#!/bin/sh\necho "pid $$" >&3\nread cmd <&4\necho started >&3\nexec sleep 30\n');
chmodSync(launcher, 0o755);

describe('Process.wait', () => {
  it('waits as long as the process runs; an aborted signal ends the wait with Canceled and removes the waiter', async () => {
    const p = new GuestProcess({
      launcherPath: launcher,
      planFile: join(dir, 'unused.plan'),
      io: { terminal: false, stdin: false, stdout: false, stderr: false },
      label: 'container c1',
    });
    const pid = await p.create();
    await p.start();
    expect(p.state).toBe('running');

    const ac = new AbortController();
    const waiting = p.wait(ac.signal);
    const other = p.wait(); // a second caller, not canceled
    let settled = false;
    void waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    expect(p.waiting).toBe(2);

    ac.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'Canceled', message: 'wait for container c1 canceled' });
    expect(p.waiting).toBe(1);
    await expect(p.wait(ac.signal)).rejects.toMatchObject({ code: 'Canceled' });
    expect(p.waiting).toBe(1);

    // The other caller still gets the exit; the launcher is gone after destroy().
    await p.destroy(2000);
    await expect(other).resolves.toMatchObject({ exitStatus: 137 });
    expect(p.waiting).toBe(0);
    expect(alive(pid)).toBe(false);
  });
});
