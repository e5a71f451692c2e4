// A template VM's agent, before it serves: one throwaway container through
// the RPCs every container start takes (create, start, wait, read output,
// remove). V8 compiles a function when it is first called and protobufjs
// builds each message type's codec on first use; done here, that work lands
// in the memory the template saves and every clone starts with it done,
// instead of redoing it on its start path (slowly, under TCG). The
// container's root is the read-only guest image itself (the disk with serial
// tern-guest, mounted a second time) and its process a helper that only
// prints its usage; nothing of it is left afterwards.
import { closeSync, openSync, readFileSync, rmSync, write, writeFileSync } from 'node:fs';
import path from 'node:path';
import { withDeadline } from '../common/deadline';
import { decode, encode } from '../common/proto';
import { type ServiceName, serviceMethods } from '../common/proto-service';

export const TEMPLATE_PARAM = 'tern.template=1';
export const WARMUP_ID = 'tern-warmup';
const GUEST_DISK_SERIAL = 'tern-guest';
/**
 * Deadline of the warm-up run. The agent serves only after it, so it must end
 * well before the host stops waiting for the template's agent
 * (agent.boot_timeout_ms, 90 s by default): past it the template is built
 * without a warm-up rather than not at all.
 */
export const WARMUP_TIMEOUT_MS = 60_000;

/** Runs one registered agent RPC in process: request object in, decoded reply out. */
export type Invoke = (method: string, reqType: string, req: object, resType: string) => Promise<Record<string, unknown>>;

/** True when the kernel command line says this VM boots to become a template. */
export function isTemplateBoot(cmdline?: string): boolean {
  let text = cmdline;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cmdline', 'utf8');
    } catch {
      return false;
    }
  }
  return text.split(/\s+/).includes(TEMPLATE_PARAM);
}

/** A spec shaped like `ctr run`'s default, for a process that exits at once. */
export function warmupSpec(): object {
  const caps = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID', 'CAP_KILL'];
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ['/sbin/tern-vmfork'],
      env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs' },
    hostname: WARMUP_ID,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/**
 * The warm-up run; resolves with the exit status of its process, or rejects
 * with DeadlineExceeded after timeoutMs. Always removes the container (which
 * kills its process and so ends a wait still under way).
 */
export async function warmUp(invoke: Invoke, timeoutMs = WARMUP_TIMEOUT_MS): Promise<number> {
  let failed = false;
  try {
    // Past the deadline the run takes no further step.
    const stop = new AbortController();
    const step: Invoke = (...args) => (stop.signal.aborted ? Promise.reject(stop.signal.reason) : invoke(...args));
    return await withDeadline(run(step), timeoutMs, 'the warm-up container did not finish', () => stop.abort(new Error('warm-up past its deadline')));
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    // A removal that fails after a failed run does not hide why the run failed.
    await invoke('RemoveContainer', 'RemoveContainerRequest', { container_id: WARMUP_ID }, 'Empty').catch((err: unknown) => {
      if (!failed) throw err;
    });
  }
}

async function run(invoke: Invoke): Promise<number> {
  const id = { container_id: WARMUP_ID, exec_id: '' };
  await invoke(
    'CreateContainer',
    'CreateContainerRequest',
    {
      container_id: WARMUP_ID,
      spec_json: JSON.stringify(warmupSpec()),
      layers: [{ serial: GUEST_DISK_SERIAL, fs_type: 'erofs' }],
      terminal: false,
      stdin: false,
      stdout: true,
      stderr: true,
    },
    'CreateContainerResponse',
  );
  await invoke('StartContainer', 'StartContainerRequest', { container_id: WARMUP_ID }, 'StartContainerResponse');
  const exit = await invoke('WaitProcess', 'WaitProcessRequest', id, 'WaitProcessResponse');
  await invoke('ReadStdout', 'ReadStreamRequest', { ...id, max_bytes: 65536 }, 'ReadStreamResponse');
  await invoke('ReadStderr', 'ReadStreamRequest', { ...id, max_bytes: 65536 }, 'ReadStreamResponse');
  return Number(exit.exit_status);
}

/**
 * Builds and runs once every request and response codec of `service`
 * (protobufjs builds a type's verify, fromObject, encode, decode and toObject
 * on its first use): the throwaway container covers the container path, but a
 * clone also takes RPCs its template never served (AdoptIdentity,
 * DestroySandbox, ...). Returns how many types it warmed.
 */
export function warmCodecs(service: ServiceName): number {
  const types = new Set<string>();
  for (const m of serviceMethods(service)) {
    types.add(m.req);
    types.add(m.res);
  }
  for (const t of types) decode(t, encode(t, {}));
  return types.size;
}

/**
 * Calls once, in a template, the functions of Node's own library that a
 * clone's start path reaches and the throwaway container does not, so that
 * V8 has compiled them (it compiles each function on its first call; the
 * agent's own bundle is compiled whole at load, see guest-image/init/init.sh).
 * Found with V8's --log-function-events on a clone: each was parsed and
 * compiled there, 1-15 ms apiece under TCG, and the parser's code translated
 * afresh by every clone's QEMU. They are:
 * - the completion of an fs.write with a callback (the template's last act is
 *   the write of its answer to the host, which completes in the clone);
 * - writeFileSync and what it opens and closes with (identity's machine id);
 * - an AbortSignal's listeners (waits the host may cancel: GetOOMEvent, ...);
 * - a timer firing, and unref (no timer fires before the template is saved);
 * - path.relative (the reclaimer's log).
 * `dir` is a writable directory; the file made there is removed.
 */
export async function warmNodeInternals(dir: string): Promise<void> {
  const file = path.join(dir, 'tern-warmup-file');
  try {
    writeFileSync(file, 'warm\n', { mode: 0o600 });
    const fd = openSync(file, 'w');
    try {
      await new Promise<void>((resolve, reject) => write(fd, Buffer.from('warm\n'), 0, 5, null, (err) => (err ? reject(err) : resolve())));
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(file, { force: true });
  }
  const abort = new AbortController();
  const onAbort = (): void => undefined;
  abort.signal.addEventListener('abort', onAbort, { once: true });
  abort.signal.removeEventListener('abort', onAbort);
  abort.signal.addEventListener('abort', onAbort, { once: true });
  abort.abort();
  await new Promise<void>((resolve) => setTimeout(resolve, 1).unref());
  path.relative('/sys/fs/cgroup', '/sys/fs/cgroup/tern');
}
