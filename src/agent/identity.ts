// A VM restored from a template resumes with the template's kernel random
// state, clock, hostname and machine id, like every other clone of it. Before
// any container runs, the shim hands it fresh entropy and the host's time, and
// tern-vmfork (a small static helper: Node cannot issue the ioctls or set the
// clock) reseeds the kernel CRNG, sets the clock and the hostname and mounts
// the clone's own shared directory; the agent writes the machine id.
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { internal, invalidArgument } from '../common/errors';

export const VMFORK_PATH = '/opt/tern/sbin/tern-vmfork';
export const SHARED_TAG = 'tern-shared';
export const SHARED_MOUNT = '/run/tern-agent/shared';
const MOUNT_TIMEOUT_MS = 5000;
const HELPER_TIMEOUT_MS = 15_000;

export interface IdentityRequest {
  entropy: Buffer;
  realtime_ns: number | bigint | string;
  hostname: string;
  machine_id: string;
  mount_shared: boolean;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MACHINE_ID = /^[0-9a-f]{32}$/;

/** Pure: checks the request and returns tern-vmfork's argv (after the program). */
export function vmforkArgs(r: IdentityRequest): string[] {
  if (!Buffer.isBuffer(r.entropy) || r.entropy.length < 32 || r.entropy.length > 512) {
    throw invalidArgument(`AdoptIdentity: entropy must be 32..512 bytes, got ${r.entropy?.length ?? 0}`);
  }
  let ns: bigint;
  try {
    ns = BigInt(String(r.realtime_ns));
  } catch {
    throw invalidArgument(`AdoptIdentity: realtime_ns ${JSON.stringify(String(r.realtime_ns))} is not an integer`);
  }
  if (ns <= 0n) throw invalidArgument(`AdoptIdentity: realtime_ns ${ns} is not a time`);
  if (!HOSTNAME.test(r.hostname)) throw invalidArgument(`AdoptIdentity: hostname ${JSON.stringify(r.hostname)}`);
  if (!MACHINE_ID.test(r.machine_id)) throw invalidArgument(`AdoptIdentity: machine_id must be 32 lower-case hex digits`);
  const args = [ns.toString(), r.hostname];
  if (r.mount_shared) args.push(SHARED_TAG, SHARED_MOUNT, String(MOUNT_TIMEOUT_MS));
  return args;
}

/** Sets the hostname (of the agent's UTS namespace, the VM's) without a helper process. */
export async function setHostname(hostname: string, procFile = '/proc/sys/kernel/hostname'): Promise<void> {
  if (!HOSTNAME.test(hostname)) throw invalidArgument(`SetHostname: hostname ${JSON.stringify(hostname)}`);
  await writeFile(procFile, hostname);
}

/** Where an adoption's time went, in ms: starting the helper, the helper's own work, the rest. */
export interface AdoptTimings {
  spawnMs: number;
  helperMs: number;
  totalMs: number;
}

export async function adoptIdentity(r: IdentityRequest, helper = VMFORK_PATH): Promise<AdoptTimings> {
  const t0 = performance.now();
  const args = vmforkArgs(r);
  if (r.mount_shared) await mkdir(SHARED_MOUNT, { recursive: true });
  let spawnedAt = t0;
  await new Promise<void>((resolve, reject) => {
    const child = spawn(helper, args, { stdio: ['pipe', 'ignore', 'pipe'], timeout: HELPER_TIMEOUT_MS });
    let stderr = '';
    child.once('spawn', () => (spawnedAt = performance.now()));
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-2000);
    });
    child.once('error', (err) => reject(internal(`cannot run ${helper}: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(internal(`${helper} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
    child.stdin.end(r.entropy);
  });
  const helperDone = performance.now();
  await writeFile('/etc/machine-id', `${r.machine_id}\n`, { mode: 0o444 });
  const ms = (x: number) => Math.round(x);
  return { spawnMs: ms(spawnedAt - t0), helperMs: ms(helperDone - spawnedAt), totalMs: ms(performance.now() - t0) };
}
