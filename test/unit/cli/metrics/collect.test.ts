// A whole scrape over the endpoint's unix socket, from a state directory
// made for the test: start events written by the shims' own writer (with a
// garbage line), a sandbox whose "shim" (a process named for it, and a real
// ttrpc server answering Task.Stats on the socket its sandbox.json names)
// answers, one whose shim hangs, one whose shim is dead, and a real warm
// pool socket (the pool's own server, no VMs). The text is parsed back.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetrics } from '../../../../src/cli/metrics-command';
import type { MetricsServer } from '../../../../src/cli/metrics/server';
import { CGROUPS_V1_METRICS_TYPE, emptyV2MemoryStat, v2ToV1Metrics } from '../../../../src/common/cgroup-metrics';
import { defaultConfig, type TernConfig } from '../../../../src/common/config';
import { silentLogger } from '../../../../src/common/logging';
import { anyPack, decode, encode } from '../../../../src/common/proto';
import { createDriver } from '../../../../src/hypervisor/index';
import { sandboxDir } from '../../../../src/shim/paths';
import { WarmPool } from '../../../../src/shim/pool/pool';
import { servePool } from '../../../../src/shim/pool/server';
import { EVENTS_FORMAT_VERSION, eventsPath, StartEventLog, type StartEvent } from '../../../../src/shim/metrics-events';
import { TtrpcServer } from '../../../../src/ttrpc/server';
import { parsePrometheusText, samples, value, type Family } from './prom-text';
import { httpGet } from './scrape-client';

let dir: string;
let cfg: TernConfig;
let metrics: MetricsServer;
let metricsSock: string;
const children: ChildProcess[] = [];
const servers: Array<() => Promise<void>> = [];
const problems: string[] = [];

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

/** A process standing for a sandbox's shim: alive, with the sandbox id on its command line. */
function standInShim(id: string): ChildProcess {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600_000)', id], { stdio: 'ignore' });
  children.push(c);
  return c;
}

function writeSandbox(id: string, rec: Record<string, unknown>, containers: string[]): void {
  const sb = sandboxDir(cfg.runtime.stateDir, 'tern-unit', id);
  mkdirSync(join(sb, 'vm'), { recursive: true });
  writeFileSync(join(sb, 'sandbox.json'), JSON.stringify({ namespace: 'tern-unit', id, vmDir: join(sb, 'vm'), createdAt: '2025-01-02T03:04:05.000Z', ...rec }));
  writeFileSync(join(sb, 'containers.json'), JSON.stringify(containers.map((c, i) => ({ id: c, pid: 10 + i, bundle: `/b/${c}` }))));
}

const base = { v: EVENTS_FORMAT_VERSION, at: '2025-01-01T00:00:00.000Z', namespace: 'tern-unit' } as const;
const started = (sandbox: string, path: 'pool' | 'template' | 'cold', s: [number, number, number]): StartEvent => ({
  ...base,
  sandbox,
  kind: 'start',
  path,
  phasesMs: { vm_ready: s[0] * 1000, container_created: s[1] * 1000, process_started: s[2] * 1000 },
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tern-scrape-'));
  cfg = defaultConfig();
  cfg.runtime.stateDir = join(dir, 'state');
  cfg.factory.templateDir = join(dir, 'templates');
  cfg.pool = { ...cfg.pool, size: 2, socket: join(dir, 'pool.sock'), dir: join(dir, 'pool') };

  // The shims' record: three starts, a fallback, a failure, and a garbage line.
  const log = new StartEventLog(eventsPath(cfg.runtime.stateDir), 1 << 20);
  log.append({ ...base, sandbox: 's1', kind: 'fallback', from: 'pool', reason: 'refused', detail: 'no ready VM in the pool (1 starting)' });
  log.append(started('s1', 'template', [3.2, 3.6, 3.7]));
  log.append(started('s2', 'pool', [1.8, 2.2, 2.4]));
  log.append(started('s3', 'cold', [14, 15, 15.5]));
  log.append({ ...base, sandbox: 's4', kind: 'failure', phase: 'vm_ready', reason: 'DeadlineExceeded', detail: 'guest agent did not answer' });
  appendFileSync(eventsPath(cfg.runtime.stateDir), 'garbage\n');

  // "live": its shim answers Task.Stats (v1 Metrics, as on a cgroup v1 host).
  const shimSock = join(dir, 'live-shim.sock');
  const shim = new TtrpcServer();
  shim.register('containerd.task.v2.Task', 'Stats', async (payload) => {
    const { id } = decode<{ id: string }>('containerd.task.v2.StatsRequest', payload);
    const v2 = {
      memory: { ...emptyV2MemoryStat(), usage: id === 'live' ? 50 << 20 : 10 << 20, inactive_file: 1 << 20, anon: 30 << 20 },
      cpu: { usage_usec: 3_000_000, user_usec: 2_000_000, system_usec: 1_000_000, nr_periods: 0, nr_throttled: 0, throttled_usec: 0 },
      pids: { current: 3, limit: 0 },
    };
    return encode('containerd.task.v2.StatsResponse', { stats: anyPack(CGROUPS_V1_METRICS_TYPE, CGROUPS_V1_METRICS_TYPE, v2ToV1Metrics(v2)) });
  });
  // ... and tern.shim.v1.Stats: the guest's pressure, and the "live" container's (cpu only).
  const psi = (avg10: number, total: number) => ({ avg10, avg60: 2, avg300: 1, total_usec: total });
  shim.register('tern.shim.v1.Stats', 'Pressure', async () =>
    encode('tern.shim.v1.PressureResponse', {
      guest: { cpu: { some: psi(40, 7_500_000), full: psi(0, 0) }, memory: { some: psi(0, 0), full: psi(0, 0) }, io: null },
      containers: [{ container_id: 'live', pressure: { cpu: { some: psi(90, 2_250_000), full: psi(10, 250_000) }, memory: null, io: null } }],
    }),
  );
  await shim.listen(shimSock);
  servers.push(() => shim.close());
  writeSandbox('live', { shimPid: standInShim('live').pid, startPath: 'template', shimSocket: `unix://${shimSock}` }, ['live', 'side']);

  // "hung": its shim reads and never answers.
  const hungSock = join(dir, 'hung-shim.sock');
  const hung: Server = createServer((s) => s.resume());
  await new Promise<void>((r) => hung.listen(hungSock, r));
  servers.push(() => new Promise<void>((r) => hung.close(() => r())));
  writeSandbox('hung', { shimPid: standInShim('hung').pid, startPath: 'pool', shimSocket: hungSock }, ['hung']);

  // "dead": its shim is gone.
  const gone = spawn('true');
  await exited(gone);
  writeSandbox('dead', { shimPid: gone.pid, shimSocket: join(dir, 'dead.sock') }, ['dead']);

  // The warm pool's own server, with no VMs started.
  const pool = new WarmPool(cfg, createDriver(cfg.hypervisor.driver, silentLogger), silentLogger);
  const poolServer = await servePool(pool, cfg.pool.socket, silentLogger);
  servers.push(() => new Promise<void>((r) => poolServer.close(() => r())));

  metricsSock = join(dir, 'metrics.sock');
  metrics = await startMetrics(cfg, { kind: 'unix', path: metricsSock }, (what, err) => problems.push(`${what}: ${String(err)}`));
});

afterAll(async () => {
  await metrics?.close();
  for (const close of servers) await close();
  for (const c of children) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) process.kill(c.pid, 'SIGKILL');
    await exited(c);
  }
  rmSync(dir, { recursive: true, force: true });
});

async function scrape(): Promise<Map<string, Family>> {
  const r = await httpGet({ socketPath: metricsSock });
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(r.body);
}

describe('a scrape', () => {
  let first: Map<string, Family>;
  let firstMs: number;

  beforeAll(async () => {
    const t0 = performance.now();
    first = await scrape();
    firstMs = performance.now() - t0;
  });

  it('lists every sandbox with its namespace, id and start path, and only tern_ metrics with HELP and TYPE', () => {
    expect(samples(first, 'tern_sandbox_info').map((s) => s.labels)).toEqual([
      { namespace: 'tern-unit', sandbox: 'dead', start_path: 'unknown' },
      { namespace: 'tern-unit', sandbox: 'hung', start_path: 'pool' },
      { namespace: 'tern-unit', sandbox: 'live', start_path: 'template' },
    ]);
    for (const f of first.values()) {
      expect(f.name).toMatch(/^tern_/);
      expect(f.help.length).toBeGreaterThan(10);
    }
    expect(value(first, 'tern_sandbox_start_time_seconds', { sandbox: 'live' })).toBe(Date.parse('2025-01-02T03:04:05.000Z') / 1000);
    expect(value(first, 'tern_sandbox_containers', { sandbox: 'live' })).toBe(2);
    expect(value(first, 'tern_sandbox_vm_memory_bytes', { sandbox: 'live' })).toBe(cfg.hypervisor.memoryMiB * 1024 * 1024);
  });

  it("has each container's guest stats from the shim that answered", () => {
    const l = { sandbox: 'live', start_path: 'template', namespace: 'tern-unit' };
    expect(value(first, 'tern_sandbox_stats_ok', { sandbox: 'live' })).toBe(1);
    expect(value(first, 'tern_guest_memory_usage_bytes', { ...l, container: 'live' })).toBe(50 << 20);
    expect(value(first, 'tern_guest_memory_usage_bytes', { ...l, container: 'side' })).toBe(10 << 20);
    expect(value(first, 'tern_guest_memory_working_set_bytes', { ...l, container: 'live' })).toBe(49 << 20);
    expect(value(first, 'tern_guest_memory_rss_bytes', { ...l, container: 'live' })).toBe(30 << 20);
    expect(value(first, 'tern_guest_cpu_seconds_total', { ...l, container: 'live', mode: 'user' })).toBeCloseTo(2);
    expect(value(first, 'tern_guest_cpu_seconds_total', { ...l, container: 'live', mode: 'system' })).toBeCloseTo(1);
    expect(value(first, 'tern_guest_pids', { ...l, container: 'side' })).toBe(3);
    expect(value(first, 'tern_guest_oom_kills_total', { ...l, container: 'side' })).toBe(0);
    // The stand-in shim is a live process: its PSS is read; there is no QEMU.
    expect(value(first, 'tern_host_pss_bytes', { sandbox: 'live', process: 'shim' })).toBeGreaterThan(1 << 20);
    expect(samples(first, 'tern_host_pss_bytes', { process: 'qemu' })).toEqual([]);
  });

  it("has the containers' and the whole guest's pressure: totals in seconds, averages as ratios by window", () => {
    const l = { namespace: 'tern-unit', sandbox: 'live', start_path: 'template' };
    const live = { ...l, container: 'live' };
    expect(samples(first, 'tern_guest_pressure_seconds_total').map((s) => [s.labels, s.value])).toEqual([
      [{ ...live, resource: 'cpu', kind: 'some' }, 2.25],
      [{ ...live, resource: 'cpu', kind: 'full' }, 0.25],
    ]);
    expect(samples(first, 'tern_guest_pressure_ratio').map((s) => [s.labels.kind, s.labels.window, s.value])).toEqual([
      ['some', '10s', 0.9],
      ['some', '60s', 0.02],
      ['some', '300s', 0.01],
      ['full', '10s', 0.1],
      ['full', '60s', 0.02],
      ['full', '300s', 0.01],
    ]);
    // The guest's files: no io.pressure, so no io series; nothing for the hung or the dead sandbox.
    expect(samples(first, 'tern_sandbox_pressure_seconds_total').map((s) => [s.labels, s.value])).toEqual([
      [{ ...l, resource: 'cpu', kind: 'some' }, 7.5],
      [{ ...l, resource: 'cpu', kind: 'full' }, 0],
      [{ ...l, resource: 'memory', kind: 'some' }, 0],
      [{ ...l, resource: 'memory', kind: 'full' }, 0],
    ]);
    expect(value(first, 'tern_sandbox_pressure_ratio', { ...l, resource: 'cpu', kind: 'some', window: '10s' })).toBe(0.4);
    expect(samples(first, 'tern_sandbox_pressure_ratio')).toHaveLength(12);
    expect(first.get('tern_guest_pressure_seconds_total')?.type).toBe('counter');
    expect(first.get('tern_sandbox_pressure_ratio')?.type).toBe('gauge');
  });

  it('skips the hung shim within its deadline and the dead one, counting only the hung one', () => {
    expect(firstMs).toBeLessThan(5_000);
    expect(value(first, 'tern_sandbox_stats_ok', { sandbox: 'hung' })).toBe(0);
    expect(value(first, 'tern_sandbox_stats_ok', { sandbox: 'dead' })).toBe(0);
    expect(samples(first, 'tern_guest_memory_usage_bytes', { sandbox: 'hung' })).toEqual([]);
    expect(value(first, 'tern_scrape_errors_total', { reason: 'shim_timeout' })).toBe(1);
    expect(value(first, 'tern_scrape_errors_total', { reason: 'shim_unreachable' })).toBe(0);
    expect(value(first, 'tern_scrape_errors_total', { reason: 'events_invalid_line' })).toBe(1);
    expect(problems.some((p) => p.startsWith('shim_timeout: sandbox tern-unit/hung'))).toBe(true);
  });

  it('counts starts by path in histograms by phase, fallbacks and failures by reason', () => {
    expect(first.get('tern_start_duration_seconds')!.type).toBe('histogram');
    expect(value(first, 'tern_starts_total', { start_path: 'template' })).toBe(1);
    expect(value(first, 'tern_start_duration_seconds_count', { start_path: 'pool', phase: 'process_started' })).toBe(1);
    expect(value(first, 'tern_start_duration_seconds_sum', { start_path: 'cold', phase: 'vm_ready' })).toBe(14);
    expect(value(first, 'tern_start_duration_seconds_bucket', { start_path: 'cold', phase: 'vm_ready', le: '10' })).toBe(0);
    expect(value(first, 'tern_start_duration_seconds_bucket', { start_path: 'cold', phase: 'vm_ready', le: '15' })).toBe(1);
    expect(value(first, 'tern_start_duration_seconds_bucket', { start_path: 'template', phase: 'container_created', le: '4' })).toBe(1);
    expect(value(first, 'tern_start_duration_seconds_bucket', { start_path: 'template', phase: 'container_created', le: '3' })).toBe(0);
    expect(value(first, 'tern_start_fallbacks_total', { from: 'pool', reason: 'refused' })).toBe(1);
    expect(value(first, 'tern_start_fallbacks_total', { from: 'template', reason: 'clone_failed' })).toBe(0);
    expect(value(first, 'tern_start_failures_total', { phase: 'vm_ready', reason: 'DeadlineExceeded' })).toBe(1);
  });

  it("has the pool's size and ready VMs from its socket, and the hit ratio from the starts", () => {
    expect(value(first, 'tern_pool_up')).toBe(1);
    expect(value(first, 'tern_pool_size')).toBe(2);
    expect(value(first, 'tern_pool_ready_vms')).toBe(0);
    expect(value(first, 'tern_pool_takes_total', { result: 'served' })).toBe(0);
    expect(value(first, 'tern_pool_hit_ratio')).toBeCloseTo(1 / 3);
  });

  it('adds only new events on the next scrape', async () => {
    new StartEventLog(eventsPath(cfg.runtime.stateDir), 1 << 20).append(started('s5', 'pool', [0.5, 0.8, 0.9]));
    const next = await scrape();
    expect(value(next, 'tern_starts_total', { start_path: 'pool' })).toBe(2);
    expect(value(next, 'tern_starts_total', { start_path: 'template' })).toBe(1);
    expect(value(next, 'tern_start_duration_seconds_bucket', { start_path: 'pool', phase: 'process_started', le: '1' })).toBe(1);
    expect(value(next, 'tern_pool_hit_ratio')).toBeCloseTo(2 / 4);
    expect(value(next, 'tern_scrape_errors_total', { reason: 'events_invalid_line' })).toBe(1);
    expect(value(next, 'tern_scrape_errors_total', { reason: 'shim_timeout' })).toBe(2);
  });
});
