// Faults with the real containerd and QEMU: the hypervisor or the shim killed
// with SIGKILL while a container runs. The container's exit is reported,
// containerd stays consistent, and nothing of tern is left behind.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot, type Snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';
import { readPid, waitFor, waitGone } from './harness/wait.js';
import { hierarchies, parseProcCgroup } from '../../src/shim/host-cgroup';
import { TemplateStore } from '../../src/shim/templates/store';
import { silentLogger } from '../../src/common/logging';
import { QmpClient } from '../../src/hypervisor/qemu/qmp';

const RUNTIME = 'io.containerd.tern.v2';
const STATE_DIR = '/run/tern';

/** The sandbox record and QEMU pid tern keeps on disk for a sandbox id. */
function sandboxOnDisk(id: string): { shimPid: number; qemuPid: number; vmDir: string } {
  const root = join(STATE_DIR, 'sb');
  for (const h of readdirSync(root)) {
    try {
      const rec = JSON.parse(readFileSync(join(root, h, 'sandbox.json'), 'utf8')) as { id: string; shimPid: number; vmDir?: string };
      if (rec.id !== id) continue;
      const vmDir = rec.vmDir || join(root, h, 'vm');
      const qemuPid = readPid(join(vmDir, 'qemu.pid'));
      if (qemuPid === undefined) continue;
      return { shimPid: rec.shimPid, qemuPid, vmDir };
    } catch {
      /* another sandbox, or not written yet */
    }
  }
  throw new Error(`no tern sandbox ${id} under ${root}`);
}

describe('faults', () => {
  let c: Containerd;
  let image: string;
  let before: Snapshot;

  const taskStatus = async (name: string) => {
    const ls = await c.ctr(['task', 'ls']);
    const line = ls.stdout.split('\n').find((l) => l.split(/\s+/)[0] === name);
    return line?.split(/\s+/)[2];
  };

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
  });
  afterAll(async () => {
    await c?.stop();
  });
  beforeEach(async () => {
    before = await snapshot({ scope: [c.dir, STATE_DIR] });
  });
  afterEach(async () => {
    await expectNoLeaks(before, { scope: [c.dir, STATE_DIR], timeoutMs: 20_000 });
  });

  it('QEMU killed with SIGKILL: the task exits 137 and the shim tears the rest down', async () => {
    const name = 'fault-qemu';
    const child = spawn('ctr', ['--address', c.address, '-n', c.namespace, 'run', '--rm', '--runtime', RUNTIME, image, name, 'sleep', '1000'], {
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await waitFor('task running', async () => ((await taskStatus(name)) === 'RUNNING' ? true : undefined));
      const { qemuPid, shimPid } = sandboxOnDisk(name);
      // QEMU lives in the pod's host cgroup, in every hierarchy tern uses; the shim, which serves other pods too, does not.
      const qemuWhere = parseProcCgroup(readFileSync(`/proc/${qemuPid}/cgroup`, 'utf8'));
      const shimWhere = parseProcCgroup(readFileSync(`/proc/${shimPid}/cgroup`, 'utf8'));
      for (const h of hierarchies()) {
        expect(qemuWhere.get(h.key)).toMatch(/\/tern\/[0-9a-f]{20}$/);
        expect(shimWhere.get(h.key)).not.toMatch(/\/tern\//);
      }
      process.kill(qemuPid, 'SIGKILL');
      expect(await exited).toBe(137);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('the guest hung (its VM paused under the shim): the health check reports the task exited 137 and stops the VM', async () => {
    const name = 'fault-hung';
    const cfg = join(c.dir, 'tern-health.toml');
    writeFileSync(cfg, '[agent]\nhealth_interval_ms = 1000\nhealth_timeout_ms = 1000\nhealth_failures = 2\n');
    const r = await c.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, '--runtime-config-path', cfg, image, name, 'sleep', '1000'], {
      timeoutMs: 150_000,
    });
    expect(r.code).toBe(0);
    await waitFor('task running', async () => ((await taskStatus(name)) === 'RUNNING' ? true : undefined));
    const { qemuPid, vmDir } = sandboxOnDisk(name);
    // The clone's second QMP monitor (the shim holds the first): freeze the whole guest.
    const qmp = await QmpClient.connect(join(vmDir, 'qmp-fd.sock'), 10_000);
    try {
      await qmp.execute('stop');
    } finally {
      qmp.close();
    }
    // Noticed within a bound: 2 checks of 1 s each, 1 s apart, well inside this deadline.
    await waitFor('task stopped', async () => ((await taskStatus(name)) === 'STOPPED' ? true : undefined), 60_000);
    await waitGone('QEMU gone', qemuPid);
    const del = await c.ctr(['task', 'delete', name]);
    expect(del.stdout + del.stderr).toMatch(/137/);
    expect(c.readLog()).toMatch(/guest agent did not answer 2 health checks in a row/);
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
  });

  it('shim killed with SIGKILL: containerd runs delete, which removes the VM from what is on disk', async () => {
    const name = 'fault-shim';
    // --null-io: ctr itself would leave its client FIFO directory behind once the task vanishes under it.
    const r = await c.ctr(['run', '-d', '--null-io', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
    expect(r.code).toBe(0);
    await waitFor('task running', async () => ((await taskStatus(name)) === 'RUNNING' ? true : undefined));
    const { shimPid, qemuPid } = sandboxOnDisk(name);
    process.kill(shimPid, 'SIGKILL');
    // containerd notices the dead shim and runs `containerd-shim-tern-v2 delete`.
    await waitGone('QEMU gone', qemuPid);
    await waitFor('task stopped or gone', async () => {
      const s = await taskStatus(name);
      return s === undefined || s === 'STOPPED' ? true : undefined;
    });
    await c.ctr(['task', 'rm', '-f', name]);
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });
  });

  it('shim killed while it builds a VM template: delete stops the template VM and removes the build', async () => {
    const name = 'fault-build';
    // A store of the test's own, empty: this start has to build the template.
    const store = new TemplateStore(join(c.dir, 'templates-fault'), silentLogger);
    const cfg = join(c.dir, 'tern-fault.toml');
    writeFileSync(cfg, `[factory]\ntemplate = true\ntemplate_dir = ${JSON.stringify(store.dir)}\n`);
    const child = spawn(
      'ctr',
      ['--address', c.address, '-n', c.namespace, 'run', '-d', '--null-io', '--runtime', RUNTIME, '--runtime-config-path', cfg, image, name, 'sleep', '1000'],
      { stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const build = await waitFor('a template build with its QEMU running', () => {
        const b = existsSync(store.dir) ? readdirSync(store.dir).find((n) => n.startsWith('.build-')) : undefined;
        const qemuPid = b ? readPid(join(store.dir, b, 'vm', 'qemu.pid')) : undefined;
        return qemuPid === undefined ? undefined : { dir: join(store.dir, b!), qemuPid };
      });
      const shimPid = await waitFor('the sandbox record', () => {
        for (const h of readdirSync(join(STATE_DIR, 'sb'))) {
          try {
            const rec = JSON.parse(readFileSync(join(STATE_DIR, 'sb', h, 'sandbox.json'), 'utf8')) as { id: string; shimPid: number };
            if (rec.id === name) return rec.shimPid;
          } catch {
            /* not this one, or not written yet */
          }
        }
        return undefined;
      });
      process.kill(shimPid, 'SIGKILL');
      expect(await exited).not.toBe(0);
      await waitGone('template QEMU gone', build.qemuPid);
      await waitFor('build directory removed', () => (existsSync(build.dir) ? undefined : true));
      expect(existsSync(store.lockPath)).toBe(false);
      await c.ctr(['task', 'rm', '-f', name]);
      await c.ctr(['container', 'rm', name]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await store.destroyAll();
    }
  });
});
