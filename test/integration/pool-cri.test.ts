// Kubernetes pods from the warm pool through containerd's CRI: a pooled VM
// runs outside the pod's network namespace, so the pod's tap is opened in
// there by tern-tapfd and handed to QEMU; the pod must then be reachable on
// its IP like any other. Everything runs inside a network namespace this test
// creates; no packet goes to any address outside it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { run } from './harness/run.js';
import { removeAllPods, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { containerConfig, podConfig, type PodSandboxConfig } from '../cri';
import type { PoolStatus } from '../../src/shim/pool/protocol';

const HANDLER = 'tern-pool';
const IN_SUBNET = /^10\.88\.77\.(\d+)$/;
const SCOPE_EXTRA = '/run/tern';

describe('pods from the warm pool through CRI', () => {
  let outer: Snapshot;
  let env: CriEnv | undefined;
  let pool: ChildProcess | undefined;
  let poolOut = '';
  let cfgPath = '';
  const tern = join(repoRoot(), 'dist', 'tern.js');
  const cgroupRoot = `tern-pool-cri-${randomBytes(3).toString('hex')}`;

  const status = async (): Promise<PoolStatus | undefined> => {
    const r = await run(process.execPath, [tern, 'pool', 'status', '--json', '--config', cfgPath], { timeoutMs: 10_000 });
    return r.code === 0 ? (JSON.parse(r.stdout) as PoolStatus) : undefined;
  };

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    // The config path must exist when containerd reads it: written in a directory of our own first.
    const dir = join('/run', `tern-pool-cri-${randomBytes(3).toString('hex')}`);
    mkdirSync(dir, { recursive: true });
    cfgPath = join(dir, 'tern.toml');
    writeFileSync(
      cfgPath,
      ['[pool]', 'size = 1', `socket = ${JSON.stringify(join(dir, 'pool.sock'))}`, `dir = ${JSON.stringify(join(dir, 'pool'))}`, 'reserve_mib = 256', ''].join(
        '\n',
      ),
    );
    env = await startCriEnv({
      runtimes: { [HANDLER]: 'io.containerd.tern.v2' },
      runtimeOptions: { [HANDLER]: `  ConfigPath = ${JSON.stringify(cfgPath)}` },
      extraPath: [join(repoRoot(), 'build', 'bin')],
      clientTimeoutMs: 120_000,
    });
    pool = spawn(process.execPath, [tern, 'pool', 'serve', '--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (b: Buffer) => (poolOut = (poolOut + b.toString()).slice(-20_000));
    pool.stdout!.on('data', keep);
    pool.stderr!.on('data', keep);
    await until('the pool to be full', 300_000, async () => {
      if (pool!.exitCode !== null) throw new Error(`pool exited: ${poolOut}`);
      const s = await status();
      return s && s.ready.length === 1 ? true : undefined;
    });
  }, 400_000);

  afterAll(async () => {
    if (env) await removeAllPods(env.cri);
    if (pool && pool.exitCode === null && pool.signalCode === null) {
      const exited = new Promise((r) => pool!.once('exit', r));
      pool.kill('SIGTERM');
      const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 60_000).unref())]);
      if (late) pool.kill('SIGKILL');
      expect(late, `the pool did not exit within 60 s of SIGTERM: ${poolOut}`).toBe(false);
    }
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    if (cfgPath) rmSync(dirname(cfgPath), { recursive: true, force: true });
    expect(problems).toEqual([]);
    // The pool stopped: nothing of it, nor of the pods, may be left.
    if (env) await expectNoLeaks(outer, { scope: [env.c.dir, SCOPE_EXTRA], timeoutMs: 20_000 });
  });

  it('a pod whose VM came from the pool gets its tap through tern-tapfd and is reachable on its pod IP', async () => {
    const { cri, work, image, ns } = env!;
    const uid = randomUUID();
    const logDirectory = join(work, 'pods', `tern-test_pooled_${uid}`);
    mkdirSync(join(logDirectory, 'srv'), { recursive: true });
    const pod: PodSandboxConfig = podConfig({
      name: 'pooled',
      namespace: 'tern-test',
      uid,
      logDirectory,
      hostname: 'pooled-pod',
      cgroupParent: `/${cgroupRoot}/pod${uid}`,
    });
    const served = (await status())!.served;
    const podId = await cri.runPodSandbox(pod, HANDLER);
    expect((await status())!.served).toBe(served + 1);
    const podIp = (await cri.podSandboxStatus(podId)).status!.network!.ip;
    expect(podIp).toMatch(IN_SUBNET);
    const id = await cri.createContainer(
      podId,
      containerConfig({ name: 'srv', image, command: ['sh', '-c', 'mkdir -p /www && echo from-pool > /www/index.html && exec httpd -f -p 8080 -h /www'], pod }),
      pod,
    );
    await cri.startContainer(id);
    const fetched = await until('the pooled pod answering on its IP', 60_000, async () => {
      const r = await ns.run('busybox', ['wget', '-q', '-O', '-', `http://${podIp}:8080/`], { timeoutMs: 10_000 });
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(fetched).toBe('from-pool\n');
    const host = await cri.execSync(id, ['hostname'], 30);
    expect(host.stdout.toString()).toBe('pooled-pod\n');
    await cri.stopContainer(id, 2);
    await cri.removeContainer(id);
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
  }, 300_000);
});
