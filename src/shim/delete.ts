// `delete`: containerd runs this when the shim died or could not be reached.
// Everything is rebuilt from disk: the sandbox's ledger (teardown-ledger.ts)
// lists what it acquired, and each step is undone newest first from disk
// (teardown-undoers.ts: the driver kills a VM only after checking the pid is
// that VM); then every mount under the directory (host volumes) is undone and
// the directory and a dead socket go (the pod's, and the control socket of a
// dead shim process, which served other pods too). stdout: DeleteResponse.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadConfig } from '../common/config';
import { encode } from '../common/proto';
import type { Logger } from '../common/logging';
import { createDriver } from '../hypervisor/index';
import type { ShimArgs } from './args';
import { CONTROL_SOCKET_PREFIX, SOCKET_ROOT, sandboxDir, socketPath } from './paths';
import type { PodNetwork } from './network';
import type { SandboxRecord } from './sandbox-record';
import { readBundleSpec } from './bundle-spec';
import { canConnect } from './socket-probe';
import { fromDate } from './timestamp';
import { removeSandboxDir } from './volumes';
import { ledgerPath, readLedger, undoSteps, type LedgerStep } from './teardown-ledger';
import { diskUndoers } from './teardown-undoers';

/**
 * What a `delete` answers once the sandbox is gone (no state, nothing to
 * undo): no pid, exit status 137 (as containerd's own shims answer for a task
 * they no longer know), now.
 */
export function goneDeleteResponse(): Uint8Array {
  return encode('containerd.task.v2.DeleteResponse', { pid: 0, exit_status: 137, exited_at: fromDate(new Date()) });
}

/**
 * The file in a bundle where a shim that tore its sandbox down completely
 * leaves the `delete` answer: containerd 1.6 runs `delete` after every shim
 * disconnect, also a clean one, and waits for it; the native launcher
 * (helpers/tern-shim-launch.c) prints this file and removes it instead of
 * starting Node to find nothing to clean.
 */
export const DELETE_ANSWER_FILE = 'tern-delete-answer';

/** Leaves the answer in the bundle (best effort: without it, `delete` runs in full, as always). */
export function leaveDeleteAnswer(bundle: string, log: Logger): void {
  const tmp = join(bundle, `.${DELETE_ANSWER_FILE}-${process.pid}`);
  try {
    writeFileSync(tmp, goneDeleteResponse());
    renameSync(tmp, join(bundle, DELETE_ANSWER_FILE));
  } catch (err) {
    log.debug({ err: (err as Error).message, bundle }, 'delete answer not left in the bundle');
    rmSync(tmp, { force: true });
  }
}

export async function deleteAfterDeadShim(args: ShimArgs, parentLog: Logger): Promise<Uint8Array> {
  const cfg = loadConfig();
  let group = args.id;
  try {
    group = readBundleSpec(args.bundle).groupId(args.id);
  } catch {
    /* bundle gone: the id is the group */
  }
  const dir = sandboxDir(cfg.runtime.stateDir, args.namespace, group);
  // Named as the shim's own lines are (sandbox, container), for containerd's log.
  const log = parentLog.child({ namespace: args.namespace, sandbox: group, container: args.id });
  let pid = 0;
  try {
    const list = JSON.parse(readFileSync(join(dir, 'containers.json'), 'utf8')) as Array<{ id: string; pid: number }>;
    pid = list.find((c) => c.id === args.id)?.pid ?? 0;
  } catch {
    /* no state */
  }
  if (group === args.id && existsSync(dir)) {
    const driver = createDriver(cfg.hypervisor.driver, log);
    const steps = existsSync(ledgerPath(dir)) ? readLedger(dir) : legacySteps(dir, cfg.pool.dir);
    await undoSteps(steps, diskUndoers(dir, driver, log), log);
    // Host volumes bound into the shared directory are unmounted first.
    await removeSandboxDir(dir, log).catch((err: Error) => log.error({ err: err.message, dir }, 'removing the sandbox directory failed'));
    log.info({ dir }, 'cleaned up after a dead shim');
  }
  if (group === args.id) {
    // The pod's socket, and the control socket of a dead shim process (it may have died before it recorded it anywhere).
    for (const sock of [socketPath(args.address, args.namespace, group), ...controlSockets()]) {
      if (existsSync(sock) && !(await canConnect(sock, 1000))) {
        try {
          unlinkSync(sock);
        } catch {
          /* raced */
        }
      }
    }
  }
  // An answer a clean exit left, read by Node instead of the launcher (shim.js run by hand): not left behind.
  rmSync(join(args.bundle, DELETE_ANSWER_FILE), { force: true });
  return encode('containerd.task.v2.DeleteResponse', { pid, exit_status: 137, exited_at: fromDate(new Date()) });
}

/** Every shim process's control socket in the socket directory (shim-daemon.ts). */
function controlSockets(): string[] {
  try {
    return readdirSync(SOCKET_ROOT)
      .filter((name) => name.startsWith(CONTROL_SOCKET_PREFIX))
      .map((name) => join(SOCKET_ROOT, name));
  } catch {
    return [];
  }
}

/**
 * A sandbox directory written before the ledger existed: the same steps, in
 * the order they were acquired, from sandbox.json and network.json.
 */
export function legacySteps(dir: string, defaultPoolDir: string): LedgerStep[] {
  const read = (name: string): unknown => {
    try {
      return JSON.parse(readFileSync(join(dir, name), 'utf8'));
    } catch {
      return undefined;
    }
  };
  const record = (read('sandbox.json') ?? {}) as Partial<SandboxRecord>;
  const network = read('network.json') as PodNetwork | undefined;
  const steps: LedgerStep[] = [];
  if (record.templateDir && record.shimPid) steps.push({ kind: 'template-builds', templateDir: record.templateDir, shimPid: record.shimPid });
  steps.push({ kind: 'pooled-vms', poolDir: record.poolDir ?? defaultPoolDir });
  steps.push({ kind: 'host-cgroup', name: basename(dir) });
  if (network) steps.push({ kind: 'pod-network', network });
  steps.push({ kind: 'vm', runDir: record.vmDir || join(dir, 'vm') });
  return steps;
}
