// The warm pool's wire protocol and on-disk layout, shared by the pool
// process (pool.ts, server.ts), the shims that take VMs from it (client.ts)
// and `delete`. One JSON object per line over a unix socket, one request and
// one reply per connection; replies are validated, as the pool is another
// process.
//
// A pooled VM lives in <pool.dir>/<name>/: vm/ (the hypervisor's runDir),
// shared/ (its 9p export, a tmpfs) and, once a shim took it, owner.json
// naming the sandbox directory that owns it from then on.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const MAX_LINE_BYTES = 64 * 1024;

export interface TakeRequest {
  op: 'take';
  /** The template key of the guest shape the shim wants. */
  key: string;
  /** The sandbox id, for logs and the owner record. */
  sandboxId: string;
  /** The sandbox directory that owns the VM from now on (owner.json). */
  owner: string;
}

export interface StatusRequest {
  op: 'status';
}

export type PoolRequest = TakeRequest | StatusRequest;

export interface TakeGranted {
  ok: true;
  /** The pooled VM's directory (vm/, shared/). */
  dir: string;
  name: string;
  pid: number;
  /** How long the VM waited in the pool, ms. */
  idleMs: number;
}

export interface Refused {
  ok: false;
  reason: string;
}

export interface PooledVmStatus {
  name: string;
  pid: number;
  idleMs: number;
}

export interface PoolStatus {
  ok: true;
  pid: number;
  size: number;
  /** Template key the pool's VMs have; '' until the first one is made. */
  key: string;
  ready: PooledVmStatus[];
  starting: number;
  served: number;
  /** Takes the pool could not serve (empty, or a different shape). */
  missed: number;
  failures: number;
  lastFailure: string;
}

export function pooledPaths(dir: string): { vmDir: string; sharedDir: string; ownerFile: string } {
  return { vmDir: join(dir, 'vm'), sharedDir: join(dir, 'shared'), ownerFile: join(dir, 'owner.json') };
}

export interface OwnerRecord {
  owner: string;
  sandboxId: string;
  takenAt: string;
}

export function readOwner(dir: string): OwnerRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(pooledPaths(dir).ownerFile, 'utf8')) as Partial<OwnerRecord>;
    if (typeof r.owner !== 'string' || typeof r.sandboxId !== 'string') return undefined;
    return { owner: r.owner, sandboxId: r.sandboxId, takenAt: String(r.takenAt ?? '') };
  } catch {
    return undefined;
  }
}

/** The pooled VM directories under poolDir whose owner record names sandboxDir. */
export function pooledDirsOwnedBy(poolDir: string, sandboxDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(poolDir);
  } catch {
    return [];
  }
  return names.map((n) => join(poolDir, n)).filter((d) => readOwner(d)?.owner === sandboxDir);
}

const NAME_RE = /^vm-[0-9a-f]{12}$/;

export function isPooledName(name: string): boolean {
  return NAME_RE.test(name);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a request line; throws with the reason on anything malformed. */
export function parseRequest(line: string): PoolRequest {
  const v: unknown = JSON.parse(line);
  if (!isObject(v)) throw new Error('request is not an object');
  if (v.op === 'status') return { op: 'status' };
  if (v.op !== 'take') throw new Error(`unknown op ${JSON.stringify(v.op)}`);
  const { key, sandboxId, owner } = v;
  if (typeof key !== 'string' || !/^[0-9a-f]{8,64}$/.test(key)) throw new Error('take: bad key');
  if (typeof sandboxId !== 'string' || sandboxId.length === 0 || sandboxId.length > 256) throw new Error('take: bad sandboxId');
  if (typeof owner !== 'string' || !owner.startsWith('/') || owner.includes('/../') || owner.length > 4096) throw new Error('take: bad owner');
  return { op: 'take', key, sandboxId, owner };
}

/** Validates the pool's reply to a take. */
export function parseTakeReply(line: string, poolDir: string): TakeGranted | Refused {
  const v: unknown = JSON.parse(line);
  if (!isObject(v)) throw new Error('pool reply is not an object');
  if (v.ok === false) return { ok: false, reason: typeof v.reason === 'string' ? v.reason.slice(0, 1000) : 'no reason given' };
  const { dir, name, pid, idleMs } = v;
  if (typeof name !== 'string' || !isPooledName(name)) throw new Error('pool reply: bad VM name');
  if (dir !== join(poolDir, name)) throw new Error(`pool reply: VM directory ${String(dir)} is not under ${poolDir}`);
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1) throw new Error('pool reply: bad pid');
  return { ok: true, dir, name, pid, idleMs: typeof idleMs === 'number' ? idleMs : 0 };
}
