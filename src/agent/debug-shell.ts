// The guest's debug shell: when the host gave the VM a "tern.debug" port
// (agent.debug_shell, off by default), every host connection to it gets a
// root shell in the guest itself (not in a container) on a pty, for looking
// at the guest kernel log, mounts and cgroups. The shell is started through
// tern-launch (exec mode, no namespaces joined: the guest's own), which
// allocates the pty and relays it. When the shell ends, a marker line tells
// the host (a virtio-serial port cannot signal the end by itself); when the
// host goes away, the shell gets SIGHUP, then SIGKILL.
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import type { Duplex, Readable, Writable } from 'node:stream';
import { noRootfsSteps, renderPlan, type LaunchPlan } from './container/plan.js';

export const DEBUG_PORT_NAME = 'tern.debug';
/** The line the host's `tern debug-shell` ends on: the shell's exit status. */
export const EXIT_MARKER = '[tern: guest shell exited with status ';

export function debugShellPlan(): LaunchPlan {
  return {
    mode: 'exec',
    ...noRootfsSteps(),
    join: [],
    rlimits: [],
    uid: 0,
    gid: 0,
    additionalGids: [],
    cwd: '/',
    env: ['PATH=/opt/tern/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/', 'TERM=xterm', 'PS1=tern-guest# '],
    args: ['/bin/sh'],
    terminal: true,
    winsize: { rows: 24, cols: 80 },
    noNewPrivileges: false,
  };
}

export interface DebugShellLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

let sessions = 0;

/** Serves one host connection: a shell until it exits or the host leaves. */
export function runDebugShell(session: Duplex, launcherPath: string, log: DebugShellLog): void {
  const n = ++sessions;
  const planFile = `/run/tern-debug-shell-${n}.plan`;
  writeFileSync(planFile, renderPlan(debugShellPlan()), { mode: 0o600 });
  const child = spawn(launcherPath, [planFile], { stdio: ['pipe', 'pipe', 'ignore', 'pipe', 'pipe'] });
  const status = child.stdio[3] as Readable;
  const control = child.stdio[4] as Writable;
  let exitStatus = -1;
  let ended = false;
  log.info({ session: n, pid: child.pid }, 'debug shell opened');

  let statusText = '';
  status.setEncoding('utf8').on('data', (d: string) => {
    statusText += d;
    let nl: number;
    while ((nl = statusText.indexOf('\n')) >= 0) {
      const line = statusText.slice(0, nl);
      statusText = statusText.slice(nl + 1);
      if (line.startsWith('pid ')) control.write('start\n');
      else if (line.startsWith('exit ')) exitStatus = Number(line.slice(5));
      else if (line.startsWith('error ')) session.write(`tern: debug shell: ${line.slice(6)}\r\n`);
    }
  });
  for (const s of [child.stdin!, control]) s.on('error', () => undefined);
  session.on('error', () => undefined);
  child.stdout!.on('data', (d: Buffer) => {
    if (!ended) session.write(d);
  });
  session.on('data', (d: Buffer) => {
    if (!ended) child.stdin!.write(d);
  });

  // The host left: hang the shell up, and make sure it goes.
  session.once('close', () => {
    if (ended) return;
    control.write('signal 1\n');
    const t = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('close', () => clearTimeout(t));
  });
  child.once('close', () => {
    ended = true;
    rmSync(planFile, { force: true });
    log.info({ session: n, exitStatus }, 'debug shell closed');
    if (!session.destroyed) session.write(`\r\n${EXIT_MARKER}${exitStatus}]\r\n`);
  });
  child.once('error', (err) => {
    ended = true;
    rmSync(planFile, { force: true });
    log.warn({ session: n, err: err.message }, 'debug shell could not start');
    if (!session.destroyed) session.write(`\r\ntern: debug shell could not start: ${err.message}\r\n${EXIT_MARKER}-1]\r\n`);
  });
}
