// `tern metrics serve` (the built dist/tern.js) on this host, scraped over
// its unix socket while a real tern container runs under a private
// containerd: the sandbox appears with its id and start path, its start was
// recorded by the shim and counted in the histogram under that path, QEMU's
// and the shim's host PSS and the guest's memory are there; once the
// container is removed it is gone, and nothing is left behind.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/common/config';
import { eventsPath, parseEvent, rotatedPath, type StartEvent } from '../../src/shim/metrics-events';
import { parsePrometheusText, samples, value, type Family } from '../unit/cli/metrics/prom-text';
import { httpGet } from '../unit/cli/metrics/scrape-client';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { binDir, ensureBuilt, tern, ternEnv as env, ternJs, waitForTask } from './harness/tern-cli.js';
import { alive, waitFor, waitGone } from './harness/wait.js';

const RUNTIME = 'io.containerd.tern.v2';

let tmp: string;
let metricsSock: string;
let server: ChildProcess | undefined;
let serverOutput = '';

beforeAll(async () => {
  await ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'tern-metrics-it-'));
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
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(r.body);
}

/** A histogram count, 0 when the series is not there. */
function count(f: Map<string, Family>, path: string, phase: string): number {
  return samples(f, 'tern_start_duration_seconds_count', { start_path: path, phase })[0]?.value ?? 0;
}

/** The shims' start events for one sandbox, from the events file and its rotated predecessor. */
function startEventsOf(namespace: string, sandbox: string): StartEvent[] {
  const path = eventsPath(defaultConfig().runtime.stateDir);
  const out: StartEvent[] = [];
  for (const p of [rotatedPath(path), path]) {
    if (!existsSync(p)) continue;
    for (const line of readFileSync(p, 'utf8').split('\n')) {
      const e = parseEvent(line);
      if (e && e.namespace === namespace && e.sandbox === sandbox) out.push(e);
    }
  }
  return out;
}

describe('tern metrics serve with a running tern container', () => {
  let c: Containerd | undefined;
  const name = `tern-metrics-${process.pid}`;

  afterAll(async () => {
    await c?.stop();
  });

  it('refuses a non-loopback address', async () => {
    const r = await tern(['metrics', 'serve', '--listen', '0.0.0.0:9464']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/is not a loopback address/);
  });

  it('reports the sandbox, its start, its host PSS and guest memory, and forgets it once removed', async () => {
    c = await startContainerd({ extraPath: [binDir] });
    const image = await importTestImage(c);
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });

    server = spawn(process.execPath, [ternJs, 'metrics', 'serve', '--listen', `unix:${metricsSock}`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.setEncoding('utf8').on('data', (d: string) => (serverOutput += d));
    server.stderr!.setEncoding('utf8').on('data', (d: string) => (serverOutput += d));
    await waitFor(`tern metrics serve on ${metricsSock} (output: ${serverOutput})`, () => (existsSync(metricsSock) ? true : undefined), 30_000);

    const baseline = await scrape();
    expect(samples(baseline, 'tern_sandbox_info', { namespace: c.namespace, sandbox: name })).toEqual([]);

    const started = await c.ctr(['run', '-d', '--runtime', RUNTIME, image, name, 'sleep', '1000'], { timeoutMs: 150_000 });
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    await waitForTask(c, name, 'RUNNING');

    // How the VM came up, as the shim recorded it.
    const ls = JSON.parse((await tern(['sandboxes', '--json'])).stdout) as Array<{ namespace: string; id: string; startPath: string | null }>;
    const path = ls.find((s) => s.namespace === c!.namespace && s.id === name)?.startPath;
    expect(['pool', 'template', 'cold']).toContain(path);
    const events = startEventsOf(c.namespace, name);
    const start = events.find((e) => e.kind === 'start');
    expect(start, JSON.stringify(events)).toMatchObject({ kind: 'start', path });
    if (start?.kind === 'start') {
      expect(start.phasesMs.vm_ready).toBeGreaterThan(0);
      expect(start.phasesMs.container_created).toBeGreaterThanOrEqual(start.phasesMs.vm_ready);
      expect(start.phasesMs.process_started).toBeGreaterThanOrEqual(start.phasesMs.container_created);
    }

    const f = await scrape();
    const labels = { namespace: c.namespace, sandbox: name };
    expect(samples(f, 'tern_sandbox_info', labels).map((s) => s.labels)).toEqual([{ ...labels, start_path: path }]);
    // This start is counted under its path, in every phase (other tern work on the host may add more).
    for (const phase of ['vm_ready', 'container_created', 'process_started']) {
      expect(count(f, path!, phase), phase).toBeGreaterThanOrEqual(count(baseline, path!, phase) + 1);
    }
    expect(value(f, 'tern_starts_total', { start_path: path! })).toBeGreaterThanOrEqual(value(baseline, 'tern_starts_total', { start_path: path! }) + 1);
    expect(value(f, 'tern_sandbox_stats_ok', labels)).toBe(1);
    // A booted guest under TCG: tens of MiB of host memory for QEMU; the shim is a Node process.
    expect(value(f, 'tern_host_pss_bytes', { ...labels, process: 'qemu' })).toBeGreaterThan(20 << 20);
    expect(value(f, 'tern_host_pss_bytes', { ...labels, process: 'shim' })).toBeGreaterThan(1 << 20);
    expect(value(f, 'tern_guest_memory_usage_bytes', { ...labels, container: name })).toBeGreaterThan(0);
    expect(value(f, 'tern_guest_pids', { ...labels, container: name })).toBeGreaterThanOrEqual(1);
    expect(value(f, 'tern_sandbox_vm_memory_bytes', labels)).toBe(defaultConfig().hypervisor.memoryMiB * 1024 * 1024);

    expect(await c.ctr(['task', 'kill', '-s', 'SIGKILL', name])).toMatchObject({ code: 0 });
    await waitForTask(c, name, 'STOPPED');
    expect(await c.ctr(['task', 'rm', name])).toMatchObject({ code: 0 });
    expect(await c.ctr(['container', 'rm', name])).toMatchObject({ code: 0 });

    await waitFor(
      'the sandbox gone from the metrics',
      async () => {
        const after = await scrape();
        return samples(after, 'tern_sandbox_info', labels).length === 0 ? true : undefined;
      },
      30_000,
    );

    // The endpoint stops on SIGTERM and removes its socket.
    process.kill(server.pid!, 'SIGTERM');
    await waitGone('tern metrics serve', server.pid!, 10_000);
    expect(existsSync(metricsSock), serverOutput).toBe(false);
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 15_000 });
  });
});
