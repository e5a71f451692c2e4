// `tern logs` on a real tern container started by a private containerd: the
// shim's own shim.log in the sandbox directory (every line naming the
// sandbox), the merged output with shim lines and the guest agent's lines
// from the console, --json, --follow seeing a new line, agent.log_level
// reaching the guest; after the container is removed, no shim.log is left
// (leak detector) and `tern logs` fails cleanly naming the id.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sandboxDir, shimLogPath } from '../../src/shim/paths';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, ternRunDir } from './harness/leaks.js';
import { binDir, ensureBuilt, tern, ternEnv as env, ternJs, waitForTask } from './harness/tern-cli.js';
import { waitFor } from './harness/wait.js';

const RUNTIME = 'io.containerd.tern.v2';

let c: Containerd | undefined;
let image: string;

beforeAll(async () => {
  await ensureBuilt();
  c = await startContainerd({ extraPath: [binDir] });
  image = await importTestImage(c);
});
afterAll(async () => {
  await c?.stop();
});

async function removeTask(name: string): Promise<void> {
  expect(await c!.ctr(['task', 'kill', '-s', 'SIGKILL', name])).toMatchObject({ code: 0 });
  await waitForTask(c!, name, 'STOPPED');
  expect(await c!.ctr(['task', 'rm', name])).toMatchObject({ code: 0 });
  expect(await c!.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
}

/** The human-readable line of a shim or guest record: time, source, level, message, then its fields. */
const lineOf = (source: 'shim' | 'guest', level: string, msg: string, fields: string) =>
  new RegExp(`^\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z {2}${source.padEnd(5)} {2}${level.padEnd(5)} {2}${msg} {2}${fields}`, 'm');

describe('tern logs with a running tern container', () => {
  it('shows the shim log and the guest console of the sandbox; nothing is left after its removal', async () => {
    const name = `tern-logs-${process.pid}`;
    const ns = c!.namespace;
    const scope = [c!.dir, ternRunDir()];
    const before = await snapshot({ scope });

    const started = await c!.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
    expect(started).toMatchObject({ code: 0, stderr: '' });
    await waitForTask(c!, name, 'RUNNING');

    // The shim's own log: in the sandbox directory, every line naming the sandbox.
    const shimLog = shimLogPath(sandboxDir(ternRunDir(), ns, name));
    expect(existsSync(shimLog), shimLog).toBe(true);
    const records = readFileSync(shimLog, 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.length).toBeGreaterThan(3);
    for (const r of records) expect(r, JSON.stringify(r)).toMatchObject({ sandbox: name, namespace: ns, name: 'containerd-shim-tern-v2' });
    expect(records.find((r) => r.msg === 'container created')).toMatchObject({ container: name });

    // Shim lines and the agent's lines from the guest console, merged.
    const out = await waitFor(
      'the agent line in tern logs',
      async () => {
        const r = await tern(['logs', name, '-n', ns]);
        expect(r).toMatchObject({ code: 0, stderr: '' });
        return lineOf('guest', 'INFO', 'container created', `container=${name}`).test(r.stdout) ? r.stdout : undefined;
      },
      30_000,
    );
    expect(out).toMatch(lineOf('shim', 'INFO', 'shim serving', `sandbox=${name} `));
    expect(out).toMatch(lineOf('shim', 'INFO', 'container created', `sandbox=${name} container=${name} `));
    expect(out).toMatch(lineOf('shim', 'INFO', 'sandbox VM ready', `sandbox=${name} `));
    // In time order: the shim's lines in theirs, the guest's container line after the shim began.
    const at = (re: RegExp) => out.split('\n').findIndex((l) => re.test(l));
    const serving = at(lineOf('shim', 'INFO', 'shim serving', ''));
    expect(serving).toBeLessThan(at(lineOf('shim', 'INFO', 'sandbox VM ready', '')));
    expect(at(lineOf('shim', 'INFO', 'sandbox VM ready', ''))).toBeLessThan(at(lineOf('shim', 'INFO', 'container created', '')));
    expect(serving).toBeLessThan(at(lineOf('guest', 'INFO', 'container created', `container=${name}`)));

    const json = await tern(['logs', name, '-n', ns, '--json']);
    expect(json.code).toBe(0);
    const objs = json.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs.filter((o) => o.source === 'shim').every((o) => o.sandbox === name)).toBe(true);
    expect(objs.some((o) => o.source === 'guest' && o.name === 'tern-agent' && o.msg === 'container created' && o.container === name)).toBe(true);
    const shimOnly = await tern(['logs', name, '-n', ns, '--source', 'shim', '--json']);
    expect(
      shimOnly.stdout
        .trimEnd()
        .split('\n')
        .every((l) => (JSON.parse(l) as { source: string }).source === 'shim'),
    ).toBe(true);

    // --follow prints a line the shim writes meanwhile (an exec's exit), and ends on SIGINT.
    const follower = spawn(process.execPath, [ternJs, 'logs', name, '-n', ns, '-f', '--source', 'shim'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let followed = '';
    follower.stdout.setEncoding('utf8').on('data', (d: string) => (followed += d));
    const followerExit = new Promise<number | null>((r) => follower.once('exit', (code) => r(code)));
    try {
      await waitFor('tern logs -f to print the log so far', () => (followed.includes('shim serving') ? true : undefined), 30_000);
      expect(await c!.ctr(['task', 'exec', '--exec-id', 'logs-e1', name, 'true'], { timeoutMs: 60_000 })).toMatchObject({ code: 0 });
      await waitFor(
        'the exec exit in tern logs -f',
        () => (lineOf('shim', 'INFO', 'process exited', `sandbox=${name} container=${name} process=${name}/logs-e1`).test(followed) ? true : undefined),
        30_000,
      );
    } finally {
      follower.kill('SIGINT');
    }
    expect(await followerExit).toBe(0);

    await removeTask(name);
    await expectNoLeaks(before, { scope, timeoutMs: 15_000 });
    expect(existsSync(shimLog)).toBe(false);
    expect(existsSync(dirname(shimLog))).toBe(false);

    const gone = await tern(['logs', name, '-n', ns]);
    expect(gone).toEqual({ code: 1, stdout: '', stderr: `tern logs: no sandbox or container "${name}" in namespace ${ns} under ${ternRunDir()}/sb\n` });
  });

  it('agent.log_level reaches the guest agent: at warn, its info lines are not in the console', async () => {
    const name = `tern-logs-warn-${process.pid}`;
    const ns = c!.namespace;
    const cfgPath = join(c!.dir, 'tern-agent-warn.toml');
    // A cold boot: a template of this shape (another kernel command line) would stay behind as a cache.
    writeFileSync(cfgPath, '[agent]\nlog_level = "warn"\n\n[factory]\ntemplate = false\n');
    const started = await c!.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, '--runtime-config-path', cfgPath, image, name, 'sleep', '1000'], {
      timeoutMs: 240_000,
    });
    expect(started).toMatchObject({ code: 0, stderr: '' });
    try {
      await waitForTask(c!, name, 'RUNNING');
      const r = await tern(['logs', name, '-n', ns, '--json']);
      expect(r.code).toBe(0);
      const objs = r.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      // The shim logged the container; the agent (at warn) did not.
      expect(objs.some((o) => o.source === 'shim' && o.msg === 'container created')).toBe(true);
      expect(objs.filter((o) => o.source === 'guest' && o.name === 'tern-agent' && o.level === 30)).toEqual([]);
    } finally {
      await removeTask(name);
    }
  });
});
