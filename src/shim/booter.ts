// A sandbox's boot, phase by phase: the warm pool, else a template clone,
// else a cold boot (boot-paths.ts), then the pod's network inside the guest,
// then the health check. Every host resource is recorded in the ledger before
// it is acquired; what this returns is a RunningSandbox with nothing missing.
import { selfStartTime } from '../common/proc';
import { guestInterfaces } from './network';
import { adoptPooled, ownVm, type BootedVm } from './boot-paths';
import type { BootEnv, BootOptions } from './boot-env';
import { HealthCheck } from './health-check';
import { setupHostNetwork, type HostPortForwarder } from './host-network';
import { RunningSandbox } from './running-sandbox';
import { templateShape } from './templates/factory';
import type { VmExit } from '../hypervisor/hypervisor';

export interface BootHooks {
  /** The hypervisor process exited (at any time after launch). */
  vmExited(exit: VmExit): void;
  /** The health check gave up on the guest. */
  guestLost(reason: string): void;
}

/** Boots the sandbox's VM; on failure the caller undoes the ledger (destroy). */
export async function bootSandbox(env: BootEnv, opts: BootOptions, hooks: BootHooks): Promise<RunningSandbox> {
  const { cfg, ledger, clock } = env;
  if (cfg.factory.template) {
    // With its start time: the shim process serves other pods too, and `delete` leaves a live one's builds alone.
    ledger.record({ kind: 'template-builds', templateDir: cfg.factory.templateDir, shimPid: process.pid, shimStartTime: selfStartTime() });
  }
  // Before the take: one that times out here may still complete in the pool, owned by this sandbox.
  if (cfg.pool.size > 0) ledger.record({ kind: 'pooled-vms', poolDir: cfg.pool.dir });
  const shape = templateShape(cfg, opts.vcpus ?? cfg.hypervisor.vcpus, opts.memoryMiB ?? cfg.hypervisor.memoryMiB);
  // Both before the pod's cgroup is entered: the pool and a template outlive this pod.
  const pooled = await env.sources.takeFromPool(shape, clock);
  let template = pooled ? undefined : await env.sources.template(shape, clock);
  // Containers' writable layers may be copies of its disk from now on (made while the VM comes up).
  env.templateChosen?.(template);
  // The pod's host cgroup, made before anything is launched: QEMU is moved in
  // the moment it is spawned (VmSpec.onSpawn), a pooled one when it is adopted.
  // The shim process serves many pods, so it stays where containerd put it.
  ledger.record({ kind: 'host-cgroup', name: env.cgroup.name });
  env.cgroup.create();
  let booted: BootedVm | undefined;
  if (pooled) {
    booted = await adoptPooled(env, pooled, shape, opts);
    // Rare: the pool's template is there, so this finds it rather than builds it.
    if (!booted) template = await env.sources.template(shape, clock);
  }
  booted ??= await ownVm(env, shape, opts, template);
  const { vm, agent, network } = booted;
  clock.mark('agentReady');
  void vm.waitExit().then((e) => hooks.vmExited(e));
  let hostPorts: HostPortForwarder | undefined;
  try {
    if (network && network.interfaces.length > 0) {
      await agent.configureNetwork(guestInterfaces(network), network.routes);
      clock.mark('networkConfigured');
    } else if (opts.hostNetwork) {
      hostPorts = await setupHostNetwork(vm, agent, env.log);
      clock.mark('networkConfigured');
    }
    ledger.checkpoint();
    const { healthIntervalMs: intervalMs, healthTimeoutMs: timeoutMs, healthFailures: failures } = cfg.agent;
    const health = new HealthCheck(agent, { intervalMs, timeoutMs, failures }, env.log, (reason) => hooks.guestLost(reason));
    const { sharedDir, startPath, writablePremounted } = booted;
    const running = new RunningSandbox({ vm, agent, sharedDir, startPath, shape, clock, health, hostPorts, writablePremounted }, env.log);
    env.start.phase('vm_ready', clock.mark('vmReady'));
    await env.updateRecord({ startPath: booted.startPath });
    env.log.info({ accel: vm.accel, qemuPid: vm.pid, startPath: booted.startPath, ...clock.timings }, 'sandbox VM ready');
    return running;
  } catch (err) {
    // The VM itself is the ledger's: the caller's destroy() stops it.
    hostPorts?.stop();
    agent.close();
    throw err;
  }
}
