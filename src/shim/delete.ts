// `delete`: containerd runs this when the shim died or could not be reached.
// Everything is rebuilt from disk: the sandbox directory says which VM ran;
// the driver kills it (checking the pid really is that VM) and removes its
// files; then every mount under the directory (host volumes) is undone and
// the directory and a dead socket go. stdout: DeleteResponse.
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadConfig } from '../common/config';
import { encode } from '../common/proto';
import type { Logger } from '../common/logging';
import { createDriver } from '../hypervisor/index';
import type { ShimArgs } from './args';
import { sandboxDir, socketPath } from './paths';
import { teardownPodNetwork, type PodNetwork } from './network';
import type { SandboxRecord } from './sandbox';
import { readBundleSpec } from './bundle-spec';
import { canConnect } from './socket-probe';
import { fromDate } from './timestamp';
import { removeSandboxDir } from './volumes';
import { HostCgroup } from './host-cgroup';
import { templateStore } from './templates/factory';
import { reapPooledOwnedBy } from './pool/owned';

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
    let vmDir = join(dir, 'vm');
    let record: Partial<SandboxRecord> = {};
    try {
      record = JSON.parse(readFileSync(join(dir, 'sandbox.json'), 'utf8')) as SandboxRecord;
      vmDir = record.vmDir || vmDir;
    } catch {
      /* default location */
    }
    const driver = createDriver(cfg.hypervisor.driver, log);
    await driver.cleanupFromDisk(vmDir);
    // A VM taken from the warm pool lives in the pool's directory, owned by this sandbox.
    await reapPooledOwnedBy(record.poolDir ?? cfg.pool.dir, dir, driver, log);
    // A shim killed while it built a VM template leaves that build behind.
    if (record.templateDir && record.shimPid) await templateStore(record.templateDir, driver, log).reapBuildsOf(record.shimPid);
    const left = await new HostCgroup(basename(dir)).removeWithin(5000);
    if (left.length > 0) log.error({ left }, 'pod host cgroup not removed');
    try {
      await teardownPodNetwork(JSON.parse(readFileSync(join(dir, 'network.json'), 'utf8')) as PodNetwork);
    } catch {
      /* no pod network, or its namespace is gone */
    }
    // Host volumes bound into the shared directory are unmounted first.
    await removeSandboxDir(dir, log).catch((err: Error) => log.error({ err: err.message, dir }, 'removing the sandbox directory failed'));
    log.info({ dir }, 'cleaned up after a dead shim');
  }
  if (group === args.id) {
    const sock = socketPath(args.address, args.namespace, group);
    if (existsSync(sock) && !(await canConnect(sock, 1000))) {
      try {
        unlinkSync(sock);
      } catch {
        /* raced */
      }
    }
  }
  return encode('containerd.task.v2.DeleteResponse', { pid, exit_status: 137, exited_at: fromDate(new Date()) });
}
