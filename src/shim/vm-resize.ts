// Growing a running pod VM for its containers' larger limits (Task Update):
// memory hot-plug (vm-memory.ts says how much) and CPU hot-plug (vm-cpus.ts
// says how many), within the template shape's maxima. One growth at a time.
import { failedPrecondition } from '../common/errors';
import type { Logger } from '../common/logging';
import type { Vm } from '../hypervisor/hypervisor';
import type { AgentClient } from './agent-client';
import type { TemplateShape } from './templates/key';
import { memoryToAdd } from './vm-memory';

/** How long a grown VM may take to bring its new vCPUs online. */
const CPU_ONLINE_TIMEOUT_MS = 10_000;

export class VmResizer {
  /** The VM's memory and vCPUs now: its boot shape plus what was hot-plugged. */
  private memoryMiB: number;
  private vcpus: number;
  private readonly maxMemoryMiB: number;
  private readonly maxVcpus: number;
  private growing: Promise<unknown> = Promise.resolve();

  constructor(
    shape: Pick<TemplateShape, 'memoryMiB' | 'maxMemoryMiB' | 'vcpus' | 'maxVcpus'>,
    /** The VM and its agent while it runs. */
    private readonly running: () => { vm: Vm; agent: AgentClient } | undefined,
    private readonly log: Logger,
    /** Called once hot-plugged vCPUs are online (their threads get the pod's pinning, vcpu-pinning.ts). */
    private readonly vcpusAdded: () => Promise<void> = async () => {},
  ) {
    this.memoryMiB = shape.memoryMiB;
    this.maxMemoryMiB = shape.maxMemoryMiB;
    this.vcpus = shape.vcpus;
    this.maxVcpus = shape.maxVcpus;
  }

  /** The VM's vCPUs now (boot shape plus hot-plugged ones). */
  get vcpuCount(): number {
    return this.vcpus;
  }

  /**
   * Grows the VM so that a container may have limitBytes of memory; nothing
   * when it is big enough. Throws FailedPrecondition naming the sizes when it
   * cannot grow that far.
   */
  growMemoryFor(limitBytes: number): Promise<void> {
    return this.serialize(async () => {
      const { vm } = this.vmRunning();
      const add = memoryToAdd(limitBytes, this.memoryMiB, this.maxMemoryMiB);
      if (add === 0) return;
      await vm.addMemory(add);
      this.memoryMiB += add;
      this.log.info({ addedMiB: add, memoryMiB: this.memoryMiB }, 'VM memory grown');
    });
  }

  /**
   * Grows the VM to `wanted` vCPUs (at most the maximum) and waits until the
   * guest has them online; nothing when it has enough.
   */
  growCpusTo(wanted: number): Promise<void> {
    return this.serialize(async () => {
      const { vm, agent } = this.vmRunning();
      const target = Math.min(wanted, this.maxVcpus);
      if (wanted > this.maxVcpus) this.log.warn({ wanted, max: this.maxVcpus }, 'CPU quota asks for more vCPUs than the VM may have (hypervisor.max_vcpus)');
      if (target <= this.vcpus) return;
      await vm.addVcpus(target - this.vcpus);
      this.vcpus = target;
      const deadline = Date.now() + CPU_ONLINE_TIMEOUT_MS;
      let online = await agent.onlineCpus();
      while (online < target) {
        if (Date.now() > deadline) throw failedPrecondition(`the guest has ${online} of ${target} vCPUs online ${CPU_ONLINE_TIMEOUT_MS} ms after hot-plugging`);
        await new Promise((r) => setTimeout(r, 100));
        online = await agent.onlineCpus();
      }
      this.log.info({ vcpus: target, online }, 'VM vCPUs grown');
      await this.vcpusAdded();
    });
  }

  private vmRunning(): { vm: Vm; agent: AgentClient } {
    const r = this.running();
    if (!r) throw failedPrecondition('the VM is not running');
    return r;
  }

  private serialize(op: () => Promise<void>): Promise<void> {
    const run = this.growing.then(op, op);
    this.growing = run.catch(() => undefined);
    return run;
  }
}
