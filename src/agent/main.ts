// tern agent: runs in the guest as the child of tern-init (PID 1). Serves
// tern.agent.v1.Agent over ttrpc on the virtio-serial port and builds
// containers with ContainerManager (rootfs, cgroups, namespaces via the
// tern-launch helper, processes, stdio). When it exits, tern-init powers the
// VM off, so DestroySandbox and a crash both end the VM.
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem, uptime } from 'node:os';
import { decode, encode } from '../common/proto';
import { createLogger } from '../common/logging';
import { AGENT_DEFAULT_LOG_LEVEL, agentLogLevelFromCmdline, isLogLevel, type LogLevel } from '../common/log-level';
import { invalidArgument } from '../common/errors';
import { TtrpcServer } from '../ttrpc/server';
import { registerService, type ServiceImpl } from '../common/proto-service';
import { ContainerManager } from './container/manager';
import { parseResourcesJson } from './container/cgroup-update';
import { onlineAllCpus } from './cpus';
import { DEBUG_PORT_NAME, runDebugShell } from './debug-shell';
import { DEBUG_PORT_RETRY, findPort, type PortSession, servePort } from './port';
import { configureNetwork } from './network';
import { watchListeners } from '../common/listeners';
import { HostPortMirror } from './host-ports';
import { removeGuestFiles, writeGuestFiles } from './guest-files';
import { adoptIdentity, setHostname, warmIdentityChecks } from './identity';
import { GuestHelper, helperMounter } from './guest-helper';
import { findBlockDevice, useMounter, useWritablePremount, WRITABLE_EXT4_OPTIONS } from './container/rootfs';
import { WritablePremount } from './container/writable-premount';
import { WRITABLE_SLOT_SERIAL } from '../common/disk-slots';
import { SHARED_MOUNT, SharedDirMount, helperSharedDirMount, isMountPoint, usesSharedDir } from './shared-dir';
import { isTemplateBoot, warmCodecs, warmNodeInternals, warmUp, type Invoke } from './warmup';
import { MemoryReclaimer } from './memory-reclaim';

export const AGENT_VERSION = '0.1.0';
const SERVICE = 'tern.agent.v1.Agent' as const;
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
// The privileged helper runs from the agent's boot on (in a template too, so its clones have it).
const helper = new GuestHelper();
helper.start();
useMounter(helperMounter(helper));
// The writable slot's filesystem, mounted in a template (premountWritableSlot) for its clones' first container.
const premount = new WritablePremount(helperMounter(helper), '/run/tern-agent/writable-slot', WRITABLE_EXT4_OPTIONS);
useWritablePremount(premount);
// A cold boot's init mounted it already; a template's clone mounts it for its first container with a host volume.
const sharedDir = new SharedDirMount(
  helperSharedDirMount((fields) => helper.request(fields)),
  isMountPoint(SHARED_MOUNT),
);
const manager = new ContainerManager({ log });
const server = new TtrpcServer();
// Off until a template's warm-up is done (warmUpTemplate): nothing pending may be saved with it.
const reclaimer = new MemoryReclaimer({ log, enabled: !isTemplateBoot() });

/** Tears down and exits; tern-init then powers the VM off. */
function powerOff(): void {
  reclaimer.close();
  manager
    .shutdown()
    .catch((err: Error) => log.error({ err: err.message }, 'shutdown failed'))
    .finally(() => process.exit(0));
}

function parseJson(what: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw invalidArgument(`${what} is not valid JSON`);
  }
}

const hostPorts = new HostPortMirror();
/** Held for the warm pool: the end of the pool's connection ends the VM. */
let heldForPool = false;
const startedAt = Date.now();

/**
 * The Agent service (proto/tern/agent/v1/agent.proto), one method each.
 * `ctx.signal` aborts at the call's deadline or when its connection closes:
 * the long polls (WaitProcess, ReadStdout/ReadStderr, GetOOMEvent,
 * WatchListeners) have no deadline and end with it.
 */
const agent: ServiceImpl<typeof SERVICE> = {
  Check: () => ({ agent_version: AGENT_VERSION, uptime_ms: Math.round(uptime() * 1000), writable_premounted: premount.available }),
  GetGuestDetails: () => ({ kernel_release: release(), agent_version: AGENT_VERSION, cpus: cpus().length, memory_bytes: totalmem() }),
  CreateContainer: async (r) => {
    reclaimer.activity();
    await writeGuestFiles(r.container_id, r.files);
    const spec = parseJson('spec_json', r.spec_json);
    if (usesSharedDir(spec as Parameters<typeof usesSharedDir>[0])) {
      const t0 = performance.now();
      if (await sharedDir.ensure()) log.info({ ms: Math.round(performance.now() - t0) }, 'shared directory mounted');
    }
    const { pid, stepMs } = await manager.createContainer({
      containerId: r.container_id,
      spec: spec as Parameters<ContainerManager['createContainer']>[0]['spec'],
      layers: r.layers,
      rootfs: r.rootfs?.serial ? r.rootfs : undefined,
      terminal: r.terminal,
      stdin: r.stdin,
      stdout: r.stdout,
      stderr: r.stderr,
    });
    return { pid, step_ms: stepMs };
  },
  StartContainer: (r) => {
    reclaimer.activity();
    return manager.startContainer(r.container_id);
  },
  RemoveContainer: async (r) => {
    await manager.removeContainer(r.container_id);
    await removeGuestFiles(r.container_id);
  },
  ExecProcess: (r) => {
    reclaimer.activity();
    const proc = parseJson('process_json', r.process_json);
    return manager.execProcess(r.container_id, r.exec_id, proc as Parameters<ContainerManager['execProcess']>[2], {
      terminal: r.terminal,
      stdin: r.stdin,
      stdout: r.stdout,
      stderr: r.stderr,
    });
  },
  SignalProcess: (r) => manager.signalProcess(r.container_id, r.exec_id, r.signal, r.all),
  WaitProcess: async (r, ctx) => {
    const e = await manager.waitProcess(r.container_id, r.exec_id, ctx?.signal);
    // The container's page cache is reclaimed a moment after this answer is out.
    if (r.exec_id === '') reclaimer.containerExited(r.container_id);
    return { exit_status: e.exitStatus, exited_at_unix_nano: Number(e.exitedAtNs) };
  },
  ListProcesses: async (r) => ({ pids: await manager.listProcesses(r.container_id) }),
  ReadStdout: (r, ctx) => manager.readStream(r.container_id, r.exec_id, 'stdout', Math.min(r.max_bytes || 65536, 1 << 20), ctx?.signal),
  ReadStderr: (r, ctx) => manager.readStream(r.container_id, r.exec_id, 'stderr', Math.min(r.max_bytes || 65536, 1 << 20), ctx?.signal),
  WriteStdin: async (r) => ({ len: await manager.writeStdin(r.container_id, r.exec_id, r.data) }),
  CloseStdin: (r) => manager.closeStdin(r.container_id, r.exec_id),
  TtyWinResize: (r) => manager.resizeTty(r.container_id, r.exec_id, r.rows, r.cols),
  DestroySandbox: () => {
    // Answer first, then tear down and exit.
    setTimeout(powerOff, 10);
  },
  PauseContainer: (r) => manager.pauseContainer(r.container_id),
  ResumeContainer: (r) => manager.resumeContainer(r.container_id),
  UpdateContainer: async (r) => {
    await manager.updateContainer(r.container_id, parseResourcesJson(r.resources_json));
  },
  StatsContainer: async (r) => ({ metrics_v2: await manager.statsContainer(r.container_id) }),
  StatsPressure: (r) => manager.statsPressure(r.container_ids),
  // A caller that goes away (connection closed) gives up its turn.
  GetOOMEvent: async (_r, ctx) => ({ container_id: await manager.getOomEvent(ctx?.signal) }),
  ConfigureNetwork: async (r) => {
    await configureNetwork(r.interfaces, r.routes);
    log.info({ interfaces: r.interfaces.map((i) => `${i.name} ${i.addresses.join(',')}`) }, 'pod network configured');
  },
  AdoptIdentity: async (r) => {
    const ms = await adoptIdentity(r, helper, hostSession?.lastDataAt);
    if (r.mount_shared) sharedDir.markMounted();
    log.info({ hostname: r.hostname, sharedMounted: r.mount_shared, ms }, 'identity adopted');
  },
  HoldForPool: (r) => {
    heldForPool = r.hold;
    log.info({ hold: r.hold }, 'warm pool hold');
  },
  SetHostname: async (r) => {
    await setHostname(r.hostname);
    log.info({ hostname: r.hostname }, 'hostname set');
  },
  OnlineCpus: async () => {
    const online = await onlineAllCpus();
    log.info({ online }, 'vCPUs online');
    return { online };
  },
  WatchListeners: async (r, ctx) => ({ tcp: await watchListeners(r.known, ctx?.signal ?? new AbortController().signal) }),
  MirrorHostPorts: async (r) => {
    const mirrored = await hostPorts.set(r.ports, r.via);
    log.info({ mirrored }, 'node ports mirrored');
    return { mirrored };
  },
};

/** Every RPC by method, also for running one in process (warmup.ts). */
const handlers = registerService(server, SERVICE, agent);
const invoke: Invoke = async (method, reqType, req, resType) => decode(P + resType, await handlers.get(method)!(encode(P + reqType, req)));

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
  await premountWritableSlot();
  const t1 = Date.now();
  const codecs = warmCodecs(SERVICE);
  warmIdentityChecks();
  await warmNodeInternals('/run').catch((err: Error) => log.warn({ err: err.message }, 'warming node internals failed'));
  log.info({ ms: Date.now() - t1, codecs }, 'codecs, identity checks and node internals warmed');
  emptyYoungGeneration();
  reclaimer.setEnabled(true);
}

/**
 * In a template whose host put a file in the writable slot: mounts its ext4
 * for the clones' first container (writable-premount.ts). A failure is
 * logged and leaves nothing mounted; the host then learns from Check that
 * there is no premount, and its clones mount their disks.
 */
async function premountWritableSlot(): Promise<void> {
  const t0 = Date.now();
  try {
    const device = await findBlockDevice(WRITABLE_SLOT_SERIAL, { timeoutMs: 0 }).catch(() => undefined);
    if (!device) return;
    if (await premount.prepare(device)) log.info({ ms: Date.now() - t0, device }, 'writable slot premounted');
  } catch (err) {
    log.warn({ ms: Date.now() - t0, err: (err as Error).message }, 'premounting the writable slot failed');
  }
}

/**
 * A template's last step before it serves: a full GC (init.sh gives a
 * template's agent --expose-gc), so that its clones start with V8's young
 * generation empty. Measured on a clone (--trace-gc): the young generation
 * (1 MiB) saved nearly full was collected early on the start path, a scavenge
 * of ~100 ms under TCG, much of it the GC's code translated afresh.
 */
function emptyYoungGeneration(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') return;
  const t0 = Date.now();
  gc();
  log.info({ ms: Date.now() - t0 }, 'heap collected before serving');
}

const port = findPort('tern.agent');
log.info({ port, bootMs: Date.now() - startedAt, uptimeMs: Math.round(uptime() * 1000) }, 'agent serving');
/** The current host connection (AdoptIdentity dates the host's time from when its bytes were read). */
let hostSession: PortSession | undefined;
function onSession(session: PortSession): void {
  hostSession = session;
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
    DEBUG_PORT_RETRY,
  ).catch((err: Error) => log.error({ err: err.message }, 'debug shell port failed'));
}
