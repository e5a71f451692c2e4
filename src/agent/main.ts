// tern agent: runs in the guest as the child of tern-init (PID 1). Serves
// tern.agent.v1.Agent over ttrpc on the virtio-serial port and builds
// containers with ContainerManager (rootfs, cgroups, namespaces via the
// tern-launch helper, processes, stdio). When it exits, tern-init powers the
// VM off, so DestroySandbox and a crash both end the VM.
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem, uptime } from 'node:os';
import type { Duplex } from 'node:stream';
import { decode, encode } from '../common/proto';
import { createLogger } from '../common/logging';
import { AGENT_DEFAULT_LOG_LEVEL, agentLogLevelFromCmdline, isLogLevel, type LogLevel } from '../common/log-level';
import { invalidArgument } from '../common/errors';
import { TtrpcServer, type CallContext } from '../ttrpc/server';
import { ContainerManager } from './container/manager';
import { parseResourcesJson } from './container/cgroup-update';
import { onlineAllCpus } from './cpus';
import { DEBUG_PORT_NAME, runDebugShell } from './debug-shell';
import { findPort, servePort } from './port';
import { configureNetwork, type GuestInterface, type GuestRoute } from './network';
import { watchListeners } from '../common/listeners';
import { HostPortMirror } from './host-ports';
import { removeGuestFiles, writeGuestFiles, type GuestFileMsg } from './guest-files';
import { adoptIdentity, setHostname, type IdentityRequest } from './identity';
import { isTemplateBoot, warmUp, type Invoke } from './warmup';

export const AGENT_VERSION = '0.1.0';
const SERVICE = 'tern.agent.v1.Agent';
const P = 'tern.agent.v1.';

/** The host's agent.log_level, from the kernel command line (tern.agent_log=); else TERN_AGENT_LOG; else info. */
function logLevel(): LogLevel {
  const env = process.env.TERN_AGENT_LOG;
  let cmdline = '';
  try {
    cmdline = readFileSync('/proc/cmdline', 'utf8');
  } catch {
    /* not in a VM (tests) */
  }
  return agentLogLevelFromCmdline(cmdline, env !== undefined && isLogLevel(env) ? env : AGENT_DEFAULT_LOG_LEVEL);
}

// Its lines go to the guest console (ttyS0), which the host keeps as the VM's console.log (`tern logs`).
const log = createLogger({ name: 'tern-agent', level: logLevel(), destination: { fd: 2, mode: 'blocking' } });
const manager = new ContainerManager({ log });
const server = new TtrpcServer();

type Id = { container_id: string; exec_id: string };
type IO = { terminal: boolean; stdin: boolean; stdout: boolean; stderr: boolean };

/** Every registered RPC by method, for running one in process (warmup.ts). */
const handlers = new Map<string, (payload: Uint8Array) => Promise<Uint8Array>>();
/** `signal` aborts at the call's deadline or when its connection closes: long polls end with it. */
function reg<Req>(method: string, reqType: string, resType: string, fn: (r: Req, signal?: AbortSignal) => Promise<object | undefined> | object) {
  const handler = async (payload: Uint8Array, ctx?: CallContext): Promise<Uint8Array> => {
    let req: Req;
    try {
      req = decode<Req>(P + reqType, payload);
    } catch (err) {
      throw invalidArgument(`${method}: cannot decode ${P + reqType}: ${(err as Error).message}`);
    }
    const res = (await fn(req, ctx?.signal)) ?? {};
    return encode(P + resType, res);
  };
  handlers.set(method, handler);
  server.register(SERVICE, method, handler);
}
const invoke: Invoke = async (method, reqType, req, resType) => decode(P + resType, await handlers.get(method)!(encode(P + reqType, req)));

const startedAt = Date.now();
reg('Check', 'CheckRequest', 'CheckResponse', () => ({ agent_version: AGENT_VERSION, uptime_ms: Math.round(uptime() * 1000) }));
reg('GetGuestDetails', 'GuestDetailsRequest', 'GuestDetailsResponse', () => ({
  kernel_release: release(),
  agent_version: AGENT_VERSION,
  cpus: cpus().length,
  memory_bytes: totalmem(),
}));
reg<{ container_id: string; spec_json: string; layers: { serial: string; fs_type: string }[]; files: GuestFileMsg[] } & IO>(
  'CreateContainer',
  'CreateContainerRequest',
  'CreateContainerResponse',
  async (r) => {
    await writeGuestFiles(r.container_id, r.files);
    let spec: unknown;
    try {
      spec = JSON.parse(r.spec_json);
    } catch {
      throw invalidArgument('spec_json is not valid JSON');
    }
    return manager.createContainer({
      containerId: r.container_id,
      spec: spec as Parameters<ContainerManager['createContainer']>[0]['spec'],
      layers: r.layers,
      terminal: r.terminal,
      stdin: r.stdin,
      stdout: r.stdout,
      stderr: r.stderr,
    });
  },
);
reg<{ container_id: string }>('StartContainer', 'StartContainerRequest', 'StartContainerResponse', (r) => manager.startContainer(r.container_id));
reg<{ container_id: string }>('RemoveContainer', 'RemoveContainerRequest', 'Empty', async (r) => {
  await manager.removeContainer(r.container_id);
  await removeGuestFiles(r.container_id);
});
reg<Id & IO & { process_json: string }>('ExecProcess', 'ExecProcessRequest', 'ExecProcessResponse', (r) => {
  let proc: unknown;
  try {
    proc = JSON.parse(r.process_json);
  } catch {
    throw invalidArgument('process_json is not valid JSON');
  }
  return manager.execProcess(r.container_id, r.exec_id, proc as Parameters<ContainerManager['execProcess']>[2], {
    terminal: r.terminal,
    stdin: r.stdin,
    stdout: r.stdout,
    stderr: r.stderr,
  });
});
reg<Id & { signal: number; all: boolean }>('SignalProcess', 'SignalProcessRequest', 'Empty', (r) =>
  manager.signalProcess(r.container_id, r.exec_id, r.signal, r.all),
);
// Long polls (WaitProcess, ReadStdout/ReadStderr, GetOOMEvent): no deadline; a caller that goes away gives up its wait.
reg<Id>('WaitProcess', 'WaitProcessRequest', 'WaitProcessResponse', async (r, signal) => {
  const e = await manager.waitProcess(r.container_id, r.exec_id, signal);
  return { exit_status: e.exitStatus, exited_at_unix_nano: Number(e.exitedAtNs) };
});
reg<{ container_id: string }>('ListProcesses', 'ListProcessesRequest', 'ListProcessesResponse', async (r) => ({
  pids: await manager.listProcesses(r.container_id),
}));
reg<Id & { max_bytes: number }>('ReadStdout', 'ReadStreamRequest', 'ReadStreamResponse', (r, signal) =>
  manager.readStream(r.container_id, r.exec_id, 'stdout', Math.min(r.max_bytes || 65536, 1 << 20), signal),
);
reg<Id & { max_bytes: number }>('ReadStderr', 'ReadStreamRequest', 'ReadStreamResponse', (r, signal) =>
  manager.readStream(r.container_id, r.exec_id, 'stderr', Math.min(r.max_bytes || 65536, 1 << 20), signal),
);
reg<Id & { data: Buffer }>('WriteStdin', 'WriteStdinRequest', 'WriteStdinResponse', async (r) => ({
  len: await manager.writeStdin(r.container_id, r.exec_id, r.data),
}));
reg<Id>('CloseStdin', 'CloseStdinRequest', 'Empty', (r) => manager.closeStdin(r.container_id, r.exec_id));
reg<Id & { rows: number; cols: number }>('TtyWinResize', 'TtyWinResizeRequest', 'Empty', (r) => manager.resizeTty(r.container_id, r.exec_id, r.rows, r.cols));
reg<{ container_id: string }>('PauseContainer', 'PauseContainerRequest', 'Empty', (r) => manager.pauseContainer(r.container_id));
reg<{ container_id: string }>('ResumeContainer', 'ResumeContainerRequest', 'Empty', (r) => manager.resumeContainer(r.container_id));
reg<{ container_id: string; resources_json: string }>('UpdateContainer', 'UpdateContainerRequest', 'Empty', async (r) => {
  await manager.updateContainer(r.container_id, parseResourcesJson(r.resources_json));
});
reg<{ container_id: string }>('StatsContainer', 'StatsContainerRequest', 'StatsContainerResponse', async (r) => ({
  metrics_v2: await manager.statsContainer(r.container_id),
}));
// Long poll; a caller that goes away (connection closed) gives up its turn.
server.register(SERVICE, 'GetOOMEvent', async (_payload, ctx) => encode(`${P}OOMEvent`, { container_id: await manager.getOomEvent(ctx.signal) }));
reg<{ interfaces: GuestInterface[]; routes: GuestRoute[] }>('ConfigureNetwork', 'ConfigureNetworkRequest', 'Empty', async (r) => {
  await configureNetwork(r.interfaces, r.routes);
  log.info({ interfaces: r.interfaces.map((i) => `${i.name} ${i.addresses.join(',')}`) }, 'pod network configured');
});
reg<IdentityRequest>('AdoptIdentity', 'AdoptIdentityRequest', 'Empty', async (r) => {
  await adoptIdentity(r);
  log.info({ hostname: r.hostname, sharedMounted: r.mount_shared }, 'identity adopted');
});
/** Tears down and exits; tern-init then powers the VM off. */
function powerOff(): void {
  manager
    .shutdown()
    .catch((err: Error) => log.error({ err: err.message }, 'shutdown failed'))
    .finally(() => process.exit(0));
}
reg('DestroySandbox', 'DestroySandboxRequest', 'Empty', () => {
  // Answer first, then tear down and exit.
  setTimeout(powerOff, 10);
  return {};
});
reg('OnlineCpus', 'OnlineCpusRequest', 'OnlineCpusResponse', async () => {
  const online = await onlineAllCpus();
  log.info({ online }, 'vCPUs online');
  return { online };
});
// Long poll (host networking): the listening TCP ports once they change.
reg<{ known: number[] }>('WatchListeners', 'WatchListenersRequest', 'WatchListenersResponse', async (r, signal) => ({
  tcp: await watchListeners(r.known ?? [], signal ?? new AbortController().signal),
}));
const hostPorts = new HostPortMirror();
reg<{ ports: number[]; via: string }>('MirrorHostPorts', 'MirrorHostPortsRequest', 'MirrorHostPortsResponse', async (r) => {
  const mirrored = await hostPorts.set(r.ports ?? [], r.via);
  log.info({ mirrored }, 'node ports mirrored');
  return { mirrored };
});
reg<{ hostname: string }>('SetHostname', 'SetHostnameRequest', 'Empty', async (r) => {
  await setHostname(r.hostname);
  log.info({ hostname: r.hostname }, 'hostname set');
});
// Held for the warm pool: the end of the pool's connection ends the VM.
let heldForPool = false;
reg<{ hold: boolean }>('HoldForPool', 'HoldForPoolRequest', 'Empty', (r) => {
  heldForPool = r.hold;
  log.info({ hold: r.hold }, 'warm pool hold');
  return {};
});

process.on('uncaughtException', (err) => log.error({ err: err.stack }, 'uncaught exception'));
process.on('unhandledRejection', (err) => log.error({ err: String((err as Error)?.stack ?? err) }, 'unhandled rejection'));

// A template's agent warms its container path up before it answers the host,
// which saves the VM (and its warm code) right after the first answer.
async function warmUpTemplate(): Promise<void> {
  if (!isTemplateBoot()) return;
  const t0 = Date.now();
  await warmUp(invoke).then(
    (status) => log.info({ ms: Date.now() - t0, status }, 'warm-up container ran'),
    (err: Error) => log.warn({ ms: Date.now() - t0, err: err.message }, 'warm-up container failed'),
  );
}

const port = findPort('tern.agent');
log.info({ port, bootMs: Date.now() - startedAt, uptimeMs: Math.round(uptime() * 1000) }, 'agent serving');
function onSession(session: Duplex): void {
  server.serve(session);
  session.once('close', () => {
    if (!heldForPool) return;
    log.warn('the warm pool holding this VM went away: powering off');
    powerOff();
  });
}
void warmUpTemplate().then(() =>
  servePort(port, onSession, (m) => log.warn(m)).catch((err: Error) => {
    log.error({ err: err.message }, 'agent port failed');
    process.exit(1);
  }),
);

// The debug shell's port exists only when the host enabled it (agent.debug_shell).
const debugPort = (() => {
  try {
    return findPort(DEBUG_PORT_NAME);
  } catch {
    return undefined;
  }
})();
if (debugPort) {
  log.info({ port: debugPort }, 'debug shell enabled by the host');
  servePort(
    debugPort,
    (s) => runDebugShell(s, manager.launcherPath, log),
    (m) => log.warn(m),
  ).catch((err: Error) => log.error({ err: err.message }, 'debug shell port failed'));
}
