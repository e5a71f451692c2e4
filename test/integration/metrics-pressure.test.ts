// Pressure stall information through `tern metrics serve` (the built
// dist/tern.js) while a real tern container runs under a private containerd:
// a busy loop held to a tenth of a CPU (cpu.max 10000 100000 in its guest
// cgroup) is runnable most of the time but may not run, so its cgroup's
// cpu.pressure `some` total is non-zero and grows between two scrapes, and
// its 10 s average shows the stall; its memory and io pressure are there too,
// and so is the whole guest's /proc/pressure for the sandbox. Once the
// container is removed its series are gone, and nothing is left behind.
// Then a container that presses against a 32 MiB memory limit (reclaim,
// OOM kill, again) shows a growing memory pressure total.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePrometheusText, samples, value, type Family } from '../unit/cli/metrics/prom-text';
import { httpGet } from '../unit/cli/metrics/scrape-client';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { binDir, ensureBuilt, ternEnv as env, ternJs, waitForTask } from './harness/tern-cli.js';
import { alive, waitFor, waitGone } from './harness/wait.js';

const RUNTIME = 'io.containerd.tern.v2';
const RESOURCES = ['cpu', 'memory', 'io'];
const WINDOWS = ['10s', '60s', '300s'];

let tmp: string;
let metricsSock: string;
let server: ChildProcess | undefined;
let serverOutput = '';

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'tern-pressure-it-'));
  metricsSock = join(tmp, 'metrics.sock');
});

afterAll(async () => {
  if (server?.pid !== undefined && alive(server.pid)) {
    process.kill(server.pid, 'SIGKILL');
    await waitGone('tern metrics serve', server.pid, 10_000);
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function scrape(): Promise<Map<string, Family>> {
  const r = await httpGet({ socketPath: metricsSock }, '/metrics', 'GET', 30_000);
  expect(r.status, r.body).toBe(200);
  return parsePrometheusText(r.body);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('pressure in tern metrics with a CPU-starved tern container', () => {
  let c: Containerd | undefined;
  const name = `tern-pressure-${process.pid}`;
  let image: string;

  afterAll(async () => {
    await c?.stop();
  });

  it("shows the container's growing cpu pressure and the whole guest's pressure, and forgets them once it is removed", async () => {
    c = await startContainerd({ extraPath: [binDir] });
    image = await importTestImage(c);
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });

    server = spawn(process.execPath, [ternJs, 'metrics', 'serve', '--listen', `unix:${metricsSock}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.setEncoding('utf8').on('data', (d: string) => (serverOutput += d));
    server.stderr!.setEncoding('utf8').on('data', (d: string) => (serverOutput += d));
    await waitFor(`tern metrics serve on ${metricsSock} (output: ${serverOutput})`, () => (existsSync(metricsSock) ? true : undefined), 30_000);

    const started = await c.ctr(
      ['run', '-d', '--runtime', RUNTIME, '--cpu-quota', '10000', '--cpu-period', '100000', image, name, 'sh', '-c', 'while :; do :; done'],
      { timeoutMs: 150_000 },
    );
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    await waitForTask(c, name, 'RUNNING');

    const labels = { namespace: c.namespace, sandbox: name };
    const cpuSome = { ...labels, container: name, resource: 'cpu', kind: 'some' };
    // The loop wants a whole CPU and gets a tenth: it stalls ~90% of the time.
    const first = await waitFor(
      'cpu pressure of the starved container above 0',
      async () => {
        const f = await scrape();
        return (samples(f, 'tern_guest_pressure_seconds_total', cpuSome)[0]?.value ?? 0) > 0 ? f : undefined;
      },
      60_000,
    );
    expect(value(first, 'tern_sandbox_stats_ok', labels)).toBe(1);
    const t1 = value(first, 'tern_guest_pressure_seconds_total', cpuSome);

    // The kernel's averages are updated every 2 s; 10 s of a 90% stall lifts avg10 well above 10%.
    await sleep(10_000);
    const second = await waitFor(
      "the container's cpu avg10 above 0.1",
      async () => {
        const f = await scrape();
        return (samples(f, 'tern_guest_pressure_ratio', { ...cpuSome, window: '10s' })[0]?.value ?? 0) > 0.1 ? f : undefined;
      },
      60_000,
    );
    const t2 = value(second, 'tern_guest_pressure_seconds_total', cpuSome);
    // At least 10 s passed at ~0.9 s of stall per second; a loaded TCG host runs the guest slower, so ask for 2 s.
    expect(t2, `cpu some total ${t1} -> ${t2}`).toBeGreaterThan(t1 + 2);
    for (const w of WINDOWS) {
      const r = value(second, 'tern_guest_pressure_ratio', { ...cpuSome, window: w });
      expect(r, w).toBeGreaterThan(0);
      expect(r, w).toBeLessThanOrEqual(1);
    }

    // Every resource of the container and of the whole guest is reported, some and full, with each window.
    for (const resource of RESOURCES) {
      for (const kind of ['some', 'full']) {
        const cl = { ...labels, container: name, resource, kind };
        expect(value(second, 'tern_guest_pressure_seconds_total', cl), `container ${resource} ${kind}`).toBeGreaterThanOrEqual(0);
        const vl = { ...labels, resource, kind };
        expect(value(second, 'tern_sandbox_pressure_seconds_total', vl), `guest ${resource} ${kind}`).toBeGreaterThanOrEqual(0);
        for (const window of WINDOWS) {
          expect(samples(second, 'tern_guest_pressure_ratio', { ...cl, window }), `container ${resource} ${kind} ${window}`).toHaveLength(1);
          expect(samples(second, 'tern_sandbox_pressure_ratio', { ...vl, window }), `guest ${resource} ${kind} ${window}`).toHaveLength(1);
        }
      }
    }
    // The whole-guest series carry the sandbox's labels only.
    for (const s of samples(second, 'tern_sandbox_pressure_seconds_total', labels)) {
      expect(Object.keys(s.labels).sort()).toEqual(['kind', 'namespace', 'resource', 'sandbox', 'start_path']);
    }
    // The guest's cpu some total includes the container's stall (the loop is the guest's only busy task).
    expect(value(second, 'tern_sandbox_pressure_seconds_total', { ...labels, resource: 'cpu', kind: 'some' })).toBeGreaterThan(0);

    expect(await c.ctr(['task', 'kill', '-s', 'SIGKILL', name])).toMatchObject({ code: 0 });
    await waitForTask(c, name, 'STOPPED');
    expect(await c.ctr(['task', 'rm', name])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });

    await waitFor(
      'the pressure series gone from the metrics',
      async () => {
        const after = await scrape();
        const left = samples(after, 'tern_guest_pressure_seconds_total', labels).length + samples(after, 'tern_sandbox_pressure_seconds_total', labels).length;
        return left === 0 ? true : undefined;
      },
      30_000,
    );

    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
  });

  it('shows a growing memory pressure total for a container that presses against its memory limit', async () => {
    const before = await snapshot({ scope: [c!.dir, '/run/tern'] });
    const mem = `${name}-mem`;
    // awk doubles a string until the 32 MiB limit stops it: the kernel reclaims (a memory stall), then OOM-kills awk; again and again.
    const started = await c!.ctr(
      [
        'run',
        '-d',
        '--runtime',
        RUNTIME,
        '--memory-limit',
        String(32 << 20),
        image,
        mem,
        'sh',
        '-c',
        `while :; do awk 'BEGIN { s = "x"; while (1) s = s s }'; done`,
      ],
      { timeoutMs: 150_000 },
    );
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    await waitForTask(c!, mem, 'RUNNING');

    const memSome = { namespace: c!.namespace, sandbox: mem, container: mem, resource: 'memory', kind: 'some' };
    const total = (f: Map<string, Family>) => samples(f, 'tern_guest_pressure_seconds_total', memSome)[0]?.value ?? 0;
    const first = await waitFor(
      'memory pressure of the pressing container above 0',
      async () => {
        const f = await scrape();
        return total(f) > 0 ? f : undefined;
      },
      90_000,
    );
    const second = await waitFor(
      'memory pressure of the pressing container growing',
      async () => {
        await sleep(2_000);
        const f = await scrape();
        return total(f) > total(first) ? f : undefined;
      },
      90_000,
    );
    expect(value(second, 'tern_guest_oom_kills_total', { sandbox: mem, container: mem })).toBeGreaterThan(0);
    // The whole guest stalled on memory too (read a moment apart from the cgroup's file, so not compared with it).
    expect(value(second, 'tern_sandbox_pressure_seconds_total', { sandbox: mem, resource: 'memory', kind: 'some' })).toBeGreaterThan(0);

    expect(await c!.ctr(['task', 'kill', '-s', 'SIGKILL', mem])).toMatchObject({ code: 0 });
    await waitForTask(c!, mem, 'STOPPED');
    expect(await c!.ctr(['task', 'rm', mem])).toMatchObject({ code: 0 });
    expect(await c!.ctr(['container', 'rm', mem])).toMatchObject({ code: 0 });

    process.kill(server!.pid!, 'SIGTERM');
    await waitGone('tern metrics serve', server!.pid!, 10_000);
    expect(existsSync(metricsSock), serverOutput).toBe(false);
    await expectNoLeaks(before, { scope: [c!.dir, '/run/tern'], timeoutMs: 15_000 });
  });
});
