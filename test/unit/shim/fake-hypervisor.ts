// Test support: a HypervisorDriver whose VMs are objects, each with a real
// ttrpc agent endpoint (agent-endpoint.ts) answering with the handlers a test
// gives it. Every VM it makes and every disk cleanup it is asked for is
// recorded, so a test can check that each one ended.
import type { Duplex } from 'node:stream';
import type { HypervisorDriver, Vm, VmExit, VmSpec } from '../../../src/hypervisor/hypervisor';
import type { Handler } from '../../../src/ttrpc/server';
import { agentEndpoint, type AgentEndpoint } from './agent-endpoint';

export type LaunchHow = 'start' | 'adopt';

export class FakeVm implements Vm {
  readonly accel = 'tcg' as const;
  readonly pid = 40_000 + Math.floor(Math.random() * 10_000);
  stopped = false;
  cleaned = false;
  endpoint?: AgentEndpoint;
  private exitNow!: (e: VmExit) => void;
  private readonly exit = new Promise<VmExit>((r) => {
    this.exitNow = r;
  });

  constructor(
    readonly spec: VmSpec,
    readonly how: LaunchHow,
    private readonly handlers: Record<string, Handler>,
  ) {}

  get id(): string {
    return this.spec.id;
  }

  async connectAgent(): Promise<Duplex> {
    this.endpoint = await agentEndpoint(this.handlers);
    return this.endpoint.socket;
  }

  async attachBlock(): Promise<void> {}
  async attachNic(): Promise<void> {}
  async attachHostNic(): Promise<void> {}
  async forwardHostPort(): Promise<void> {}
  async unforwardHostPort(): Promise<void> {}
  async detachBlock(): Promise<void> {}
  /** The files in its disk slots, by slot serial. */
  readonly slotFiles = new Map<string, string>();
  async insertDisk(path: string, readOnly: boolean): Promise<string | undefined> {
    const serials = readOnly
      ? Array.from({ length: this.spec.layerSlots?.count ?? 0 }, (_, i) => `tern-ro-slot${i}`)
      : this.spec.writableSlotMiB
        ? ['tern-rw-slot']
        : [];
    const free = serials.find((s) => !this.slotFiles.has(s));
    if (free !== undefined) this.slotFiles.set(free, path);
    return free;
  }
  async ejectDisk(serial: string): Promise<void> {
    this.slotFiles.delete(serial);
  }
  async addMemory(): Promise<void> {}
  async addVcpus(): Promise<void> {}
  async vcpuThreadIds(): Promise<number[]> {
    return [this.pid];
  }
  async pause(): Promise<void> {}
  async saveTemplate(): Promise<void> {}
  async resume(): Promise<void> {}
  release(): void {}

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.endpoint?.close();
    this.exitNow({ code: 0, signal: null, stderrTail: '' });
  }

  /** The hypervisor dies on its own. */
  async crash(): Promise<void> {
    this.stopped = true;
    await this.endpoint?.close();
    this.exitNow({ code: null, signal: 'SIGKILL', stderrTail: 'killed' });
  }

  waitExit(): Promise<VmExit> {
    return this.exit;
  }

  async cleanup(): Promise<void> {
    this.cleaned = true;
  }
}

export class FakeDriver implements HypervisorDriver {
  readonly name = 'fake';
  readonly vms: FakeVm[] = [];
  readonly cleanedFromDisk: string[] = [];
  /** Makes a launch fail (or wait) before the VM exists. */
  beforeLaunch: (spec: VmSpec, how: LaunchHow) => Promise<void> = async () => {};

  constructor(public handlers: Record<string, Handler>) {}

  start(spec: VmSpec): Promise<Vm> {
    return this.launch(spec, 'start');
  }

  adopt(spec: VmSpec): Promise<Vm> {
    return this.launch(spec, 'adopt');
  }

  private async launch(spec: VmSpec, how: LaunchHow): Promise<Vm> {
    await this.beforeLaunch(spec, how);
    const vm = new FakeVm(spec, how, this.handlers);
    // As QEMU's launch does: the hook runs with the new process's pid.
    if (how === 'start') spec.onSpawn?.(vm.pid);
    this.vms.push(vm);
    return vm;
  }

  async cleanupFromDisk(runDir: string): Promise<void> {
    this.cleanedFromDisk.push(runDir);
  }

  processOnDisk(): { pid: number | null; running: boolean } {
    return { pid: null, running: false };
  }
}
