// "Nothing ran before" as a tested condition: the README's demo (a private
// containerd, an imported image, `ctr run --rm` with tern) runs in a private
// mount namespace whose /run is a new, empty tmpfs, and with a layer cache
// that does not exist yet. So /run/containerd/s, /run/tern, the template
// store and the cache must all be made by tern itself. A socket directory that
// cannot be made fails the start with an error naming it.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { run } from './harness/run.js';
import { ensureBuilt } from './harness/tern-cli.js';

/** Runs `script` under bash in a new mount namespace with an empty tmpfs on /run, from the repository root. */
function inFreshRun(marker: string, script: string) {
  const prologue = [
    'set -euo pipefail',
    'mount -t tmpfs -o mode=0755 tmpfs /run',
    'echo "run-entries $(ls -A /run | wc -l)"',
    'printf \'[runtime]\\ncache_dir = "/run/fresh-cache"\\n\' > /run/fresh.toml',
    'export TERN_CONFIG=/run/fresh.toml',
  ].join('\n');
  return run('unshare', ['-m', '--propagation', 'private', 'bash', '-c', `${prologue}\n${script}`], {
    cwd: repoRoot(),
    env: { ...process.env, TERN_FRESH_RUN: marker },
    timeoutMs: 240_000,
  });
}

describe('a first run on a machine where nothing ran before', () => {
  let marker: string;
  let before: Snapshot;

  beforeEach(async () => {
    await ensureBuilt();
    marker = `fresh-${randomUUID()}`;
    before = await snapshot({ scope: [marker] });
  });
  afterEach(async () => {
    // The namespace's mounts end with it; its processes and the host cgroups must end too.
    await expectNoLeaks(before, { scope: [marker], timeoutMs: 15_000 });
  });

  it('runs the demo with an empty /run and no layer cache, and leaves nothing in either', async () => {
    const r = await inFreshRun(
      marker,
      [
        'bash scripts/demo.sh',
        'echo "socket-dir $(stat -c %a /run/containerd/s) $(ls -A /run/containerd/s | wc -l)"',
        'echo "sandboxes-left $(ls -A /run/tern/sb | wc -l)"',
        'echo "layers-cached $(ls /run/fresh-cache/layers | wc -l)"',
        'echo "sandbox-mounts $(grep -c " /run/tern/sb/" /proc/self/mountinfo || true)"',
      ].join('\n'),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^run-entries 0$/m);
    expect(r.stdout).toMatch(/^guest kernel: \S+ {3}\(container in a tern VM/m);
    // Made by the shim, root's alone; the one socket went with its shim.
    expect(r.stdout).toMatch(/^socket-dir 700 0$/m);
    expect(r.stdout).toMatch(/^sandboxes-left 0$/m);
    expect(r.stdout).toMatch(/^layers-cached [1-9]\d*$/m);
    expect(r.stdout).toMatch(/^sandbox-mounts 0$/m);
  });

  it('names the socket directory when it cannot be made', async () => {
    // A file where the directory must be (ctr itself needs /run/containerd/fifo, so that stays writable).
    const r = await inFreshRun(marker, ['mkdir /run/containerd', ': > /run/containerd/s', 'bash scripts/demo.sh'].join('\n'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/cannot create shim socket directory \/run\/containerd\/s: EEXIST/);
  });
});
