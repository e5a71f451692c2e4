// `start`: containerd runs this with cwd = bundle and reads stdout until EOF.
// We launch the long-lived shim daemon (`serve`), detached and with none of
// our stdio, wait until it listens, write <bundle>/address atomically and
// print the address. For a CRI container joining a pod, the pod's shim is
// already running: we only write and print its address.
import { spawn } from 'node:child_process';
import { existsSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { internal, unavailable } from '../common/errors';
import { toArgv, type ShimArgs } from './args';
import { socketAddress, socketPath } from './paths';
import { readBundleSpec } from './spec';
import { canConnect } from './socket-probe';

const READY_TIMEOUT_MS = 20_000;


export function writeAddressFile(bundle: string, address: string): void {
  const tmp = join(bundle, `.address-${process.pid}`);
  writeFileSync(tmp, address);
  renameSync(tmp, join(bundle, 'address'));
}

export async function startShim(args: ShimArgs, selfArgv: string[]): Promise<string> {
  const spec = readBundleSpec(args.bundle);
  const group = spec.groupId(args.id);
  const path = socketPath(args.address, args.namespace, group);
  const address = socketAddress(path);

  if (existsSync(path)) {
    if (await canConnect(path)) {
      writeAddressFile(args.bundle, address);
      return address;
    }
    // A socket file with nobody behind it: a dead shim's leftover.
    unlinkSync(path);
  }
  if (spec.joinsSandbox()) {
    throw unavailable(`sandbox ${group} has no running shim (socket ${path}); start the pod sandbox first`);
  }

  const [node, ...script] = selfArgv;
  const child = spawn(node!, [...script, ...toArgv(args, 'serve')], {
    cwd: args.bundle,
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: process.env,
  });
  const ready = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(internal(`shim daemon did not become ready within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => (buf += d));
    pipe.on('end', () => {
      clearTimeout(timer);
      resolve(buf.trim());
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(internal(`cannot launch shim daemon: ${err.message}`));
    });
  });
  if (ready !== 'ok') {
    try {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    throw internal(`shim daemon failed to start: ${ready || 'exited without a word'}`);
  }
  child.unref();
  writeAddressFile(args.bundle, address);
  return address;
}
