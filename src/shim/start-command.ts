// `start`: containerd runs the shim binary with cwd = bundle and reads stdout
// until EOF. The long-lived daemon serves the sandbox, writes
// <bundle>/address atomically and says "ok <address>" on its fd 3; the
// launcher prints the address. For a CRI container joining a pod, the pod's
// shim is already running: only its address is written and printed.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deadlineExceeded, internal, unavailable } from '../common/errors';
import { toArgv, type ShimArgs } from './args';
import { socketAddress, socketPath } from './paths';
import { readBundleSpec } from './bundle-spec';
import { canConnect } from './socket-probe';

/** How long `start` waits for the daemon it launched to listen (its word on fd 3). */
const READY_TIMEOUT_MS = 20_000;

/**
 * The daemon's word on its fd 3 (our `child.stdio[3]`), read to end-of-file:
 * "ok" or "err ...". Past timeoutMs the daemon is killed (it must not start
 * serving later, unannounced) and DeadlineExceeded says so.
 */
export function waitForReady(child: ChildProcess, timeoutMs = READY_TIMEOUT_MS): Promise<string> {
  const pipe = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
  return new Promise<string>((resolve, reject) => {
    let buf = '';
    const onData = (d: string) => (buf += d);
    const onEnd = () => done(() => resolve(buf.trim()));
    const onError = (err: Error) => done(() => reject(internal(`cannot launch shim daemon: ${err.message}`)));
    const done = (settle: () => void) => {
      clearTimeout(timer);
      pipe.off('data', onData);
      pipe.off('end', onEnd);
      child.off('error', onError);
      settle();
    };
    const timer = setTimeout(
      () =>
        done(() => {
          child.kill('SIGKILL');
          pipe.destroy();
          reject(deadlineExceeded(`shim daemon (pid ${child.pid}) did not become ready within ${timeoutMs} ms; killed`));
        }),
      timeoutMs,
    );
    pipe.setEncoding('utf8');
    pipe.on('data', onData);
    pipe.on('end', onEnd);
    child.once('error', onError);
  });
}

export function writeAddressFile(bundle: string, address: string): void {
  const tmp = join(bundle, `.address-${process.pid}`);
  writeFileSync(tmp, address);
  renameSync(tmp, join(bundle, 'address'));
}

/**
 * The address of the shim already serving this container's sandbox, if one
 * is (its address file written), or undefined when a new daemon must serve
 * it. A socket file with nobody behind it (a dead shim's) is removed; a CRI
 * container joining a pod whose shim is not running fails Unavailable.
 */
export async function runningShim(args: ShimArgs): Promise<string | undefined> {
  const spec = readBundleSpec(args.bundle);
  const group = spec.groupId(args.id);
  const path = socketPath(args.address, args.namespace, group);
  if (existsSync(path)) {
    if (await canConnect(path)) {
      const address = socketAddress(path);
      writeAddressFile(args.bundle, address);
      return address;
    }
    unlinkSync(path);
  }
  if (spec.joinsSandbox()) {
    throw unavailable(`sandbox ${group} has no running shim (socket ${path}); start the pod sandbox first`);
  }
  return undefined;
}

/**
 * `start` in Node, for running the bundle without its native launcher
 * (helpers/tern-shim-launch.c, which containerd runs and which forks the
 * daemon itself): launches `serve` detached and waits for its word.
 */
export async function startShim(args: ShimArgs, selfArgv: string[]): Promise<string> {
  const running = await runningShim(args);
  if (running) return running;
  const [node, ...script] = selfArgv;
  const child = spawn(node!, [...script, ...toArgv(args, 'serve')], {
    cwd: args.bundle,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: process.env,
  });
  const ready = await waitForReady(child);
  if (!ready.startsWith('ok ')) {
    try {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    throw internal(`shim daemon failed to start: ${ready.replace(/^err /, '') || 'exited without a word'}`);
  }
  child.unref();
  // serve wrote <bundle>/address before it spoke.
  return ready.slice(3);
}
