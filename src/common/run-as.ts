// hypervisor.run_as: the unprivileged user QEMU drops to. Given as a user name
// (its uid and primary group from /etc/passwd) or as numeric "uid:gid".
// Resolved where a VM is specified, not when the config is parsed, so a
// config file can be checked on a machine without that user.
import { readFileSync } from 'node:fs';
import { failedPrecondition, invalidArgument } from './errors';

/** A numeric user and group for QEMU to run as. */
export interface RunAs {
  uid: number;
  gid: number;
}

const NUMERIC = /^(\d+):(\d+)$/;
const NAME = /^[a-z_][a-z0-9_.-]*\$?$/i;

/** Checks the setting's form (empty: QEMU stays root); the message names the key. */
export function checkRunAsSyntax(value: string, source: string): void {
  if (value === '' || NAME.test(value)) return;
  const m = NUMERIC.exec(value);
  if (!m) throw invalidArgument(`${source}: hypervisor.run_as ${JSON.stringify(value)}: want a user name or "uid:gid"`);
  if (Number(m[1]) === 0)
    throw invalidArgument(`${source}: hypervisor.run_as ${JSON.stringify(value)}: uid 0 is root; leave run_as empty for QEMU to run as root`);
}

/** Resolves the setting; undefined when empty. Errors name the key and the missing user. */
export function resolveRunAs(value: string, passwdPath = '/etc/passwd'): RunAs | undefined {
  if (value === '') return undefined;
  const m = NUMERIC.exec(value);
  if (m) {
    const ids = { uid: Number(m[1]), gid: Number(m[2]) };
    if (!Number.isSafeInteger(ids.uid) || !Number.isSafeInteger(ids.gid)) throw invalidArgument(`hypervisor.run_as ${JSON.stringify(value)}: ids out of range`);
    if (ids.uid === 0) throw invalidArgument(`hypervisor.run_as ${JSON.stringify(value)}: uid 0 is root; leave run_as empty for QEMU to run as root`);
    return ids;
  }
  let text: string;
  try {
    text = readFileSync(passwdPath, 'utf8');
  } catch (err) {
    throw failedPrecondition(`hypervisor.run_as ${JSON.stringify(value)}: cannot read ${passwdPath}: ${(err as Error).message}`);
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] !== value || f.length < 4) continue;
    const ids = { uid: Number(f[2]), gid: Number(f[3]) };
    if (!Number.isSafeInteger(ids.uid) || !Number.isSafeInteger(ids.gid))
      throw failedPrecondition(`hypervisor.run_as ${JSON.stringify(value)}: ${passwdPath} has no numeric ids for it`);
    if (ids.uid === 0)
      throw invalidArgument(`hypervisor.run_as ${JSON.stringify(value)}: that user is root (uid 0); leave run_as empty for QEMU to run as root`);
    return ids;
  }
  throw failedPrecondition(
    `hypervisor.run_as ${JSON.stringify(value)}: no such user in ${passwdPath} (create it, e.g. useradd --system --no-create-home --shell /usr/sbin/nologin ${value})`,
  );
}
