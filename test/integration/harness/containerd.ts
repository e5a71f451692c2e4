// Starts a private containerd for integration tests: its own directory, generated
// config.toml, sockets and log; never the system containerd. Also builds and imports
// the local busybox test image (scripts/make-test-image.sh, cached under build/).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './paths.js';
import { run, type RunResult } from './run.js';

export const TEST_NAMESPACE = 'tern-test';
export const TEST_IMAGE_REF = 'docker.io/tern/busybox:test';

export interface ContainerdOptions {
  /** Parent of the private directory; default /run/tern-test (short: socket paths are limited to 108 bytes). */
  baseDir?: string;
  /** Directories put first on containerd's PATH, e.g. where containerd-shim-tern-v2 is. */
  extraPath?: string[];
  /** Extra environment for containerd (and so for the shims it starts). */
  env?: Record<string, string>;
  /** Enable the CRI plugin (disabled by default). */
  cri?: boolean;
  /** TOML key lines put inside the `[plugins."io.containerd.grpc.v1.cri"]` table (e.g. sandbox_image), with cri. */
  criPluginConfig?: string;
  /** TOML appended to the generated config. */
  extraConfig?: string;
  /** containerd log level "debug" instead of "info". */
  debug?: boolean;
  /** Run containerd inside this network namespace (a path such as /run/netns/NAME), via nsenter. */
  netnsPath?: string;
  /** Deadline for containerd to answer `ctr version`; default 30 s. */
  startTimeoutMs?: number;
}

export interface CtrOptions {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface Containerd {
  address: string;
  ttrpcAddress: string;
  root: string;
  state: string;
  dir: string;
  configPath: string;
  logPath: string;
  pid: number;
  namespace: string;
  /** Runs `ctr --address <sock> -n tern-test ARGS`. */
  ctr(args: string[], opts?: CtrOptions): Promise<RunResult>;
  /** containerd's log so far. */
  readLog(): string;
  /** Removes leftover tasks and containers, stops containerd by pid, unmounts and removes its directory. */
  stop(): Promise<void>;
  /**
   * Stops containerd (SIGTERM, as a service restart does; its shims keep
   * running) and starts it again on the same config, root and state; resolves
   * once it answers. `pid` is the new process's afterwards.
   */
  restart(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

function renderConfig(dir: string, opts: ContainerdOptions): string {
  const disabled = opts.cri ? [] : ['io.containerd.grpc.v1.cri'];
  const lines = [
    'version = 2',
    `root = ${tomlString(join(dir, 'root'))}`,
    `state = ${tomlString(join(dir, 'state'))}`,
    `disabled_plugins = [${disabled.map(tomlString).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${tomlString(join(dir, 'containerd.sock'))}`,
    '',
    '[ttrpc]',
    `  address = ${tomlString(join(dir, 'containerd.sock.ttrpc'))}`,
    '',
    '[debug]',
    `  level = ${tomlString(opts.debug ? 'debug' : 'info')}`,
    '',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${tomlString(join(dir, 'opt'))}`,
    '',
    '[plugins."io.containerd.runtime.v2.task"]',
    '  platforms = ["linux/amd64"]',
    '',
    '[plugins."io.containerd.snapshotter.v1.overlayfs"]',
    `  root_path = ${tomlString(join(dir, 'root', 'io.containerd.snapshotter.v1.overlayfs'))}`,
  ];
  if (opts.cri) {
    lines.push(
      '',
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  restrict_oom_score_adj = true',
      ...(opts.criPluginConfig ? [opts.criPluginConfig] : []),
      '[plugins."io.containerd.grpc.v1.cri".containerd]',
      '  snapshotter = "overlayfs"',
    );
  }
  if (opts.extraConfig) lines.push('', opts.extraConfig);
  return `${lines.join('\n')}\n`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => unescapeMountPath(l.split(' ')[4] ?? ''))
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

async function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  installExitHook();
  const baseDir = opts.baseDir ?? '/run/tern-test';
  const dir = join(baseDir, randomBytes(4).toString('hex'));
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  const address = join(dir, 'containerd.sock');
  const ttrpcAddress = join(dir, 'containerd.sock.ttrpc');
  const configPath = join(dir, 'config.toml');
  const logPath = join(dir, 'containerd.log');
  writeFileSync(configPath, renderConfig(dir, opts));

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...opts.env,
    // Marks containerd and everything it starts, for the leak detector's scope.
    TERN_TEST_DIR: dir,
    PATH: [...(opts.extraPath ?? []), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':'),
  };
  const [cmd, args] = opts.netnsPath
    ? ['nsenter', [`--net=${opts.netnsPath}`, 'containerd', '--config', configPath]]
    : ['containerd', ['--config', configPath]];
  let spawnError: Error | undefined;
  const launch = (): ChildProcess => {
    const logFd = openSync(logPath, 'a');
    let c: ChildProcess;
    try {
      c = spawn(cmd, args as string[], { env, stdio: ['ignore', logFd, logFd], cwd: dir });
    } finally {
      closeSync(logFd);
    }
    running.add(c);
    spawnError = undefined;
    c.on('error', (err) => (spawnError = err));
    c.on('exit', () => running.delete(c));
    return c;
  };
  let child = launch();

  const ctrEnv = (extra?: Record<string, string>): NodeJS.ProcessEnv => ({ ...process.env, ...extra });
  const ctr = (ctrArgs: string[], o: CtrOptions = {}): Promise<RunResult> =>
    run('ctr', ['--address', address, '-n', TEST_NAMESPACE, ...ctrArgs], {
      input: o.input,
      timeoutMs: o.timeoutMs ?? 60_000,
      env: ctrEnv(o.env),
    });
  const readLog = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const problems: string[] = [];
    if (child.exitCode === null && child.signalCode === null) {
      await removeLeftoverTasks(ctr).catch((e: Error) => problems.push(`cleanup of tasks: ${e.message}`));
      try {
        process.kill(child.pid!, 'SIGTERM');
      } catch {
        // already gone
      }
      if (!(await waitForExit(child, 10_000))) {
        try {
          process.kill(child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        if (!(await waitForExit(child, 5_000))) problems.push(`containerd pid ${child.pid} did not exit`);
      }
    }
    running.delete(child);
    for (const mnt of mountsUnder(dir)) {
      const r = await run('umount', ['-R', '-l', mnt], { timeoutMs: 10_000 });
      if (r.code !== 0 && mountsUnder(dir).includes(mnt)) problems.push(`umount ${mnt}: ${r.stderr.trim()}`);
    }
    const still = mountsUnder(dir);
    if (still.length > 0) problems.push(`still mounted: ${still.join(', ')}`);
    else {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (e) {
        problems.push(`remove ${dir}: ${(e as Error).message}`);
      }
      if (existsSync(dir)) problems.push(`${dir} still exists`);
    }
    if (problems.length > 0) throw new Error(`private containerd teardown failed:\n  ${problems.join('\n  ')}`);
  };

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
    let last = '';
    for (;;) {
      if (spawnError || child.exitCode !== null || child.signalCode !== null) {
        const why = spawnError ? spawnError.message : `exited with ${child.exitCode ?? child.signalCode}`;
        const log = readLog();
        await stop().catch(() => undefined);
        throw new Error(`containerd ${why}\n--- log ---\n${log.slice(-4000)}`);
      }
      if (existsSync(address)) {
        const r = await run('ctr', ['--address', address, 'version'], { timeoutMs: 5_000 }).catch(
          (e: Error): RunResult => ({ code: -1, stdout: '', stderr: e.message }),
        );
        if (r.code === 0 && r.stdout.includes('Server:')) return;
        last = r.stderr.trim();
      }
      if (Date.now() > deadline) {
        const log = readLog();
        await stop().catch(() => undefined);
        throw new Error(`containerd did not answer within the deadline (${last})\n--- log ---\n${log.slice(-4000)}`);
      }
      await sleep(100);
    }
  };
  await waitReady();

  const restart = async (): Promise<void> => {
    if (stopped) throw new Error('containerd was stopped');
    process.kill(child.pid!, 'SIGTERM');
    if (!(await waitForExit(child, 15_000))) throw new Error(`containerd pid ${child.pid} did not exit on SIGTERM`);
    running.delete(child);
    child = launch();
    await waitReady();
  };

  return {
    address,
    ttrpcAddress,
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    dir,
    configPath,
    logPath,
    get pid() {
      return child.pid!;
    },
    namespace: TEST_NAMESPACE,
    ctr,
    readLog,
    stop,
    restart,
  };
}

/** Best-effort removal of tasks and containers a failed test left in the namespace. */
async function removeLeftoverTasks(ctr: Containerd['ctr']): Promise<void> {
  const tasks = await ctr(['tasks', 'ls', '-q'], { timeoutMs: 10_000 });
  for (const id of tasks.stdout
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean)) {
    await ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], { timeoutMs: 10_000 }).catch(() => undefined);
    await ctr(['tasks', 'delete', '-f', id], { timeoutMs: 30_000 }).catch(() => undefined);
  }
  const containers = await ctr(['containers', 'ls', '-q'], { timeoutMs: 10_000 });
  for (const id of containers.stdout
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean)) {
    await ctr(['containers', 'delete', id], { timeoutMs: 30_000 }).catch(() => undefined);
  }
}

/** Builds the busybox test image (cached as build/test-image.tar) and imports it; returns its ref. */
export async function importTestImage(c: Containerd): Promise<string> {
  const root = repoRoot();
  const tar = join(root, 'build', 'test-image.tar');
  const build = await run('bash', [join(root, 'scripts', 'make-test-image.sh'), tar], { timeoutMs: 120_000 });
  if (build.code !== 0) throw new Error(`make-test-image.sh failed (${build.code}):\n${build.stderr}`);
  const imp = await c.ctr(['images', 'import', tar], { timeoutMs: 120_000 });
  if (imp.code !== 0) throw new Error(`ctr images import failed (${imp.code}):\n${imp.stderr}`);
  const ls = await c.ctr(['images', 'ls', '-q']);
  if (!ls.stdout.split('\n').includes(TEST_IMAGE_REF)) {
    throw new Error(`image ${TEST_IMAGE_REF} not found after import; images:\n${ls.stdout}`);
  }
  return TEST_IMAGE_REF;
}
