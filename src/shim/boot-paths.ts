// The three ways a sandbox's VM comes up, each a function that returns the VM
// with its agent answering or fails having undone what it recorded in the
// ledger: adopting a VM from the warm pool, cloning a template, booting cold.
// launchVm is the one place a VM is started and its agent first reached.
import { join } from 'node:path';
import { TernError, deadlineExceeded, internal, unavailable } from '../common/errors';
import type { Vm, VmExit, VmSpec } from '../hypervisor/hypervisor';
import { AgentClient, freshIdentity } from './agent-client';
import type { BootEnv, BootOptions } from './boot-env';
import { readPodNetwork, wirePodNetwork, type PodNetwork } from './network';
import { pooledPaths, type TakeGranted } from './pool/protocol';
import type { StartPath } from './sandbox-record';
import { templateVmSpec } from './templates/factory';
import type { TemplateShape } from './templates/key';
import type { Template } from './templates/store';
import { consoleTail } from './vm-console';
import { type LedgerStep, undoSteps } from './teardown-ledger';
import { createSharedDir, sharedDirOf } from './volumes';

/** A VM up with its agent answering, and what the boot path set up around it. */
export interface BootedVm {
  vm: Vm;
  agent: AgentClient;
  startPath: StartPath;
  /** The VM's run directory: <dir>/vm, or the pooled VM's. */
  runDir: string;
  sharedDir: string;
  /** The pod network wired for this VM (taps and redirects), if the pod has one. */
  network?: PodNetwork;
  /** A template's clone: the writable slot's filesystem its guest holds premounted (writable-premount.ts). */
  writablePremounted?: boolean;
}

/** The guest's hostname for a sandbox id: its first 12 letters, digits or dashes after "tern-". */
export function guestHostname(id: string): string {
  const clean = id
    .replace(/[^A-Za-z0-9-]/g, '-')
    .slice(0, 12)
    .replace(/-+$/, '');
  return clean ? `tern-${clean}` : 'tern';
}

/** Adopts a VM taken from the pool; undefined (what it did undone, logged, a fallback recorded) if that fails. */
export async function adoptPooled(env: BootEnv, granted: TakeGranted, shape: TemplateShape, opts: BootOptions): Promise<BootedVm | undefined> {
  const p = pooledPaths(granted.dir);
  const mark = env.ledger.mark();
  let started: { vm: Vm; agent: AgentClient } | undefined;
  try {
    env.ledger.record({ kind: 'pooled-vms', poolDir: env.cfg.pool.dir });
    env.cgroup.add(granted.pid);
    started = await launchVm(env, { ...templateVmSpec(shape), id: env.id, runDir: p.vmDir, sharedDir: p.sharedDir }, 'adopt');
    let network: PodNetwork | undefined;
    if (opts.netnsPath) {
      // The pooled QEMU runs outside the pod's network namespace: each tap is opened in there and handed to it.
      network = await setupNetwork(env, opts.netnsPath);
      for (const [i, itf] of network.interfaces.entries()) {
        await started.vm.attachNic({ id: `net${i}`, tap: itf.tap, mac: itf.mac }, network.netnsPath);
      }
    }
    await env.updateRecord({ vmDir: p.vmDir, pooledDir: granted.dir });
    return { ...started, startPath: 'pool', runDir: p.vmDir, sharedDir: p.sharedDir, network };
  } catch (err) {
    env.log.warn({ err: (err as Error).message, pooled: granted.name }, 'VM from the warm pool could not be adopted: starting one');
    env.start.fallback('pool', 'adopt_failed', (err as Error).message);
    started?.agent.close();
    // The VM, its taps and the pooled directory: what this path recorded, undone as destroy would.
    await env.ledger.undoSince(mark, env.undoers(), env.log);
    return undefined;
  }
}

/** Launches this sandbox's own VM: a clone of `template` if there is one (cold boot if that fails), else a cold boot. */
export async function ownVm(env: BootEnv, shape: TemplateShape, opts: BootOptions, template: Template | undefined): Promise<BootedVm> {
  const runDir = join(env.dir, 'vm');
  const sharedStep: LedgerStep = { kind: 'shared-dir', path: sharedDirOf(env.dir) };
  env.ledger.record(sharedStep);
  const sharedDir = await createSharedDir(env.dir);
  await stillWanted(env, sharedStep);
  const network = opts.netnsPath ? await setupNetwork(env, opts.netnsPath) : undefined;
  const wired = network && network.interfaces.length > 0 ? network : undefined;
  const spec: VmSpec = {
    ...templateVmSpec(shape),
    id: env.id,
    runDir,
    netnsPath: wired?.netnsPath,
    nics: network?.interfaces.map((itf, i) => ({ id: `net${i}`, tap: itf.tap, mac: itf.mac })),
    sharedDir,
    onSpawn: (pid) => env.cgroup.add(pid),
  };
  const booted = { runDir, sharedDir, network };
  if (template) {
    const cloned = await cloneVm(env, spec, template);
    if (cloned) return { ...cloned, ...booted, startPath: 'template', writablePremounted: template.record.writable !== undefined };
  }
  return { ...(await launchVm(env, spec)), ...booted, startPath: 'cold' };
}

/** A clone of the template, or undefined (its VM undone, the fallback recorded) when it does not come up. */
async function cloneVm(env: BootEnv, spec: VmSpec, template: Template): Promise<{ vm: Vm; agent: AgentClient } | undefined> {
  try {
    const started = await launchVm(env, { ...spec, template: { role: 'clone', memoryPath: template.memoryPath, statePath: template.statePath } });
    env.sources.cloneSucceeded(template);
    return started;
  } catch (err) {
    const { restoreRefused, templateRemoved } = env.sources.cloneFailed(template, err);
    const fields = { key: template.key, err: (err as Error).message, templateRemoved };
    // A refused restore blames the template; anything else more likely load.
    if (restoreRefused) env.log.warn(fields, 'VM clone failed to restore from its template: booting cold');
    else env.log.warn(fields, 'VM clone from template did not come up: booting cold');
    env.start.fallback('template', restoreRefused ? 'restore_refused' : 'clone_failed', fields.err);
    return undefined;
  }
}

/** The pod's taps and redirects in its network namespace, recorded in the ledger before they are made. */
async function setupNetwork(env: BootEnv, netnsPath: string): Promise<PodNetwork> {
  const network = await readPodNetwork(netnsPath);
  const step: LedgerStep = { kind: 'pod-network', network };
  env.ledger.record(step);
  await wirePodNetwork(network);
  await stillWanted(env, step);
  env.clock.mark('networkReady');
  return network;
}

/**
 * Launches a VM (cold, or restored from a template) or adopts a pooled one,
 * and waits for its agent; a clone then adopts its own identity. On failure
 * the VM is gone.
 */
async function launchVm(env: BootEnv, spec: VmSpec, how: 'launch' | 'adopt' = 'launch'): Promise<{ vm: Vm; agent: AgentClient }> {
  const mark = env.ledger.mark();
  const step: LedgerStep = { kind: 'vm', runDir: spec.runDir };
  env.ledger.record(step);
  let agent: AgentClient | undefined;
  try {
    const vm = how === 'adopt' ? await env.driver.adopt(spec) : await env.driver.start(spec);
    // From here a destroy() meanwhile stops it.
    env.liveVms.set(spec.runDir, vm);
    await stillWanted(env, step);
    env.clock.vmPid = vm.pid;
    env.clock.mark('vmLaunched');
    let exited: VmExit | undefined;
    const exitP = vm.waitExit().then((e) => {
      exited = e;
      return e;
    });
    const { callTimeoutMs, bootTimeoutMs } = env.cfg.agent;
    agent = new AgentClient(await vm.connectAgent(), callTimeoutMs, Math.max(callTimeoutMs, bootTimeoutMs));
    // A pooled VM's agent is up and its identity adopted in the pool: it
    // only takes the pod's hostname, which doubles as the liveness check.
    const timeoutMs = how === 'adopt' ? callTimeoutMs : bootTimeoutMs;
    const first = how === 'adopt' ? agent.setHostname(guestHostname(env.id)) : agent.check(timeoutMs);
    const outcome = await Promise.race([first.then(() => 'ready' as const), exitP.then(() => 'exited' as const)]).catch((err: unknown) => err);
    if (outcome !== 'ready') {
      // A dying QEMU closes the agent socket a moment before its exit is
      // seen: give the exit a short while to show, so the cause is named right.
      if (outcome !== 'exited' && !exited) await Promise.race([exitP, new Promise((r) => setTimeout(r, 1000).unref())]);
      // destroy() stopped it.
      if (env.ledger.closed) throw unavailable(`sandbox ${env.id} was destroyed while it booted`);
      throw bootFailure(outcome, exited, timeoutMs, vm, await consoleTail(spec.runDir));
    }
    env.clock.mark('agentAnswered');
    if (spec.template?.role === 'clone') {
      // A clone adopts its own identity before the VM is handed on. The
      // request carries the host's clock, so it goes out once the agent has
      // answered: queued behind the check, it waited while the clone resumed
      // (~0.1 s under TCG), which the guest cannot see and its clock lagged
      // by. Measured: the start is no slower for it (3 rounds each).
      await agent.adoptIdentity(freshIdentity(guestHostname(env.id)), callTimeoutMs);
      env.clock.mark('identityAdopted');
    }
    return { vm, agent };
  } catch (err) {
    agent?.close();
    await env.ledger.undoSince(mark, env.undoers(), env.log);
    throw err;
  }
}

/**
 * A destroy() that began while `step` was being acquired has undone the
 * ledger already, without it: it is undone here and the boot ends.
 */
async function stillWanted(env: BootEnv, step: LedgerStep): Promise<void> {
  if (!env.ledger.closed) return;
  await undoSteps([step], env.undoers(), env.log);
  throw unavailable(`sandbox ${env.id} was destroyed while it booted`);
}

/** Why a VM's agent did not answer, with the guest console's last lines. */
function bootFailure(outcome: unknown, exited: VmExit | undefined, timeoutMs: number, vm: Vm, guestConsole: string): TernError {
  if (outcome === 'exited' || exited) {
    return internal(
      `VM exited during boot (qemu ${exited?.signal ?? `exit ${exited?.code}`}): ${exited?.stderrTail.trim() || 'no stderr'}; guest console: ${guestConsole}`,
    );
  }
  if (outcome instanceof TernError && outcome.code === 'DeadlineExceeded') {
    return deadlineExceeded(`guest agent did not answer within ${timeoutMs} ms (accel ${vm.accel}); guest console: ${guestConsole}`);
  }
  return internal(`guest agent check failed: ${(outcome as Error).message}; guest console: ${guestConsole}`);
}
