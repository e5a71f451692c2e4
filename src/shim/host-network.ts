// Host networking, for a pod with no network namespace of its own (CRI
// hostNetwork: true, `ctr run --net-host`). A VM cannot share the node's
// network stack, so it gets the closest thing: a NIC on the hypervisor's
// user-mode network, whose traffic leaves from the node's own addresses, and
// every TCP port a guest process listens on (other than on loopback) is
// forwarded from the same port on every node address for as long as it
// listens. A host-network pod's ports are thus the node's ports, and
// containerd's port-forward (a dial of localhost:<port> on the node) reaches
// them. The forwards are QEMU's sockets: they end with the VM. The other way,
// the node's listening ports (read from QEMU's network namespace once a
// second) are mirrored on the guest's loopback by the agent, relayed to the
// node: the pod reaches node services at localhost and sees their ports taken.
import { randomBytes } from 'node:crypto';
import { tcpListeners } from '../common/listeners';
import type { Logger } from '../common/logging';
import { HOST_NIC_NETWORK, type Vm } from '../hypervisor/index';
import type { AgentClient } from './agent-client';
import type { PodInterface, PodRoute } from './network';

export const HOST_NIC_ID = 'hostnet0';

/** A locally administered unicast MAC. */
export function hostNicMac(bytes: Buffer = randomBytes(5)): string {
  return ['02', ...[...bytes.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/** Pure: what the agent configures for the host NIC. */
export function hostNicGuestConfig(mac: string): { interfaces: PodInterface[]; routes: PodRoute[] } {
  return {
    interfaces: [{ name: 'eth0', mac, mtu: HOST_NIC_NETWORK.mtu, addresses: [HOST_NIC_NETWORK.guestAddress] }],
    routes: [{ dest: 'default', gateway: HOST_NIC_NETWORK.gateway, device: 'eth0', scope: '' }],
  };
}

/** Pure: which forwards to end and which to make to go from `forwarded` to `listening`. */
export function forwardChanges(forwarded: ReadonlySet<number>, listening: readonly number[]): { add: number[]; remove: number[] } {
  const want = new Set(listening);
  return { add: [...want].filter((p) => !forwarded.has(p)), remove: [...forwarded].filter((p) => !want.has(p)) };
}

/** How often the node's listening ports are read (only for host-network pods). */
const NODE_SCAN_INTERVAL_MS = 1000;

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Attaches the host NIC, configures it in the guest and mirrors the node's
 * ports before any container starts; the returned forwarder keeps both
 * directions in step until stop() or the agent channel closes.
 */
export async function setupHostNetwork(vm: Vm, agent: AgentClient, log: Logger): Promise<HostPortForwarder> {
  const mac = hostNicMac();
  await vm.attachHostNic({ id: HOST_NIC_ID, mac });
  const { interfaces, routes } = hostNicGuestConfig(mac);
  await agent.configureNetwork(interfaces, routes);
  const forwarder = new HostPortForwarder(vm, agent, log);
  await forwarder.syncNodePorts();
  forwarder.start();
  return forwarder;
}

/**
 * Follows the guest's listening ports (a long poll on the agent) and forwards
 * each from the node, until stop() or the agent channel closes. A port the
 * node cannot give (in use, or below 1024 for an unprivileged QEMU) is logged
 * and tried again at the next change.
 */
export class HostPortForwarder {
  private stopped = false;
  private readonly forwarded = new Set<number>();
  private nodePorts: number[] = [];
  private syncing = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly vm: Vm,
    private readonly agent: AgentClient,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.run();
    this.timer = setInterval(() => void this.syncNodePorts(), NODE_SCAN_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Mirrors the node's listening ports (but those this VM forwards itself) into the guest, when they changed. */
  async syncNodePorts(): Promise<void> {
    if (this.syncing || this.stopped) return;
    this.syncing = true;
    try {
      const ports = (await tcpListeners(`/proc/${this.vm.pid}/net`, true)).filter((p) => !this.forwarded.has(p));
      if (same(ports, this.nodePorts)) return;
      const mirrored = await this.agent.mirrorHostPorts(ports, HOST_NIC_NETWORK.gateway);
      this.nodePorts = ports;
      this.log.debug({ ports, mirrored }, 'node ports mirrored into the guest');
    } catch (err) {
      if (!this.stopped) this.log.warn({ err: (err as Error).message }, 'cannot mirror the node ports into the guest');
    } finally {
      this.syncing = false;
    }
  }

  ports(): number[] {
    return [...this.forwarded].sort((a, b) => a - b);
  }

  private async run(): Promise<void> {
    let known: number[] = [];
    while (!this.stopped) {
      let listening: number[];
      try {
        listening = await this.agent.watchListeners(known);
      } catch (err) {
        if (!this.stopped) this.log.debug({ err: (err as Error).message }, 'host port watch ended');
        return;
      }
      if (this.stopped) return;
      const { add, remove } = forwardChanges(this.forwarded, listening);
      for (const port of remove) {
        this.forwarded.delete(port);
        await this.vm.unforwardHostPort(HOST_NIC_ID, port).catch((err: Error) => this.log.warn({ port, err: err.message }, 'cannot end a host port forward'));
      }
      for (const port of add) {
        try {
          await this.vm.forwardHostPort(HOST_NIC_ID, port);
          this.forwarded.add(port);
          this.log.info({ port }, 'host port forwarded to the guest');
        } catch (err) {
          this.log.warn({ port, err: (err as Error).message }, 'cannot forward a host port to the guest');
        }
      }
      known = listening;
    }
  }
}
