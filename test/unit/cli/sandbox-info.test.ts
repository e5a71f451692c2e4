// `tern sandboxes` over a state directory made for the test: a live sandbox
// (a real QEMU, paused before boot, as its VM, a real process standing for
// the shim), a dead one and a directory without sandbox.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig, type TernConfig } from '../../../src/common/config';
import { bufferIo } from '../../../src/cli/io';
import { runCli } from '../../../src/cli/run';
import { consoleTail, listSandboxes, socketFromAddress } from '../../../src/cli/sandbox-info';
import { procStartTime } from '../../../src/common/proc';
import { sandboxDir } from '../../../src/shim/paths';

let dir: string;
let cfg: TernConfig;
let configFile: string;
const children: ChildProcess[] = [];

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tern-sb-'));
  cfg = defaultConfig();
  cfg.runtime.stateDir = join(dir, 'state');
  configFile = join(dir, 'config.toml');
  writeFileSync(configFile, `[runtime]\nstate_dir = ${JSON.stringify(cfg.runtime.stateDir)}\n`);

  // Live sandbox: ns "tern-unit", id "live".
  const live = sandboxDir(cfg.runtime.stateDir, 'tern-unit', 'live');
  const vmDir = join(live, 'vm');
  mkdirSync(vmDir, { recursive: true });
  const shim = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600_000)', 'live'], { stdio: 'ignore' });
  const qemu = spawn(
    'qemu-system-x86_64',
    ['-machine', 'microvm', '-accel', 'tcg', '-nodefaults', '-display', 'none', '-S', '-smp', '2', '-m', '256M', '-pidfile', join(vmDir, 'qemu.pid')],
    {
      stdio: 'ignore',
    },
  );
  children.push(shim, qemu);
  writeFileSync(
    join(live, 'sandbox.json'),
    JSON.stringify({ namespace: 'tern-unit', id: 'live', shimPid: shim.pid, vmDir, createdAt: new Date(Date.now() - 65_000).toISOString(), startPath: 'pool' }),
  );
  writeFileSync(
    join(live, 'containers.json'),
    JSON.stringify([
      { id: 'live', bundle: '/b/live', pid: 7 },
      { id: 'side', bundle: '/b/side', pid: 9 },
    ]),
  );
  writeFileSync(join(vmDir, 'console.log'), `${Array.from({ length: 30 }, (_, i) => `line ${i + 1}`).join('\n')}\n`);
  await waitFor(
    () => existsSync(join(vmDir, 'qemu.pid')) && readFileSync(join(vmDir, 'qemu.pid'), 'utf8').endsWith('\n'),
    10_000,
    'QEMU did not write its pid file',
  );

  // Two more pods of the same shim process (one shim serves many pods), recorded with its start time:
  // "twin" with the right one, "reused" with another (the pid of a process that is not its shim).
  for (const [id, startTime] of [
    ['twin', procStartTime(shim.pid!)],
    ['reused', '1'],
  ] as const) {
    const d = sandboxDir(cfg.runtime.stateDir, 'tern-unit', id);
    mkdirSync(join(d, 'vm'), { recursive: true });
    writeFileSync(join(d, 'vm', 'qemu.pid'), readFileSync(join(vmDir, 'qemu.pid')));
    writeFileSync(
      join(d, 'sandbox.json'),
      JSON.stringify({ namespace: 'tern-unit', id, shimPid: shim.pid, shimStartTime: startTime, vmDir: join(d, 'vm'), createdAt: new Date().toISOString() }),
    );
  }

  // Dead sandbox: pids that no longer run.
  const dead = sandboxDir(cfg.runtime.stateDir, 'tern-unit', 'dead');
  mkdirSync(join(dead, 'vm'), { recursive: true });
  const gone = spawn('true');
  await exited(gone);
  writeFileSync(
    join(dead, 'sandbox.json'),
    JSON.stringify({ namespace: 'tern-unit', id: 'dead', shimPid: gone.pid, vmDir: join(dead, 'vm'), createdAt: new Date().toISOString() }),
  );
  writeFileSync(join(dead, 'vm', 'qemu.pid'), `${gone.pid}\n`);

  // A directory the shim created but never described.
  mkdirSync(join(cfg.runtime.stateDir, 'sb', '0000aaaa'), { recursive: true });
});

afterAll(async () => {
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
    await exited(c);
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('listSandboxes', () => {
  it('reports live processes, resources from the QEMU command line, PSS and uptime', () => {
    const list = listSandboxes(cfg);
    expect(list.map((s) => s.id)).toEqual([null, 'dead', 'live', 'reused', 'twin']);
    const live = list.find((s) => s.id === 'live')!;
    expect(live.namespace).toBe('tern-unit');
    expect(live.shim).toMatchObject({ pid: children[0]!.pid, alive: true });
    expect(live.qemu).toMatchObject({ pid: children[1]!.pid, alive: true });
    expect(live.qemu.pssKiB).toBeGreaterThan(1000);
    // Its shim process serves "twin" too: each pod's total counts half of it.
    expect(live.shim.pssKiB).toBeGreaterThan(1000);
    expect(live.pssKiB).toBe((live.qemu.pssKiB ?? 0) + Math.round((live.shim.pssKiB ?? 0) / 2));
    const twin = list.find((s) => s.id === 'twin')!;
    expect(twin.shim).toMatchObject({ pid: children[0]!.pid, alive: true });
    // A recorded start time that is not the process's: that pid is not its shim any more.
    expect(list.find((s) => s.id === 'reused')!.shim).toMatchObject({ pid: children[0]!.pid, alive: false, pssKiB: null });
    expect(live.vcpus).toBe(2);
    expect(live.memoryMiB).toBe(256);
    expect(live.resourcesFrom).toBe('qemu');
    expect(live.uptimeSeconds).toBeGreaterThanOrEqual(64);
    expect(live.containers.map((c) => c.id)).toEqual(['live', 'side']);
    expect(consoleTail(live, 20)).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i + 11}`));
  });

  it('marks dead pids, falls back to the config, and flags a directory without sandbox.json', () => {
    const list = listSandboxes(cfg);
    const dead = list.find((s) => s.id === 'dead')!;
    expect(dead.shim.alive).toBe(false);
    expect(dead.qemu.alive).toBe(false);
    expect(dead.qemu.pid).toBe(dead.shim.pid);
    expect(dead.pssKiB).toBeNull();
    expect(dead.uptimeSeconds).toBeNull();
    expect(dead.resourcesFrom).toBe('config');
    expect(dead.memoryMiB).toBe(cfg.hypervisor.memoryMiB);
    const bare = list.find((s) => s.id === null)!;
    expect(bare.problems).toEqual(['sandbox.json: missing']);
  });

  it('is empty when the state directory does not exist', () => {
    expect(listSandboxes({ ...cfg, runtime: { ...cfg.runtime, stateDir: join(dir, 'nope') } })).toEqual([]);
  });
});

describe('tern sandboxes command', () => {
  const tern = async (...argv: string[]) => {
    const io = bufferIo();
    return { code: await runCli(argv, io), stdout: io.stdout, stderr: io.stderr };
  };

  it('prints a table and JSON', async () => {
    const t = await tern('ls', '-c', configFile);
    expect(t.code).toBe(0);
    const lines = t.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAMESPACE\s+ID\s+START\s+SHIM\s+QEMU\s+UPTIME\s+VCPUS\s+MEMORY\s+PSS\s+CONTAINERS$/);
    expect(lines.find((l) => / dead /.test(l))).toMatch(/tern-unit\s+dead\s+-\s+/);
    expect(lines.find((l) => / live /.test(l))).toMatch(
      new RegExp(`tern-unit\\s+live\\s+pool\\s+${children[0]!.pid}\\s+${children[1]!.pid}\\s+1m0[5-9]s\\s+2\\s+256 MiB\\s+\\d+\\.\\d MiB\\s+2$`),
    );
    expect(lines.find((l) => / dead /.test(l))).toMatch(/\(dead\)/);
    const j = JSON.parse((await tern('sandboxes', '--json', '-c', configFile)).stdout) as Array<{ id: string | null }>;
    expect(j.map((s) => s.id)).toEqual([null, 'dead', 'live', 'reused', 'twin']);
    const filtered = JSON.parse((await tern('sandboxes', '--json', '-n', 'other', '-c', configFile)).stdout);
    expect(filtered).toEqual([]);
  });

  it('inspects one sandbox with containers and the console tail', async () => {
    const r = await tern('sandboxes', 'inspect', 'live', '-c', configFile);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^namespace:\s+tern-unit$/m);
    expect(r.stdout).toMatch(/^vcpus:\s+2 \(from qemu\)$/m);
    expect(r.stdout).toMatch(/^started as: pool$/m);
    expect(r.stdout).toMatch(/^ {2}side {2}pid 9 {2}\/b\/side$/m);
    expect(r.stdout).toContain('console (last 20 lines):\n  line 11\n');
    expect(r.stdout).not.toContain('line 10\n');
    const j = JSON.parse((await tern('sandboxes', 'inspect', 'live', '--json', '-c', configFile)).stdout);
    expect(j.console).toHaveLength(20);
    expect(j.containers).toHaveLength(2);
    const missing = await tern('sandboxes', 'inspect', 'nosuch', '-c', configFile);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no sandbox or container "nosuch"/);
  });
});

describe('shim socket', () => {
  it("comes from sandbox.json, else from the address file in a container's bundle", () => {
    const state = join(dir, 'state-sockets');
    const c = { ...cfg, runtime: { ...cfg.runtime, stateDir: state } };
    const bundle = join(dir, 'bundle-b');
    mkdirSync(bundle, { recursive: true });
    writeFileSync(join(bundle, 'address'), 'unix:///run/containerd/s/def');
    const sandboxes: Array<[string, object, object[]]> = [
      ['a', { shimSocket: '/run/containerd/s/abc' }, []],
      [
        'b',
        {},
        [
          { id: 'b0', pid: 1, bundle: join(dir, 'no-such-bundle') },
          { id: 'b1', pid: 2, bundle },
        ],
      ],
      ['c', {}, [{ id: 'c', pid: 3 }]],
    ];
    for (const [id, rec, containers] of sandboxes) {
      const sb = sandboxDir(state, 'tern-unit', id);
      mkdirSync(sb, { recursive: true });
      writeFileSync(join(sb, 'sandbox.json'), JSON.stringify({ namespace: 'tern-unit', id, ...rec }));
      writeFileSync(join(sb, 'containers.json'), JSON.stringify(containers));
    }
    expect(listSandboxes(c).map((s) => [s.id, s.shimSocket])).toEqual([
      ['a', '/run/containerd/s/abc'],
      ['b', '/run/containerd/s/def'],
      ['c', null],
    ]);
    expect(socketFromAddress('unix:/x')).toBe('/x');
    expect(socketFromAddress('relative')).toBeNull();
  });
});
