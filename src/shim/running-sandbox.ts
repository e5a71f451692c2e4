// A sandbox whose VM runs and whose agent answers: what the booter returns
// (booter.ts) and the only thing the Task service works on. Nothing in it is
// optional; once the sandbox stops, `active` is false and the layer disks and
// the resizer refuse to touch the VM.
import { procCpuMs } from '../common/proc';
import type { Vm } from '../hypervisor/hypervisor';
import type { Logger } from '../common/logging';
import type { AgentClient } from './agent-client';
import type { HealthCheck } from './health-check';
import type { HostPortForwarder } from './host-network';
import { LayerDisks } from './layer-disks';
import type { StartPath } from './sandbox-record';
import type { TemplateShape } from './templates/key';
import { threadAffinity, setThreadAffinity } from './thread-affinity';
import { VcpuPinning } from './vcpu-pinning';
import { VmResizer } from './vm-resize';

/** CPU used so far, in ms: this shim process's, and its VM's hypervisor process's once there is one. */
export interface CpuSoFar {
  shimMs: number;
  vmMs: number | null;
}

/**
 * The phases of a start, each noted once: ms since the boot began (the
 * start-path log and benchmarks read them) and the CPU the shim and the VM
 * had used by then (make bench's phase table).
 */
export class BootClock {
  readonly startedAt = performance.now();
  readonly timings: Record<string, number> = {};
  readonly cpu: Record<string, CpuSoFar> = {};
  /** The hypervisor process, once launched or adopted. */
  vmPid?: number;

  /** Notes that `phase` is done now; returns its ms since the boot began. */
  mark(phase: string): number {
    const ms = this.since();
    this.timings[phase] = ms;
    this.cpu[phase] = this.cpuSoFar();
    return ms;
  }

  since(): number {
    return performance.now() - this.startedAt;
  }

  cpuSoFar(): CpuSoFar {
    const u = process.cpuUsage();
    return { shimMs: Math.round((u.user + u.system) / 1000), vmMs: this.vmPid === undefined ? null : procCpuMs(this.vmPid) };
  }
}

export interface RunningParts {
  vm: Vm;
  agent: AgentClient;
  /** Exported to the guest over virtio-9p; host volumes are bound into it (volumes.ts). */
  sharedDir: string;
  startPath: StartPath;
  shape: TemplateShape;
  clock: BootClock;
  health: HealthCheck;
  /** A host-network pod's forwarded ports (they end with the VM). */
  hostPorts?: HostPortForwarder;
  /** The guest holds its template's writable filesystem premounted in its writable slot (writable-premount.ts). */
  writablePremounted?: boolean;
}

export class RunningSandbox {
  readonly vm: Vm;
  readonly agent: AgentClient;
  readonly sharedDir: string;
  readonly startPath: StartPath;
  readonly clock: BootClock;
  /** The image layers' disks, shared by the containers (layer-disks.ts). */
  readonly layerDisks: LayerDisks;
  /** Grows the VM for containers' larger limits (memory and CPU hot-plug). */
  readonly resizer: VmResizer;
  /** The vCPU threads' host CPUs for the pod's pinned containers (cpuset.ts, vcpu-pinning.ts). */
  readonly pinning: VcpuPinning;
  private readonly health: HealthCheck;
  private readonly hostPorts?: HostPortForwarder;
  private stopped = false;
  private oomRelayed = false;
  /** The guest's premounted writable filesystem, until the first file goes in the writable slot. */
  private writablePremounted: boolean;

  /**
   * The first file put in the writable slot calls this: true when the guest
   * holds a premounted filesystem, which that file may take over if it is a
   * copy of the template's disk; after it, never (any other file in the slot
   * makes the guest drop the premount).
   */
  takeWritablePremount(): boolean {
    const held = this.writablePremounted;
    this.writablePremounted = false;
    return held;
  }

  constructor(parts: RunningParts, log: Logger) {
    this.vm = parts.vm;
    this.agent = parts.agent;
    this.sharedDir = parts.sharedDir;
    this.startPath = parts.startPath;
    this.clock = parts.clock;
    this.health = parts.health;
    this.hostPorts = parts.hostPorts;
    this.writablePremounted = parts.writablePremounted === true;
    const vm = () => (this.stopped ? undefined : this.vm);
    this.layerDisks = new LayerDisks(vm, log, parts.shape.layerSlots.count > 0 ? parts.shape.layerSlots.sizeMiB : 0);
    this.pinning = new VcpuPinning(
      {
        vcpuThreads: () => this.vm.vcpuThreadIds(),
        // The hypervisor's main thread keeps the affinity it was started with.
        floating: () => threadAffinity(this.vm.pid),
        setAffinity: setThreadAffinity,
      },
      log,
    );
    this.resizer = new VmResizer(
      parts.shape,
      () => (this.stopped ? undefined : { vm: this.vm, agent: this.agent }),
      log,
      () => this.pinning.refresh(),
    );
  }

  /** Whether the VM still runs as this sandbox's (false once it is being torn down). */
  get active(): boolean {
    return !this.stopped;
  }

  /** ms since the boot began. */
  sinceBoot(): number {
    return Math.round(this.clock.since());
  }

  /** Calls `fn` with each container the guest's OOM killer hits, until the VM goes away (the first caller's `fn` only). */
  relayOom(fn: (containerId: string) => void): void {
    if (this.oomRelayed) return;
    this.oomRelayed = true;
    void (async () => {
      while (!this.stopped) {
        try {
          fn((await this.agent.getOomEvent()).container_id);
        } catch {
          return; // the channel closed: the VM is going away
        }
      }
    })();
  }

  /** Starts watching the guest's health (once the sandbox is ready). */
  watchHealth(): void {
    this.health.start();
  }

  /** Ends the sandbox's use of the VM: the health check and port forwards stop, the agent is told to power off, then closed. */
  async shutDown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.health.stop();
    this.hostPorts?.stop();
    await this.agent.destroySandbox(2000).catch(() => undefined);
    this.agent.close();
  }
}
