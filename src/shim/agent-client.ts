// Typed client of the guest agent (tern.agent.v1.Agent) over ttrpc on the
// agent channel. Every call has a deadline (a positive one: a client without
// is refused) except the long polls (WaitProcess, ReadStdout/ReadStderr,
// GetOOMEvent), which end when the process ends or the channel closes. Replies from the guest are untrusted: sizes are bounded by ttrpc's
// 4 MiB frame limit and decoded strictly by protobuf.
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { type Input, type MethodName, type Request, type Response, ServiceClient } from '../common/proto-service';
import { fromStatus, invalidArgument } from '../common/errors';
import { TtrpcClient } from '../ttrpc/client';
import { TtrpcError } from '../ttrpc/status';
import type { CgroupV2Metrics } from '../common/cgroup-metrics';
import type { GuestFile } from './guest-spec';
import type { PodInterface, PodRoute } from './network';

const SERVICE = 'tern.agent.v1.Agent';
type AgentMethod = MethodName<typeof SERVICE>;

export interface AgentLayer {
  serial: string;
  fs_type: string;
  /** A writable layer the guest takes over from its premounted filesystem (Layer.premounted). */
  premounted?: boolean;
}

export interface StdioWanted {
  terminal: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface Identity {
  entropy: Buffer;
  realtimeNs: bigint;
  hostname: string;
  machineId: string;
  /** Mount the shared directory now. The agent otherwise mounts it for the first container with a host volume. */
  mountShared: boolean;
}

/**
 * A new identity for a VM restored from a template: host entropy, the host's
 * clock now, a machine id. Its shared directory is left for the agent to
 * mount when a container first needs it (most need none).
 */
export function freshIdentity(hostname: string): Identity {
  return {
    entropy: randomBytes(64),
    // The wall clock of now, read now: performance.timeOrigin + now() is the
    // process's start time plus a monotonic delta, and drifts from the wall
    // clock whenever the host's clock is stepped or slewed.
    realtimeNs: BigInt(Date.now()) * 1_000_000n,
    hostname,
    machineId: randomBytes(16).toString('hex'),
    mountShared: false,
  };
}

export class AgentClient {
  private readonly client: TtrpcClient;
  /** The Agent service, typed from its proto. */
  private readonly rpc: ServiceClient<typeof SERVICE>;
  /** performance.now() of the agent's last answer to any call (0 before the first). */
  lastAnswerAt = 0;

  /**
   * callTimeoutMs bounds ordinary calls; setupTimeoutMs the container's
   * creation (mounts, cgroup, launcher: heavy guest work that many VMs
   * starting at once on a loaded host stretch, like a boot).
   */
  constructor(
    stream: Duplex,
    private readonly callTimeoutMs: number,
    private readonly setupTimeoutMs = callTimeoutMs,
  ) {
    for (const [name, ms] of [
      ['call', callTimeoutMs],
      ['setup', setupTimeoutMs],
    ] as const) {
      if (!(ms > 0)) {
        stream.destroy();
        throw invalidArgument(`agent client: the ${name} deadline must be more than 0 ms (got ${ms})`);
      }
    }
    this.client = new TtrpcClient(stream);
    this.rpc = new ServiceClient(SERVICE, (method, payload, timeoutMs) => this.send(method, payload, timeoutMs));
  }

  close(): void {
    this.client.close();
  }

  /** An ordinary call: DeadlineExceeded if the agent has not answered within timeoutMs (which must be > 0). */
  private call<M extends AgentMethod>(method: M, req: Input<Request<typeof SERVICE, M>>, timeoutMs: number): Promise<Response<typeof SERVICE, M>> {
    if (!(timeoutMs > 0)) return Promise.reject(invalidArgument(`agent ${method}: the deadline must be more than 0 ms (got ${timeoutMs})`));
    return this.rpc.call(method, req, timeoutMs);
  }

  /** A long poll: no deadline; it ends when the guest answers or the channel closes (Unavailable). */
  private longPoll<M extends AgentMethod>(method: M, req: Input<Request<typeof SERVICE, M>>): Promise<Response<typeof SERVICE, M>> {
    return this.rpc.call(method, req, undefined);
  }

  /** One call on the channel; the agent's error keeps its code. */
  private async send(method: string, payload: Uint8Array, timeoutMs: number | undefined): Promise<Uint8Array> {
    try {
      const reply = await this.client.call(SERVICE, method, payload, timeoutMs ? { timeoutMs } : {});
      this.lastAnswerAt = performance.now();
      return reply;
    } catch (err) {
      // A deadline passed here reads "agent M: ttrpc: S/M: deadline exceeded after N ms" (code DeadlineExceeded).
      if (err instanceof TtrpcError) throw fromStatus(err.code, `agent ${method}: ${err.message}`);
      throw err;
    }
  }

  check(timeoutMs: number): Promise<{ agent_version: string; uptime_ms: number; writable_premounted?: boolean }> {
    return this.call('Check', {}, timeoutMs);
  }

  guestDetails(): Promise<{ kernel_release: string; agent_version: string; cpus: number; memory_bytes: number }> {
    return this.call('GetGuestDetails', {}, this.callTimeoutMs);
  }

  createContainer(
    id: string,
    specJson: string,
    layers: AgentLayer[],
    io: StdioWanted,
    files: GuestFile[] = [],
    /** The container's writable-layer disk; without it the guest keeps the upper layer in RAM. */
    rootfs?: AgentLayer,
  ): Promise<{ pid: number; step_ms: Record<string, number> }> {
    return this.call('CreateContainer', { container_id: id, spec_json: specJson, layers, ...io, files, ...(rootfs ? { rootfs } : {}) }, this.setupTimeoutMs);
  }

  startContainer(id: string): Promise<{ pid: number }> {
    return this.call('StartContainer', { container_id: id }, this.callTimeoutMs);
  }

  async removeContainer(id: string): Promise<void> {
    await this.call('RemoveContainer', { container_id: id }, this.callTimeoutMs);
  }

  execProcess(id: string, execId: string, processJson: string, io: StdioWanted): Promise<{ pid: number }> {
    return this.call('ExecProcess', { container_id: id, exec_id: execId, process_json: processJson, ...io }, this.callTimeoutMs);
  }

  async signalProcess(id: string, execId: string, signal: number, all: boolean): Promise<void> {
    await this.call('SignalProcess', { container_id: id, exec_id: execId, signal, all }, this.callTimeoutMs);
  }

  waitProcess(id: string, execId: string): Promise<{ exit_status: number; exited_at_unix_nano: number }> {
    return this.longPoll('WaitProcess', { container_id: id, exec_id: execId });
  }

  listProcesses(id: string): Promise<{ pids: number[] }> {
    return this.call('ListProcesses', { container_id: id }, this.callTimeoutMs);
  }

  readStream(which: 'stdout' | 'stderr', id: string, execId: string, maxBytes: number): Promise<{ data: Buffer; eof: boolean }> {
    const method = which === 'stdout' ? 'ReadStdout' : 'ReadStderr';
    return this.longPoll(method, { container_id: id, exec_id: execId, max_bytes: maxBytes });
  }

  writeStdin(id: string, execId: string, data: Buffer): Promise<{ len: number }> {
    return this.call('WriteStdin', { container_id: id, exec_id: execId, data }, this.callTimeoutMs);
  }

  async closeStdin(id: string, execId: string): Promise<void> {
    await this.call('CloseStdin', { container_id: id, exec_id: execId }, this.callTimeoutMs);
  }

  async resizeTty(id: string, execId: string, rows: number, cols: number): Promise<void> {
    await this.call('TtyWinResize', { container_id: id, exec_id: execId, rows, cols }, this.callTimeoutMs);
  }

  async pauseContainer(id: string): Promise<void> {
    await this.call('PauseContainer', { container_id: id }, this.callTimeoutMs);
  }

  async resumeContainer(id: string): Promise<void> {
    await this.call('ResumeContainer', { container_id: id }, this.callTimeoutMs);
  }

  async updateContainer(id: string, resourcesJson: string): Promise<void> {
    await this.call('UpdateContainer', { container_id: id, resources_json: resourcesJson }, this.callTimeoutMs);
  }

  async statsContainer(id: string): Promise<{ metrics_v2: CgroupV2Metrics }> {
    const r = await this.call('StatsContainer', { container_id: id }, this.callTimeoutMs);
    return { metrics_v2: r.metrics_v2 ?? {} };
  }

  /** PSI of the guest and of those of `ids` the guest has (for `tern metrics`, never on a start). */
  async statsPressure(ids: string[]): Promise<Response<typeof SERVICE, 'StatsPressure'>> {
    return this.call('StatsPressure', { container_ids: ids }, this.callTimeoutMs);
  }

  /** Long poll: the next container whose process the guest's OOM killer killed. */
  getOomEvent(): Promise<{ container_id: string }> {
    return this.longPoll('GetOOMEvent', {});
  }

  /** Host networking: the guest's non-loopback TCP listening ports, once they differ from `known`. */
  async watchListeners(known: number[]): Promise<number[]> {
    const r = await this.longPoll('WatchListeners', { known });
    return (r.tcp ?? []).filter((p) => Number.isInteger(p) && p > 0 && p < 65536);
  }

  /** Host networking: mirrors these node ports on the guest's loopback, relayed to `via`; answers those mirrored. */
  async mirrorHostPorts(ports: number[], via: string): Promise<number[]> {
    const r = await this.call('MirrorHostPorts', { ports, via }, this.callTimeoutMs);
    return r.mirrored ?? [];
  }

  async configureNetwork(interfaces: PodInterface[], routes: PodRoute[]): Promise<void> {
    await this.call(
      'ConfigureNetwork',
      { interfaces: interfaces.map((i) => ({ name: i.name, mac: i.mac, mtu: i.mtu, addresses: i.addresses })), routes },
      this.callTimeoutMs,
    );
  }

  /** Onlines hot-plugged vCPUs; the number online afterwards. */
  async onlineCpus(): Promise<number> {
    return (await this.call('OnlineCpus', {}, this.callTimeoutMs)).online;
  }

  async setHostname(hostname: string): Promise<void> {
    await this.call('SetHostname', { hostname }, this.callTimeoutMs);
  }

  /** Warm pool: while held, the end of this connection powers the VM off. */
  async holdForPool(hold: boolean): Promise<void> {
    await this.call('HoldForPool', { hold }, this.callTimeoutMs);
  }

  /** The request carries the host's clock (taken now): send it when the agent is up to take it at once. */
  async adoptIdentity(req: Identity, timeoutMs = this.callTimeoutMs): Promise<void> {
    await this.call(
      'AdoptIdentity',
      {
        entropy: req.entropy,
        // int64 travels as a number: ~256 ns of precision at today's epoch, ample for a clock.
        realtime_ns: Number(req.realtimeNs),
        hostname: req.hostname,
        machine_id: req.machineId,
        mount_shared: req.mountShared,
      },
      timeoutMs,
    );
  }

  async destroySandbox(timeoutMs: number): Promise<void> {
    await this.call('DestroySandbox', {}, timeoutMs);
  }
}
