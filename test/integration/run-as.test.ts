// QEMU as an unprivileged user (hypervisor.run_as = "nobody"), through CRI
// as a kubelet drives it: the template is built by a QEMU running as nobody
// (its state written through a descriptor tern opened), the pod's VM is a
// clone restored the same way, its tap (owned by nobody) is opened by name
// after the drop, and its volumes are served by QEMU's 9p server with
// nobody's rights only: the guest's root cannot read a host file only root
// may read. All traffic stays inside the network namespace the harness creates.
import { chmodSync, chownSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/common/logging';
import { TemplateStore } from '../../src/shim/templates/store';
import { tern } from './harness/tern-cli.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { cniResultsLeft, removeAllPods, removeCgroupTree, startCriEnv, stopCriEnv, until, type CriEnv } from './harness/cri-env.js';
import { containerConfig, podConfig, type Mount } from '../cri';

const HANDLER = 'tern-nobody';
const NOBODY = 65534;
const IN_SUBNET = /^10\.88\.77\.(\d+)$/;
const SCOPE_EXTRA = '/run/tern';

/** The pid of the QEMU running sandbox `id` (its argv has `-name tern-<id>[,options]`). */
function qemuOf(id: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!/qemu-system/.test(argv[0] ?? '')) continue;
    const at = argv.indexOf('-name');
    if (at >= 0 && argv[at + 1]?.split(',')[0] === `tern-${id}`) return Number(entry);
  }
  return undefined;
}

function statusField(pid: number, name: string): string {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
}

describe('QEMU as an unprivileged user (hypervisor.run_as)', () => {
  let outer: Snapshot;
  let env: CriEnv | undefined;
  let cfgDir = '';
  let store: TemplateStore | undefined;
  const cgroupRoot = `tern-run-as-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    outer = await snapshot({ scope: [] });
    // The config path must exist when containerd reads it. Its own template
    // directory, so that this run builds a template with QEMU as nobody.
    cfgDir = join('/run', `tern-run-as-${randomBytes(3).toString('hex')}`);
    mkdirSync(cfgDir, { recursive: true });
    const templateDir = join(cfgDir, 'templates');
    writeFileSync(
      join(cfgDir, 'tern.toml'),
      ['[hypervisor]', 'run_as = "nobody"', '[factory]', `template_dir = ${JSON.stringify(templateDir)}`, ''].join('\n'),
    );
    store = new TemplateStore(templateDir, createLogger({ name: 'test', level: 'silent' }));
    env = await startCriEnv({
      runtimes: { [HANDLER]: 'io.containerd.tern.v2' },
      runtimeOptions: { [HANDLER]: `  ConfigPath = ${JSON.stringify(join(cfgDir, 'tern.toml'))}` },
      extraPath: [join(repoRoot(), 'build', 'bin')],
      clientTimeoutMs: 300_000,
    });
  }, 300_000);

  afterAll(async () => {
    if (env) await removeAllPods(env.cri);
    await store?.destroyAll();
    const problems = await stopCriEnv(env ?? {}, cgroupRoot);
    if (cfgDir) rmSync(cfgDir, { recursive: true, force: true });
    expect(problems).toEqual([]);
    expect(cniResultsLeft()).toEqual([]);
    if (env) await expectNoLeaks(outer, { scope: [env.c.dir, SCOPE_EXTRA], timeoutMs: 20_000 });
  });

  it('runs the pod with QEMU as nobody: no capabilities, network and volumes work, root-only host files stay out of reach', async () => {
    const { cri, work, image, ns } = env!;
    const uid = randomUUID();
    const logDirectory = join(work, 'pods', `tern-test_nobody_${uid}`);
    mkdirSync(join(logDirectory, 'srv'), { recursive: true });
    const pod = podConfig({ name: 'nobody', namespace: 'tern-test', uid, logDirectory, hostname: 'nobody-pod', cgroupParent: `/${cgroupRoot}/pod${uid}` });

    // A volume with a public file, a file only root may read, and a directory nobody owns.
    const vol = join(work, 'vol-nobody');
    mkdirSync(join(vol, 'drop'), { recursive: true });
    writeFileSync(join(vol, 'public.txt'), 'for-everyone\n', { mode: 0o644 });
    writeFileSync(join(vol, 'root-only.txt'), 'host-secret\n', { mode: 0o600 });
    chmodSync(join(vol, 'root-only.txt'), 0o600);
    chownSync(join(vol, 'drop'), NOBODY, NOBODY);

    const podId = await cri.runPodSandbox(pod, HANDLER);
    const podIp = (await cri.podSandboxStatus(podId)).status!.network!.ip;
    expect(podIp).toMatch(IN_SUBNET);
    const id = await cri.createContainer(
      podId,
      containerConfig({
        name: 'srv',
        image,
        command: ['sh', '-c', 'mkdir -p /www && echo as-nobody > /www/index.html && exec httpd -f -p 8080 -h /www'],
        pod,
        mounts: [{ container_path: '/vol', host_path: vol, readonly: false } as Mount],
      }),
      pod,
    );
    await cri.startContainer(id);

    // The VM's QEMU dropped to nobody and kept no capability.
    const pid = qemuOf(podId);
    expect(pid, 'QEMU of the pod').toBeDefined();
    expect(statusField(pid!, 'Uid').split(/\s+/)).toEqual([`${NOBODY}`, `${NOBODY}`, `${NOBODY}`, `${NOBODY}`]);
    expect(statusField(pid!, 'Gid').split(/\s+/)).toEqual([`${NOBODY}`, `${NOBODY}`, `${NOBODY}`, `${NOBODY}`]);
    expect(statusField(pid!, 'CapEff')).toBe('0000000000000000');
    expect(statusField(pid!, 'NoNewPrivs')).toBe('1');
    expect(statusField(pid!, 'Seccomp')).toBe('2');
    // A clone of the template that QEMU-as-nobody built (not a cold boot).
    const templates = store!.status();
    expect(
      templates.map((t) => t.state),
      JSON.stringify(templates),
    ).toEqual(['ready']);
    const listed = JSON.parse((await tern(['sandboxes', '--json'])).stdout) as Array<{ id: string; dir: string; startPath: string }>;
    const sb = listed.find((x) => x.id === podId);
    expect(sb?.startPath, 'start path (the shim log says why a clone failed)').toBe('template');
    // Others may pass through the sandbox directory (to the 9p share) but not into the VM's (sockets, console).
    expect(statSync(sb!.dir).mode & 0o777).toBe(0o711);
    expect(statSync(join(sb!.dir, 'vm')).mode & 0o777).toBe(0o700);

    // Its NIC (a tap nobody owns, opened by the clone after the drop) carries the pod's traffic.
    const fetched = await until('the pod answering on its IP', 60_000, async () => {
      const r = await ns.run('busybox', ['wget', '-q', '-O', '-', `http://${podIp}:8080/`], { timeoutMs: 10_000 });
      return r.code === 0 ? r.stdout : undefined;
    });
    expect(fetched).toBe('as-nobody\n');

    // The volume, as QEMU's 9p server sees it with nobody's rights.
    const exec = async (cmd: string) => {
      const r = await cri.execSync(id, ['sh', '-c', cmd], 30);
      return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), exitCode: r.exitCode };
    };
    expect(await exec('id -u')).toMatchObject({ stdout: '0\n', exitCode: 0 });
    expect(await exec('cat /vol/public.txt')).toMatchObject({ stdout: 'for-everyone\n', exitCode: 0 });
    const secret = await exec('cat /vol/root-only.txt');
    expect(secret.exitCode).not.toBe(0);
    expect(secret.stdout).toBe('');
    expect(secret.stderr).toMatch(/Permission denied/);
    expect(await exec('echo from-guest > /vol/drop/note')).toMatchObject({ exitCode: 0 });
    expect(readFileSync(join(vol, 'drop', 'note'), 'utf8')).toBe('from-guest\n');
    expect(statSync(join(vol, 'drop', 'note')).uid).toBe(NOBODY);
    const intoRootDir = await exec('echo x > /vol/planted');
    expect(intoRootDir.exitCode).not.toBe(0);
    expect(intoRootDir.stderr).toMatch(/Permission denied/);

    await cri.stopContainer(id, 2);
    await cri.removeContainer(id);
    await cri.stopPodSandbox(podId);
    await cri.removePodSandbox(podId);
    expect(removeCgroupTree(cgroupRoot)).toEqual([]);
    // What is left is checked after the template built here is removed (afterAll).
    rmSync(vol, { recursive: true, force: true });
  }, 400_000);
});
