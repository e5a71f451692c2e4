// A typed client of the Kubernetes CRI v1 API (RuntimeService and ImageService)
// over a container runtime's gRPC unix socket, e.g. containerd's. The API is
// loaded from proto/cri/api.proto at run time; every call carries a deadline.
import { Client, Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { loadSync, type MethodDefinition, type PackageDefinition } from '@grpc/proto-loader';
import { CriError } from './errors';
import { criProtoPath } from './proto-path';
import type {
  Container,
  ContainerConfig,
  ContainerFilter,
  ContainerStats,
  ContainerStatsFilter,
  ContainerStatusResponse,
  ExecRequest,
  ExecSyncResult,
  Image,
  LinuxContainerResources,
  PodSandbox,
  PodSandboxConfig,
  PodSandboxFilter,
  PodSandboxStatusResponse,
  StatusResponse,
  VersionResponse,
} from './types';

export interface CriClientOptions {
  /** Default deadline of a call; 30 s unless given. */
  timeoutMs?: number;
  /** The .proto file; found with criProtoPath() unless given. */
  protoPath?: string;
}

export interface CallOptions {
  /** Deadline of this call in ms, instead of the client's default. */
  timeoutMs?: number;
}

/** Extra time given to calls that carry their own timeout (ExecSync, StopContainer). */
const CALL_MARGIN_MS = 10_000;
/** Largest answer accepted, as kubelet does (16 MiB). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const definitions = new Map<string, PackageDefinition>();

function loadDefinition(path: string): PackageDefinition {
  let def = definitions.get(path);
  if (def === undefined) {
    def = loadSync(path, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    definitions.set(path, def);
  }
  return def;
}

type Service = 'RuntimeService' | 'ImageService';

export class CriClient {
  readonly socketPath: string;
  private readonly client: Client;
  private readonly definition: PackageDefinition;
  private readonly timeoutMs: number;

  /** `socketPath` is the runtime's gRPC unix socket (containerd's `grpc.address`). */
  constructor(socketPath: string, opts: CriClientOptions = {}) {
    this.socketPath = socketPath;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.definition = loadDefinition(opts.protoPath ?? criProtoPath());
    this.client = new Client(`unix:${socketPath}`, credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    });
  }

  /** Closes the connection; calls in flight fail with CANCELLED. */
  close(): void {
    this.client.close();
  }

  private method(service: Service, name: string): MethodDefinition<object, unknown> {
    const svc = this.definition[`runtime.v1.${service}`] as Record<string, MethodDefinition<object, unknown>> | undefined;
    const m = svc?.[name];
    if (m === undefined) throw new Error(`runtime.v1.${service}/${name} is not in the CRI .proto`);
    return m;
  }

  /** One unary call with a deadline; gRPC failures become CriError. */
  call<Res>(service: Service, name: string, request: object, timeoutMs = this.timeoutMs): Promise<Res> {
    const m = this.method(service, name);
    const label = `${service}/${name}`;
    return new Promise<Res>((resolve, reject) => {
      this.client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        request,
        new Metadata(),
        { deadline: new Date(Date.now() + timeoutMs) },
        (err: ServiceError | null, value?: unknown) => {
          if (err) reject(new CriError(label, err.code, err.details || err.message, { cause: err }));
          else if (value === undefined) reject(new CriError(label, 13, 'empty answer'));
          else resolve(value as Res);
        },
      );
    });
  }

  // ---- runtime

  version(opts: CallOptions = {}): Promise<VersionResponse> {
    return this.call('RuntimeService', 'Version', { version: 'v1' }, opts.timeoutMs);
  }

  /** Runtime conditions (RuntimeReady, NetworkReady); with verbose, the runtime's config in `info`. */
  status(verbose = false, opts: CallOptions = {}): Promise<StatusResponse> {
    return this.call('RuntimeService', 'Status', { verbose }, opts.timeoutMs);
  }

  // ---- pod sandboxes

  /** Starts a pod sandbox; `runtimeHandler` names the runtime configured in the CRI plugin ("" = default). Returns its id. */
  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = '', opts: CallOptions = {}): Promise<string> {
    const res = await this.call<{ pod_sandbox_id: string }>(
      'RuntimeService',
      'RunPodSandbox',
      { config, runtime_handler: runtimeHandler },
      opts.timeoutMs ?? Math.max(this.timeoutMs, 120_000),
    );
    return res.pod_sandbox_id;
  }

  podSandboxStatus(podId: string, verbose = false, opts: CallOptions = {}): Promise<PodSandboxStatusResponse> {
    return this.call('RuntimeService', 'PodSandboxStatus', { pod_sandbox_id: podId, verbose }, opts.timeoutMs);
  }

  async stopPodSandbox(podId: string, opts: CallOptions = {}): Promise<void> {
    await this.call('RuntimeService', 'StopPodSandbox', { pod_sandbox_id: podId }, opts.timeoutMs ?? Math.max(this.timeoutMs, 60_000));
  }

  async removePodSandbox(podId: string, opts: CallOptions = {}): Promise<void> {
    await this.call('RuntimeService', 'RemovePodSandbox', { pod_sandbox_id: podId }, opts.timeoutMs ?? Math.max(this.timeoutMs, 60_000));
  }

  async listPodSandbox(filter?: PodSandboxFilter, opts: CallOptions = {}): Promise<PodSandbox[]> {
    const res = await this.call<{ items: PodSandbox[] }>('RuntimeService', 'ListPodSandbox', filter ? { filter } : {}, opts.timeoutMs);
    return res.items;
  }

  // ---- containers

  /** Creates a container in a pod; `sandboxConfig` is the config the pod was run with. Returns its id. */
  async createContainer(podId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig, opts: CallOptions = {}): Promise<string> {
    const res = await this.call<{ container_id: string }>(
      'RuntimeService',
      'CreateContainer',
      { pod_sandbox_id: podId, config, sandbox_config: sandboxConfig },
      opts.timeoutMs ?? Math.max(this.timeoutMs, 60_000),
    );
    return res.container_id;
  }

  async startContainer(id: string, opts: CallOptions = {}): Promise<void> {
    await this.call('RuntimeService', 'StartContainer', { container_id: id }, opts.timeoutMs ?? Math.max(this.timeoutMs, 60_000));
  }

  containerStatus(id: string, verbose = false, opts: CallOptions = {}): Promise<ContainerStatusResponse> {
    return this.call('RuntimeService', 'ContainerStatus', { container_id: id, verbose }, opts.timeoutMs);
  }

  /** Stops a container: its stop signal, then SIGKILL after `timeoutSeconds`. */
  async stopContainer(id: string, timeoutSeconds: number, opts: CallOptions = {}): Promise<void> {
    await this.call(
      'RuntimeService',
      'StopContainer',
      { container_id: id, timeout: timeoutSeconds },
      opts.timeoutMs ?? timeoutSeconds * 1000 + Math.max(this.timeoutMs, CALL_MARGIN_MS),
    );
  }

  async removeContainer(id: string, opts: CallOptions = {}): Promise<void> {
    await this.call('RuntimeService', 'RemoveContainer', { container_id: id }, opts.timeoutMs ?? Math.max(this.timeoutMs, 60_000));
  }

  async listContainers(filter?: ContainerFilter, opts: CallOptions = {}): Promise<Container[]> {
    const res = await this.call<{ containers: Container[] }>('RuntimeService', 'ListContainers', filter ? { filter } : {}, opts.timeoutMs);
    return res.containers;
  }

  /**
   * Runs `cmd` in a running container and waits for it; the runtime ends it after
   * `timeoutSeconds` (0 = no limit on the runtime side; the call's deadline still applies).
   */
  async execSync(id: string, cmd: string[], timeoutSeconds: number, opts: CallOptions = {}): Promise<ExecSyncResult> {
    const res = await this.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>(
      'RuntimeService',
      'ExecSync',
      { container_id: id, cmd, timeout: timeoutSeconds },
      opts.timeoutMs ?? (timeoutSeconds > 0 ? timeoutSeconds * 1000 + CALL_MARGIN_MS : this.timeoutMs),
    );
    return { stdout: res.stdout.toString('utf8'), stderr: res.stderr.toString('utf8'), exitCode: res.exit_code };
  }

  /** Prepares a streaming exec and returns the URL of the runtime's streaming server. */
  async exec(id: string, req: ExecRequest, opts: CallOptions = {}): Promise<string> {
    const res = await this.call<{ url: string }>(
      'RuntimeService',
      'Exec',
      { container_id: id, cmd: req.cmd, tty: req.tty ?? false, stdin: req.stdin ?? false, stdout: req.stdout ?? true, stderr: req.stderr ?? !req.tty },
      opts.timeoutMs,
    );
    return res.url;
  }

  /** Changes a running container's resources (the kubelet's CPU manager sets cpuset_cpus this way). */
  async updateContainerResources(id: string, linux: LinuxContainerResources, opts: CallOptions = {}): Promise<void> {
    await this.call('RuntimeService', 'UpdateContainerResources', { container_id: id, linux }, opts.timeoutMs ?? Math.max(this.timeoutMs, 120_000));
  }

  async containerStats(id: string, opts: CallOptions = {}): Promise<ContainerStats> {
    const res = await this.call<{ stats: ContainerStats | null }>('RuntimeService', 'ContainerStats', { container_id: id }, opts.timeoutMs);
    if (res.stats === null) throw new CriError('RuntimeService/ContainerStats', 13, `no stats in the answer for ${id}`);
    return res.stats;
  }

  async listContainerStats(filter?: ContainerStatsFilter, opts: CallOptions = {}): Promise<ContainerStats[]> {
    const res = await this.call<{ stats: ContainerStats[] }>('RuntimeService', 'ListContainerStats', filter ? { filter } : {}, opts.timeoutMs);
    return res.stats;
  }

  // ---- images

  async listImages(image?: string, opts: CallOptions = {}): Promise<Image[]> {
    const req = image === undefined ? {} : { filter: { image: { image } } };
    const res = await this.call<{ images: Image[] }>('ImageService', 'ListImages', req, opts.timeoutMs);
    return res.images;
  }

  /** The image named `image` (a reference or an id), or null when the runtime does not have it. */
  async imageStatus(image: string, opts: CallOptions = {}): Promise<Image | null> {
    const res = await this.call<{ image: Image | null }>('ImageService', 'ImageStatus', { image: { image } }, opts.timeoutMs);
    return res.image;
  }
}
