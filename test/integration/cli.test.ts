// The built `tern` CLI (dist/tern.js) on this host: `check` judges the real
// host (TCG and why, exit 0 with the guest image present, exit 1 when a guest
// file is missing), `config --validate` on good and bad files, and
// `sandboxes` listing a real tern VM started by a private containerd.
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/common/config';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { binDir, ensureBuilt, tern, waitForTask } from './harness/tern-cli.js';

const RUNTIME = 'io.containerd.tern.v2';

let tmp: string;

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'tern-cli-it-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function devKvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function hostHasVirtFlags(): boolean {
  return /^flags\s*:.*\b(vmx|svm)\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
}

describe('tern check', () => {
  it('reports the accelerator and its reason, and exits 0 with the guest image installed', async () => {
    const g = defaultConfig().hypervisor;
    for (const f of [g.kernel, g.initrd, g.image]) expect(existsSync(f), `${f} (run \`make guest-image\`)`).toBe(true);
    const r = await tern(['check']);
    expect(r.stderr).toBe('');
    const accel = r.stdout.split('\n').find((l) => /^\w+\s+accelerator\s/.test(l));
    expect(accel).toBeDefined();
    // Machines of this kind differ (no /dev/kvm, a PVM /dev/kvm, no vmx/svm): whatever
    // reason the line gives must be true of this machine, and KVM only where all allow it.
    if (!hostHasVirtFlags()) expect(r.stdout).toMatch(/^warn\s+cpu-virtualization\s+no vmx\/svm/m);
    if (/^ok\s+accelerator\s+KVM\b/.test(accel!)) {
      expect(devKvmUsable() && hostHasVirtFlags() && !existsSync('/sys/module/kvm_pvm')).toBe(true);
    } else {
      expect(accel).toMatch(/^warn\s+accelerator\s+TCG\b/);
      const reasons: Array<[RegExp, boolean]> = [
        [/\/dev\/kvm is missing or not read-writable/, !devKvmUsable()],
        [/no vmx\/svm/, !hostHasVirtFlags()],
        [/kvm_pvm (exists|present): KVM here is PVM/, existsSync('/sys/module/kvm_pvm')],
      ];
      const given = reasons.filter(([re]) => re.test(accel!));
      expect(given.length, `a known reason in: ${accel}`).toBeGreaterThan(0);
      for (const [re, truth] of given) expect(truth, `${re} is true of this machine: ${accel}`).toBe(true);
    }
    expect(r.stdout).toMatch(/^ok\s+qemu-devices\s/m);
    expect(r.stdout).toMatch(/^ok\s+shim\s+io\.containerd\.tern\.v2 -> /m);
    expect(r.stdout).toMatch(/^\d+ ok, \d+ warn, 0 fail$/m);
    expect(r.code).toBe(0);
  });

  it('--json parses and agrees with the exit code', async () => {
    const r = await tern(['check', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; verdict: string; reason: string }> };
    expect(j.ok).toBe(true);
    const names = j.checks.map((c) => c.name);
    for (const n of ['cpu-virtualization', 'accelerator', 'dev-kvm', 'vhost-vsock', 'qemu', 'guest-image', 'containerd', 'shim', 'cgroups', 'memory']) {
      expect(names).toContain(n);
    }
    expect(j.checks.every((c) => ['ok', 'warn', 'fail'].includes(c.verdict) && c.reason.length > 0)).toBe(true);
    const accel = j.checks.find((c) => c.name === 'accelerator')!;
    if (!hostHasVirtFlags()) expect(accel.reason).toMatch(/^TCG/);
  });

  it('exits 1 naming the missing guest image', async () => {
    const cfg = join(tmp, 'missing-image.toml');
    writeFileSync(cfg, `[hypervisor]\nimage = ${JSON.stringify(join(tmp, 'no-such.erofs'))}\n`);
    const r = await tern(['check', '--config', cfg]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^fail\s+guest-image\s+.*no-such\.erofs is missing/m);
    expect(r.stdout).toMatch(/, 1 fail$/m);
  });
});

describe('tern config --validate', () => {
  it('accepts a good file and names the bad key of a bad one', async () => {
    const good = join(tmp, 'good.toml');
    writeFileSync(good, '[hypervisor]\naccel = "tcg"\nvcpus = 2\n\n[runtime]\nlog_level = "debug"\n');
    expect(await tern(['config', '--validate', good])).toEqual({ code: 0, stdout: 'valid\n', stderr: '' });
    const bad = join(tmp, 'bad.toml');
    writeFileSync(bad, '[hypervisor]\nmemory_mib = 64\n');
    const r = await tern(['config', '--validate', bad]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/hypervisor\.memory_mib must be at least 128/);
    expect((await tern(['config', '--bogus'])).code).toBe(2);
  });
});

interface ListedSandbox {
  namespace: string | null;
  id: string | null;
  shim: { pid: number | null; alive: boolean };
  qemu: { pid: number | null; alive: boolean; pssKiB: number | null };
  pssKiB: number | null;
  vcpus: number;
  memoryMiB: number;
  uptimeSeconds: number | null;
  startPath: string | null;
}

function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '');
  } catch {
    return false;
  }
}

function argv0(pid: number): string {
  return basename(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '');
}

describe('tern sandboxes with a running tern container', () => {
  let c: Containerd | undefined;
  const name = `tern-cli-${process.pid}`;

  afterAll(async () => {
    await c?.stop();
  });

  it('lists the sandbox with live shim and QEMU pids, inspects it, and forgets it once removed', async () => {
    c = await startContainerd({ extraPath: [binDir] });
    const image = await importTestImage(c);
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });

    const started = await c.ctr(['run', '-d', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    await waitForTask(c, name, 'RUNNING');

    const ls = await tern(['sandboxes', '--json']);
    expect(ls.code).toBe(0);
    const list = JSON.parse(ls.stdout) as ListedSandbox[];
    const sb = list.find((s) => s.namespace === c!.namespace && s.id === name);
    expect(sb, ls.stdout).toBeDefined();
    expect(sb!.shim.alive).toBe(true);
    expect(sb!.qemu.alive).toBe(true);
    expect(processAlive(sb!.shim.pid!)).toBe(true);
    expect(processAlive(sb!.qemu.pid!)).toBe(true);
    expect(argv0(sb!.qemu.pid!)).toMatch(/^qemu-system/);
    expect(readFileSync(`/proc/${sb!.shim.pid}/cmdline`, 'utf8')).toContain('containerd-shim-tern-v2');
    expect(sb!.vcpus).toBe(defaultConfig().hypervisor.vcpus);
    expect(sb!.memoryMiB).toBe(defaultConfig().hypervisor.memoryMiB);
    // A booted guest under TCG: tens of MiB of host memory for QEMU alone.
    expect(sb!.qemu.pssKiB).toBeGreaterThan(20 * 1024);
    expect(sb!.pssKiB).toBeGreaterThan(sb!.qemu.pssKiB!);
    expect(sb!.uptimeSeconds).toBeGreaterThanOrEqual(0);

    const table = await tern(['ls']);
    expect(table.code).toBe(0);
    // Started as a template clone (the default), recorded once the VM was up.
    expect(sb!.startPath).toBe('template');
    expect(table.stdout).toMatch(new RegExp(`^${c.namespace}\\s+${name}\\s+template\\s+${sb!.shim.pid}\\s+${sb!.qemu.pid}\\s`, 'm'));

    const inspect = await tern(['sandboxes', 'inspect', name, '-n', c.namespace]);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toMatch(new RegExp(`^qemu:\\s+${sb!.qemu.pid} \\(alive\\)`, 'm'));
    expect(inspect.stdout).toMatch(new RegExp(`^ {2}${name} {2}pid \\d+`, 'm'));
    expect(inspect.stdout).toMatch(/^console \(last 20 lines\):$/m);

    expect(await c.ctr(['task', 'kill', '-s', 'SIGKILL', name])).toMatchObject({ code: 0 });
    await waitForTask(c, name, 'STOPPED');
    expect(await c.ctr(['task', 'rm', name])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });

    const after = JSON.parse((await tern(['sandboxes', '--json'])).stdout) as ListedSandbox[];
    expect(after.find((s) => s.namespace === c!.namespace && s.id === name)).toBeUndefined();
    expect(processAlive(sb!.qemu.pid!)).toBe(false);
    const gone = await tern(['sandboxes', 'inspect', name, '-n', c.namespace]);
    expect(gone.code).toBe(1);
  });
});
