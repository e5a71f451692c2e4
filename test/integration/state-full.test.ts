// tern's state directory full (its tmpfs, like /run on a node, has no space
// left): a start fails with an error that names the cause and the file, and
// leaves nothing behind; once there is space again, the next start works.
// The state directory here is a 4 MiB tmpfs of the test's own.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { run } from './harness/run.js';

const RUNTIME = 'io.containerd.tern.v2';

describe('a full state directory', () => {
  let c: Containerd;
  let image: string;
  let dir: string;
  let state: string;
  let mounted = false;
  let before: Snapshot;
  const savedRunDir = process.env.TERN_RUN_DIR;
  const scope = () => [c.dir, dir];

  beforeAll(async () => {
    dir = mkdtempSync('/run/tern-full-');
    state = join(dir, 'state');
    mkdirSync(state);
    const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', state]);
    if (m.code !== 0) throw new Error(`mount tmpfs on ${state}: ${m.stderr}`);
    mounted = true;
    const cfg = join(dir, 'config.toml');
    writeFileSync(cfg, `[runtime]\nstate_dir = ${JSON.stringify(state)}\n`);
    process.env.TERN_RUN_DIR = state; // where the leak detector looks
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')], env: { TERN_CONFIG: cfg } });
    image = await importTestImage(c);
    before = await snapshot({ scope: scope() });
  });
  afterAll(async () => {
    try {
      await c?.stop();
    } finally {
      if (mounted) await run('umount', [state]);
      rmSync(dir, { recursive: true, force: true });
      if (savedRunDir === undefined) delete process.env.TERN_RUN_DIR;
      else process.env.TERN_RUN_DIR = savedRunDir;
    }
  });

  it('fails the start naming ENOSPC and the file, leaves nothing, and works again once there is space', async () => {
    // fill the tmpfs to the last block
    const filler = join(state, 'filler');
    const fd = openSync(filler, 'w');
    const chunk = Buffer.alloc(64 * 1024);
    try {
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }
    const full = await c.ctr(['run', '--rm', '--runtime', RUNTIME, image, 'tern-full-1', 'true'], { timeoutMs: 180_000 });
    expect(full.code).not.toBe(0);
    // The first state file a start writes: the ledger (its layer pins and the boot's steps run side by side) or sandbox.json.
    expect(full.stderr).toMatch(
      new RegExp(
        `write ${state}/sb/[0-9a-f]+/(sandbox\\.json|ledger\\.jsonl): no space left on device \\(tern's state directory, runtime\\.state_dir, is full\\)`,
      ),
    );
    await c.ctr(['container', 'delete', 'tern-full-1']);
    rmSync(filler);
    await expectNoLeaks(before, { scope: scope(), timeoutMs: 20_000 });

    const ok = await c.ctr(['run', '--rm', '--runtime', RUNTIME, image, 'tern-full-2', 'echo', 'room-again'], { timeoutMs: 180_000 });
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toBe('room-again\n');
    await expectNoLeaks(before, { scope: scope(), timeoutMs: 20_000 });
  });
});
