// `tern debug-shell ID` against real VMs: with agent.debug_shell on, a root
// shell in the guest itself (its kernel command line, the launcher, no
// container root), with the shell's exit status; with it off (the default)
// the command is refused naming the setting. Nothing is left afterwards.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/logging';
import { TemplateStore } from '../../src/shim/templates/store';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { tern, waitForTask } from './harness/tern-cli.js';

const RUNTIME = 'io.containerd.tern.v2';

describe('tern debug-shell', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;
  let cfgPath: string;
  let store: TemplateStore;
  const names: string[] = [];
  const scope = () => [c.dir, '/run/tern'];

  const runDetached = async (name: string, extra: string[]) => {
    names.push(name);
    const r = await c.ctr(['run', '-d', '--runtime', RUNTIME, ...extra, image, name, 'sleep', '1000'], { timeoutMs: 180_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await waitForTask(c, name, 'RUNNING');
  };

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
    // its own template store: the debug port is part of the template key
    const templateDir = join(c.dir, 'templates');
    cfgPath = join(c.dir, 'tern-debug.toml');
    writeFileSync(cfgPath, ['[agent]', 'debug_shell = true', '[factory]', `template_dir = ${JSON.stringify(templateDir)}`, ''].join('\n'));
    store = new TemplateStore(templateDir, createLogger({ name: 'test', level: 'silent' }));
    before = await snapshot({ scope: scope() });
  });
  afterAll(async () => {
    if (!c) return;
    try {
      for (const name of names) {
        await c.ctr(['task', 'kill', '-s', 'SIGKILL', name]).catch(() => undefined);
        await c.ctr(['task', 'delete', '-f', name], { timeoutMs: 60_000 }).catch(() => undefined);
        await c.ctr(['container', 'delete', name]).catch(() => undefined);
      }
      await store.destroyAll();
      if (before) await expectNoLeaks(before, { scope: scope(), timeoutMs: 20_000 });
    } finally {
      await c.stop();
    }
  });

  it("opens a root shell in the guest when agent.debug_shell is on, and returns the shell's exit status", async () => {
    await runDetached('tern-debug-on', ['--runtime-config-path', cfgPath]);
    const script = ['cat /proc/cmdline', 'id -u', 'test -x /opt/tern/sbin/tern-launch && echo "guest-root-$((40+2))"', 'exit 3', ''].join('\n');
    const r = await tern(['debug-shell', 'tern-debug-on', '-n', c.namespace, '--config', cfgPath], { input: script, timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/console=ttyS0/); // the guest kernel's command line
    expect(r.stdout).toMatch(/^0\r?$/m);
    expect(r.stdout).toMatch(/^guest-root-42\r?$/m);
    expect(r.code).toBe(3);
    // a second session after the first ended
    const again = await tern(['debug-shell', 'tern-debug-on', '--config', cfgPath], { input: 'echo "second-$((1+1))"\n', timeoutMs: 60_000 });
    expect(again.stdout).toMatch(/^second-2\r?$/m);
    expect(again.code).toBe(0);
  });

  it('is refused, naming the setting, for a VM started without it', async () => {
    await runDetached('tern-debug-off', []);
    const r = await tern(['debug-shell', 'tern-debug-off']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/sandbox tern-debug-off has no debug shell: it is off \(set debug_shell = true under \[agent\]/);
    const none = await tern(['debug-shell', 'no-such-sandbox']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no sandbox or container "no-such-sandbox"/);
  });
});
