// A VM restored from a template resumes with the template's kernel random
// state, clock, hostname and machine id, like every other clone of it. Before
// any container runs, the shim hands it fresh entropy and the host's time, and
// the agent's running helper (guest-helper.ts, tern-vmfork --serve: Node
// cannot issue the ioctls or set the clock) reseeds the kernel CRNG, sets the
// clock and the hostname and mounts the clone's own shared directory; the
// agent writes the machine id.
import { mkdirSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { invalidArgument } from '../common/errors';
import type { GuestHelper } from './guest-helper';
import { SHARED_MOUNT, SHARED_TAG } from './shared-dir';
const MOUNT_TIMEOUT_MS = 5000;

export interface IdentityRequest {
  entropy: Buffer;
  realtime_ns: number | bigint | string;
  hostname: string;
  machine_id: string;
  mount_shared: boolean;
}

const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MACHINE_ID = /^[0-9a-f]{32}$/;

/**
 * Pure: checks the request and returns the helper's request fields. The
 * clock is set to the host's time plus `sinceSentMs`, how long ago the host
 * sent it as best the guest knows (see adoptIdentity).
 */
export function identityFields(r: IdentityRequest, sinceSentMs = 0): string[] {
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
  const late = BigInt(Math.max(0, Math.round(sinceSentMs * 1000))) * 1000n;
  const fields = ['identity', (ns + late).toString(), r.hostname, r.entropy.toString('hex')];
  if (r.mount_shared) fields.push(SHARED_TAG, SHARED_MOUNT, String(MOUNT_TIMEOUT_MS));
  return fields;
}

/** Runs the checks of a request once (a template does, so its clones find them compiled; nothing is changed). */
export function warmIdentityChecks(): void {
  identityFields({ entropy: Buffer.alloc(32), realtime_ns: '1', hostname: 'tern-warmup', machine_id: '0'.repeat(32), mount_shared: false });
}

/** Sets the hostname (of the agent's UTS namespace, the VM's) without a helper process. */
export async function setHostname(hostname: string, procFile = '/proc/sys/kernel/hostname'): Promise<void> {
  if (!HOSTNAME.test(hostname)) throw invalidArgument(`SetHostname: hostname ${JSON.stringify(hostname)}`);
  await writeFile(procFile, hostname);
}

/** Where an adoption's time went, in ms: the helper's work, and the whole. */
export interface AdoptTimings {
  helperMs: number;
  totalMs: number;
}

/**
 * Adopts the identity. The host takes its time when it sends the request (the
 * shim, once the agent has answered its check); between the agent's read of
 * it and the clock being set the guest decodes it and hands it to the helper,
 * slowly under TCG. `readAt` is when the agent last read bytes from the host
 * (performance.now()), which brought this request or came after it: the time
 * since then is added. It never dates the clock ahead; the request's way from
 * the host to the agent's read is not known here and stays a (small) lag.
 * The request is checked before anything is changed, and dated right before
 * the helper gets it.
 */
export async function adoptIdentity(r: IdentityRequest, helper: GuestHelper, readAt?: number): Promise<AdoptTimings> {
  const t0 = performance.now();
  identityFields(r);
  // Synchronous: a clone's first hand-off to libuv's thread pool costs more under TCG than these two small calls.
  if (r.mount_shared) mkdirSync(SHARED_MOUNT, { recursive: true });
  const asked = performance.now();
  await helper.request(identityFields(r, readAt === undefined ? 0 : asked - readAt));
  const helperMs = Math.round(performance.now() - asked);
  writeFileSync('/etc/machine-id', `${r.machine_id}\n`, { mode: 0o444 });
  return { helperMs, totalMs: Math.round(performance.now() - t0) };
}
