// `tern logs` over a state directory made for the test, with sample files in
// the shim's and the guest console's formats: its command line, the lookup
// (sandbox id, container id, directory name; a clear failure naming the id),
// the merged output, --source, --since, --json, the rotated shim.log.1, and
// --follow (appends, a rotation, the sandbox's removal, an interrupt).
import { appendFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferIo } from '../../../src/cli/io';
import { logsCommand, parseDuration, parseLogsArgs } from '../../../src/cli/logs-command';
import { runCli } from '../../../src/cli/run';
import { sandboxDir, shimLogPath } from '../../../src/shim/paths';
import { CONSOLE_TEXT, MERGED, SHIM_LINES, T0 } from './log-sample';

let root: string;
let stateDir: string;
let configFile: string;
let pod: string;

async function tern(...argv: string[]) {
  const io = bufferIo();
  const code = await runCli(argv, io);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

function makeSandbox(namespace: string, id: string, containers: string[]): string {
  const dir = sandboxDir(stateDir, namespace, id);
  mkdirSync(join(dir, 'vm'), { recursive: true });
  writeFileSync(join(dir, 'sandbox.json'), JSON.stringify({ namespace, id, shimPid: 0, vmDir: join(dir, 'vm'), createdAt: new Date(T0).toISOString() }));
  writeFileSync(join(dir, 'containers.json'), JSON.stringify(containers.map((c, i) => ({ id: c, bundle: `/b/${c}`, pid: 100 + i }))));
  return dir;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tern-logs-'));
  stateDir = join(root, 'state');
  configFile = join(root, 'config.toml');
  writeFileSync(configFile, `[runtime]\nstate_dir = ${JSON.stringify(stateDir)}\n`);
  pod = makeSandbox('tern-unit', 'pod1', ['pod1', 'c1']);
  writeFileSync(shimLogPath(pod), SHIM_LINES.join(''));
  writeFileSync(join(pod, 'vm', 'console.log'), CONSOLE_TEXT);
  // The same id in two namespaces.
  makeSandbox('ns-a', 'twin', ['twin']);
  makeSandbox('ns-b', 'twin', ['twin']);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('command line', () => {
  it('parses every option', () => {
    expect(parseLogsArgs(['pod1'])).toEqual({
      help: false,
      ref: 'pod1',
      namespace: undefined,
      json: false,
      sinceMs: undefined,
      source: 'all',
      follow: false,
      config: undefined,
    });
    expect(parseLogsArgs(['-n', 'k8s.io', '--json', '--since', '1h30m', '--source', 'guest', '-f', '-c', '/x.toml', 'c1'])).toEqual({
      help: false,
      ref: 'c1',
      namespace: 'k8s.io',
      json: true,
      sinceMs: 5_400_000,
      source: 'guest',
      follow: true,
      config: '/x.toml',
    });
    expect(parseLogsArgs(['--follow', 'x'])).toMatchObject({ follow: true });
    expect(parseLogsArgs(['--help'])).toEqual({ help: true });
  });

  it('reads durations', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    for (const bad of ['', '10', 'm', '10x', '-5m', '1h 30m']) expect(parseDuration(bad), bad).toBeUndefined();
  });

  it.each([[['logs']], [['logs', 'a', 'b']], [['logs', 'a', '--since', 'ten']], [['logs', 'a', '--source', 'both']], [['logs', 'a', '--bogus']]])(
    'tern %j is a usage error (exit 2)',
    async (argv) => {
      const r = await tern(...argv);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^tern: /);
      expect(r.stderr).toMatch(/Usage: tern logs ID/);
    },
  );

  it('has its help, and a line in the main usage', async () => {
    expect((await tern('logs', '--help')).stdout).toMatch(/^Usage: tern logs ID/);
    expect((await tern('help', 'logs')).stdout).toMatch(/--follow/);
    expect((await tern('--help')).stdout).toMatch(/^ {2}logs ID /m);
  });
});

describe('lookup', () => {
  it('exits 1 naming the id when no sandbox or container has it', async () => {
    const r = await tern('logs', 'nope', '--config', configFile);
    expect(r).toEqual({ code: 1, stdout: '', stderr: `tern logs: no sandbox or container "nope" under ${stateDir}/sb\n` });
    const ns = await tern('logs', 'pod1', '-n', 'other', '--config', configFile);
    expect(ns.code).toBe(1);
    expect(ns.stderr).toBe(`tern logs: no sandbox or container "pod1" in namespace other under ${stateDir}/sb\n`);
  });

  it('asks for -n when the id is in several namespaces', async () => {
    const r = await tern('logs', 'twin', '--config', configFile);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('tern logs: "twin" exists in namespaces ns-a, ns-b: pick one with -n\n');
    expect((await tern('logs', 'twin', '-n', 'ns-b', '--config', configFile)).code).toBe(0);
  });

  it('finds the sandbox by its id, a container id or its directory name; so does sandboxes inspect', async () => {
    const byId = await tern('logs', 'pod1', '--config', configFile);
    expect(byId.code).toBe(0);
    expect(byId.stderr).toBe('');
    expect((await tern('logs', 'c1', '--config', configFile)).stdout).toBe(byId.stdout);
    expect((await tern('logs', basename(pod), '--config', configFile)).stdout).toBe(byId.stdout);
    const inspect = await tern('sandboxes', 'inspect', 'c1', '--config', configFile);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(/^id: +pod1$/m);
  });
});

describe('output', () => {
  it('merges the shim log and the guest console in time order, human-readable', async () => {
    const r = await tern('logs', 'pod1', '--config', configFile);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(MERGED.length);
    lines.forEach((l, i) => {
      const [source, what] = MERGED[i]!;
      expect(l.slice(26, 31).trim(), l).toBe(source);
      expect(l).toContain(what);
    });
    expect(lines[0]).toMatch(/^2026-11-23T11:00:00\.000Z {2}shim {3}INFO {3}shim serving {2}sandbox=pod1 /);
    expect(r.stdout).not.toMatch(/\x1b|\r/);
  });

  it('--source picks one file', async () => {
    const s = await tern('logs', 'pod1', '--source', 'shim', '--config', configFile);
    expect(s.stdout.trimEnd().split('\n')).toHaveLength(SHIM_LINES.length);
    expect(s.stdout).not.toMatch(/ guest /);
    const g = await tern('logs', 'pod1', '--source', 'guest', '--config', configFile);
    expect(g.stdout.trimEnd().split('\n')).toHaveLength(MERGED.filter(([src]) => src === 'guest').length);
    expect(g.stdout).not.toMatch(/ shim /);
  });

  it('--json prints one JSON object per line, in the same order', async () => {
    const r = await tern('logs', 'pod1', '--json', '--config', configFile);
    const objs = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { source: string; msg: string });
    expect(objs.map((o) => o.source)).toEqual(MERGED.map(([s]) => s));
    expect(objs[0]).toMatchObject({ source: 'shim', msg: 'shim serving', sandbox: 'pod1', namespace: 'tern-unit' });
    expect(objs[5]).toMatchObject({ source: 'guest', kind: 'kernel', uptime: 2.104816 });
  });

  it('--since keeps the recent lines', async () => {
    const io = bufferIo();
    expect(await logsCommand(['pod1', '--since', '1s', '--config', configFile], io, { now: () => T0 + 10_050 })).toBe(0);
    expect(
      io.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.slice(26, 31).trim()),
    ).toEqual(['shim', 'guest', 'shim', 'shim', 'guest']);
  });

  it('reads the rotated shim.log.1 before shim.log', async () => {
    const dir = makeSandbox('tern-unit', 'rotated', ['rotated']);
    writeFileSync(`${shimLogPath(dir)}.1`, SHIM_LINES.slice(0, 3).join(''));
    writeFileSync(shimLogPath(dir), SHIM_LINES.slice(3).join(''));
    const r = await tern('logs', 'rotated', '--source', 'shim', '--json', '--config', configFile);
    expect(
      r.stdout
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as { time: number }).time),
    ).toEqual(SHIM_LINES.map((l) => (JSON.parse(l) as { time: number }).time));
    // No console yet: said on stderr, exit 0.
    const g = await tern('logs', 'rotated', '--config', configFile);
    expect(g.code).toBe(0);
    expect(g.stderr).toMatch(/^tern logs: no guest console .*console\.log \(the VM has not started\)$/m);
  });
});

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('--follow', () => {
  it('prints what is appended to either file, across a rotation, until interrupted', async () => {
    const dir = makeSandbox('tern-unit', 'follow', ['follow']);
    const log = shimLogPath(dir);
    const consoleLog = join(dir, 'vm', 'console.log');
    writeFileSync(log, SHIM_LINES[0]!);
    writeFileSync(consoleLog, `${CONSOLE_TEXT.split('\r\n').slice(0, 3).join('\r\n')}\r\n`);
    const io = bufferIo();
    const ac = new AbortController();
    const done = logsCommand(['follow', '-f', '--config', configFile], io, { signal: ac.signal, pollMs: 20 });
    await until(() => io.stdout.includes('agent serving'), 'the first lines');
    expect(io.stdout).toContain('shim serving');

    appendFileSync(log, SHIM_LINES[1]!);
    await until(() => io.stdout.includes('hypervisor acceleration chosen'), 'an appended shim line');
    // Rotation between two reads: the old file's last line, then the new file's.
    appendFileSync(log, SHIM_LINES[2]!);
    renameSync(log, `${log}.1`);
    writeFileSync(log, SHIM_LINES[3]!);
    await until(() => io.stdout.includes('sandbox VM ready'), 'the line after a rotation');
    expect(io.stdout.indexOf('qemu started')).toBeGreaterThan(io.stdout.indexOf('hypervisor acceleration chosen'));
    expect(io.stdout.indexOf('sandbox VM ready')).toBeGreaterThan(io.stdout.indexOf('qemu started'));
    // A console line arrives in pieces.
    appendFileSync(consoleLog, '[   12.345678] Out of mem');
    await new Promise((r) => setTimeout(r, 60));
    expect(io.stdout).not.toContain('Out of mem');
    appendFileSync(consoleLog, 'ory: Killed process 201 (sh)\r\n');
    await until(() => io.stdout.includes('Out of memory: Killed process 201 (sh)'), 'a console line completed');

    ac.abort();
    expect(await done).toBe(0);
    // Each line once.
    for (const msg of ['shim serving', 'hypervisor acceleration chosen', 'qemu started', 'sandbox VM ready', 'agent serving']) {
      expect(io.stdout.split(msg).length - 1, msg).toBe(1);
    }
  });

  it('ends when the sandbox is removed', async () => {
    const dir = makeSandbox('tern-unit', 'removed', ['removed']);
    writeFileSync(shimLogPath(dir), SHIM_LINES[0]!);
    const io = bufferIo();
    const done = logsCommand(['removed', '--follow', '--config', configFile], io, { signal: new AbortController().signal, pollMs: 20 });
    await until(() => io.stdout.includes('shim serving'), 'the first line');
    rmSync(dir, { recursive: true });
    expect(await done).toBe(0);
    expect(io.stderr).toMatch(/tern logs: sandbox removed is gone \(its directory .* was removed\)\n$/);
  });
});
