// Saving a template VM and restoring a clone from it, through QEMU migration
// with x-ignore-shared: guest RAM lives in the template's memory file (mapped
// shared by the template, privately by each clone) and is not copied; only
// device state goes through the stream (a few hundred KB).
// A clone reads its state from a descriptor it inherited (STATE_FD: the
// driver opened the file), as the `fd:3` URI (QEMU 7.2 takes a number there
// for incoming migration): no helper process on the start path, clones run
// with spawning denied, and a clone running as an unprivileged user needs no
// access to the template's directory. An outgoing `fd:` URI takes only a
// descriptor passed over QMP, which Node cannot do, and the shell an `exec:`
// URI runs gets no inherited descriptor (GLib closes them), so a template VM
// (built once, running tern's own guest only) stays root and writes through
// `exec:cat > path`.
import { TernError, invalidArgument } from '../../common/errors.js';
import type { QmpClient } from './qmp.js';

export const MIGRATION_TIMEOUT_MS = 60_000;

/** The descriptor number a clone QEMU inherits its template's state file as (after stdin, stdout, stderr). */
export const STATE_FD = 3;
const RESTORE_URI = `fd:${STATE_FD}`;

/** Single-quotes a path for the shell QEMU runs `exec:` URIs with. */
export function shellQuotePath(p: string): string {
  if (!p.startsWith('/') || /['\n\0]/.test(p))
    throw invalidArgument(`migration state path ${JSON.stringify(p)}: want an absolute path without quotes or newlines`);
  return `'${p}'`;
}

const CAPABILITIES = [
  { capability: 'x-ignore-shared', state: true },
  // MIGRATION events: completion is awaited, not polled.
  { capability: 'events', state: true },
];

interface MigrationStatus {
  status?: string;
  'error-desc'?: string;
}

/** Waits for the MIGRATION event that ends this migration; rejects on failure or exit. */
async function awaitMigration(qmp: QmpClient, start: () => Promise<unknown>, exited: Promise<unknown>, what: string): Promise<void> {
  const ended = qmp.waitEvent('MIGRATION', MIGRATION_TIMEOUT_MS, (d) => {
    const s = (d as MigrationStatus | undefined)?.status;
    return s === 'completed' || s === 'failed' || s === 'cancelled';
  });
  ended.catch(() => {});
  await start();
  const outcome = await Promise.race([
    ended.then(
      (d) => d as MigrationStatus,
      async (err: unknown) => {
        // No event in time: say where the migration stands (a completed one goes on).
        if (!(err instanceof TernError && err.code === 'DeadlineExceeded')) throw err;
        const info = (await qmp.execute('query-migrate').catch(() => ({}))) as MigrationStatus;
        if (info.status === 'completed') return info;
        throw new TernError('DeadlineExceeded', `${what}: migration still ${info.status ?? 'unknown'} after ${MIGRATION_TIMEOUT_MS} ms`);
      },
    ),
    exited.then(() => ({ status: 'exited' }) as MigrationStatus),
  ]);
  if (outcome.status === 'completed') return;
  let desc = '';
  if (outcome.status !== 'exited') {
    const info = (await qmp.execute('query-migrate').catch(() => ({}))) as MigrationStatus;
    desc = info['error-desc'] ?? '';
  }
  throw new TernError('Internal', `${what}: migration ${outcome.status}${desc ? `: ${desc}` : ''}`);
}

/** Pauses the VM and writes its device state to statePath. */
export async function saveState(qmp: QmpClient, statePath: string, exited: Promise<unknown>): Promise<void> {
  const uri = `exec:cat > ${shellQuotePath(statePath)}`;
  await qmp.execute('stop');
  await qmp.execute('migrate-set-capabilities', { capabilities: CAPABILITIES });
  await awaitMigration(qmp, () => qmp.execute('migrate', { uri }), exited, `saving template state to ${statePath}`);
}

/** Loads device state from the state file it inherited into a VM launched with `-incoming defer`, then runs it. */
export async function restoreState(qmp: QmpClient, statePath: string, exited: Promise<unknown>): Promise<void> {
  await qmp.execute('migrate-set-capabilities', { capabilities: CAPABILITIES });
  await awaitMigration(qmp, () => qmp.execute('migrate-incoming', { uri: RESTORE_URI }), exited, `restoring from ${statePath}`);
  // The template was saved paused, so the restored VM is paused too.
  await qmp.execute('cont');
}
