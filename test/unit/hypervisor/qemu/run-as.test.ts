// QEMU as an unprivileged user (hypervisor.run_as): the argv fragments, and
// the installed QEMU really dropping to that user under its seccomp filter,
// with no capabilities left.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { baseArgs, runAsArgs, sandboxArgs } from '../../../../src/hypervisor/qemu/cmdline.js';
import type { RunAs } from '../../../../src/hypervisor/hypervisor.js';

const NOBODY: RunAs = { uid: 65534, gid: 65534 };

interface ProcStatus {
  uid: string;
  gid: string;
  capEff: string;
  noNewPrivs: string;
  seccomp: string;
}

function procStatus(pid: number): ProcStatus {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  return { uid: field('Uid'), gid: field('Gid'), capEff: field('CapEff'), noNewPrivs: field('NoNewPrivs'), seccomp: field('Seccomp') };
}

/**
 * Runs QEMU (no machine, HMP on stdio) with these arguments; once the monitor
 * answers (the guest would run from here: any drop has happened), reads its
 * /proc status, then quits. Or reports how QEMU ended if it died first.
 */
async function statusOfQemu(args: string[]): Promise<{ status?: ProcStatus; exit?: { code: number | null; signal: NodeJS.Signals | null }; out: string }> {
  const qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-nodefaults', '-display', 'none', '-monitor', 'stdio', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    qemu.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const killer = setTimeout(() => qemu.kill('SIGKILL'), 20_000);
  try {
    const answered = new Promise<void>((resolve) => {
      const onData = (d: Buffer) => {
        out += d.toString();
        if (out.includes('VM status')) resolve();
      };
      qemu.stdout.on('data', onData);
      qemu.stderr.on('data', (d: Buffer) => (out += d.toString()));
    });
    qemu.stdin.on('error', () => {});
    qemu.stdin.write('info status\n');
    const first = await Promise.race([answered.then(() => 'answered' as const), exited.then(() => 'exited' as const)]);
    if (first === 'exited') return { exit: await exited, out };
    const status = procStatus(qemu.pid!);
    qemu.stdin.write('quit\n');
    return { status, exit: await exited, out };
  } finally {
    clearTimeout(killer);
    if (qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
  }
}

describe('run_as fragments', () => {
  it('adds -runas uid:gid only when asked', () => {
    expect(runAsArgs()).toEqual([]);
    expect(runAsArgs(NOBODY)).toEqual(['-runas', '65534:65534']);
    expect(baseArgs(NOBODY)).toEqual(expect.arrayContaining(['-runas', '65534:65534']));
    expect(baseArgs()).not.toContain('-runas');
  });

  it('denies spawning always, and set*id calls unless QEMU must drop to runAs itself', () => {
    expect(sandboxArgs()).toEqual(['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny']);
    expect(sandboxArgs(NOBODY)).toEqual(['-sandbox', 'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny']);
  });
});

describe.runIf(process.getuid?.() === 0)('the installed QEMU', () => {
  it('drops to the user under its seccomp filter: no capabilities, no_new_privs set', async () => {
    const r = await statusOfQemu([...sandboxArgs(NOBODY), ...runAsArgs(NOBODY)]);
    expect(r.status, r.out).toBeDefined();
    expect(r.status!.uid.split(/\s+/)).toEqual(['65534', '65534', '65534', '65534']);
    expect(r.status!.gid.split(/\s+/)).toEqual(['65534', '65534', '65534', '65534']);
    expect(r.status!.capEff).toBe('0000000000000000');
    expect(r.status!.noNewPrivs).toBe('1');
    expect(r.status!.seccomp).toBe('2');
    expect(r.exit).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('stays root under the same filter without run_as', async () => {
    const r = await statusOfQemu(sandboxArgs());
    expect(r.status, r.out).toBeDefined();
    expect(r.status!.uid.split(/\s+/)[0]).toBe('0');
    expect(r.status!.seccomp).toBe('2');
  }, 30_000);

  it('is killed at the drop by a filter that denies set*id calls: why run_as allows them', async () => {
    const r = await statusOfQemu(['-sandbox', 'on,elevateprivileges=deny', ...runAsArgs(NOBODY)]);
    expect(r.status).toBeUndefined();
    expect(r.exit?.signal).toBe('SIGSYS');
  }, 30_000);
});
