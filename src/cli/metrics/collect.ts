// One scrape of `tern metrics serve`: every tern sandbox on the node as
// `tern sandboxes` sees it (sandbox-info.ts: sandbox.json, live pids, host
// PSS), its containers' guest stats and the guest's and containers' pressure
// (PSI) asked from its shim (shim-stats.ts, all shims at once, each under a
// deadline), the start events appended since the
// last scrape (events-tail.ts -> start-stats.ts), and the warm pool's status
// when its socket is there. Rendered in the Prometheus text format.
import { existsSync } from 'node:fs';
import type { TernConfig } from '../../common/config';
import { messageOf } from '../../common/errors';
import { poolRequest } from '../../shim/pool/client';
import type { PoolStatus } from '../../shim/pool/protocol';
import { eventsPath, FALLBACK_REASONS, START_PATHS, START_PHASES, type FallbackFrom } from '../../shim/metrics-events';
import { listSandboxes, type SandboxView } from '../sandbox-info';
import { EventsTail } from './events-tail';
import { Exposition, type Labels, type MetricFamily } from './exposition';
import type { PressureSample } from './guest-pressure';
import { shimStats, type ShimStats } from './shim-stats';
import { StartStats } from './start-stats';

export const SCRAPE_ERROR_REASONS = [
  'shim_timeout',
  'shim_unreachable',
  'stats_failed',
  'stats_undecodable',
  'pool_unreachable',
  'pool_bad_reply',
  'events_unreadable',
  'events_invalid_line',
] as const;
export type ScrapeErrorReason = (typeof SCRAPE_ERROR_REASONS)[number];

export interface CollectorOptions {
  /** Deadline of one shim's answers (connect and every Stats call). */
  shimTimeoutMs?: number;
  /** Deadline of the pool's status answer. */
  poolTimeoutMs?: number;
  /** Called with what went wrong in a scrape (the server logs it). */
  onError?: (reason: ScrapeErrorReason, message: string) => void;
}

export const DEFAULT_SHIM_TIMEOUT_MS = 2_000;
export const DEFAULT_POOL_TIMEOUT_MS = 1_000;

type PoolAnswer = { up: true; status: PoolStatus } | { up: false };

const KIB = 1024;
const MIB = 1024 * 1024;

function isPoolStatus(v: unknown): v is PoolStatus {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return s.ok === true && Array.isArray(s.ready) && ['size', 'starting', 'served', 'missed', 'failures'].every((k) => typeof s[k] === 'number');
}

/** A PSI total counter and its running averages (a `window` label each) for every resource and kind the guest reported. */
function setPressure(f: { total: MetricFamily; ratio: MetricFamily }, labels: Labels, samples: readonly PressureSample[]): void {
  for (const p of samples) {
    const l = { ...labels, resource: p.resource, kind: p.kind };
    f.total.set(l, p.totalSeconds);
    for (const [window, ratio] of Object.entries(p.ratios)) f.ratio.set({ ...l, window }, ratio);
  }
}

export class Collector {
  private readonly tail: EventsTail;
  private readonly starts = new StartStats();
  private readonly errors = new Map<ScrapeErrorReason, number>(SCRAPE_ERROR_REASONS.map((r) => [r, 0]));
  private readonly shimTimeoutMs: number;
  private readonly poolTimeoutMs: number;

  constructor(
    private readonly cfg: TernConfig,
    private readonly opts: CollectorOptions = {},
  ) {
    this.tail = new EventsTail(eventsPath(cfg.runtime.stateDir));
    this.shimTimeoutMs = opts.shimTimeoutMs ?? DEFAULT_SHIM_TIMEOUT_MS;
    this.poolTimeoutMs = opts.poolTimeoutMs ?? DEFAULT_POOL_TIMEOUT_MS;
  }

  private error(reason: ScrapeErrorReason, message: string, n = 1): void {
    this.errors.set(reason, (this.errors.get(reason) ?? 0) + n);
    this.opts.onError?.(reason, message);
  }

  private readEvents(): void {
    try {
      const r = this.tail.read();
      for (const e of r.events) this.starts.add(e);
      if (r.invalidLines > 0) this.error('events_invalid_line', `${r.invalidLines} invalid line(s) in ${this.tail.path}`, r.invalidLines);
    } catch (err) {
      this.error('events_unreadable', `${this.tail.path}: ${messageOf(err)}`);
    }
  }

  private async poolStatus(): Promise<PoolAnswer | undefined> {
    const { size, socket } = this.cfg.pool;
    if (size === 0 && !existsSync(socket)) return undefined;
    if (!existsSync(socket)) return { up: false };
    let line: string;
    try {
      line = await poolRequest(socket, { op: 'status' }, this.poolTimeoutMs);
    } catch (err) {
      this.error('pool_unreachable', messageOf(err));
      return { up: false };
    }
    try {
      const v: unknown = JSON.parse(line);
      if (isPoolStatus(v)) return { up: true, status: v };
      throw new Error('not a pool status');
    } catch (err) {
      this.error('pool_bad_reply', `pool status reply: ${messageOf(err)}`);
      return { up: false };
    }
  }

  private async guestStats(s: SandboxView): Promise<ShimStats | undefined> {
    if (!s.shim.alive || s.shimSocket === null || s.containers.length === 0) return undefined;
    const r = await shimStats(
      s.shimSocket,
      s.containers.map((c) => c.id),
      this.shimTimeoutMs,
    );
    if (r.error) this.error(r.error.reason, `sandbox ${s.namespace}/${s.id}: ${r.error.message}`);
    return r;
  }

  /** One scrape, as Prometheus text. */
  async scrape(): Promise<string> {
    const t0 = performance.now();
    this.readEvents();
    const sandboxes = listSandboxes(this.cfg).filter((s) => s.id !== null && s.namespace !== null);
    const [pool, stats] = await Promise.all([this.poolStatus(), Promise.all(sandboxes.map((s) => this.guestStats(s)))]);

    const x = new Exposition();
    this.renderSandboxes(x, sandboxes, stats);
    this.renderStarts(x);
    this.renderPool(x, pool);
    const errors = x.counter(
      'tern_scrape_errors_total',
      'Things tern metrics could not read while scraping, by reason (a shim skipped, the pool or the events file unreadable).',
    );
    for (const [reason, n] of this.errors) errors.set({ reason }, n);
    x.gauge('tern_scrape_duration_seconds', 'How long this scrape took.').set({}, (performance.now() - t0) / 1000);
    return x.render();
  }

  private renderSandboxes(x: Exposition, sandboxes: SandboxView[], stats: Array<ShimStats | undefined>): void {
    const info = x.gauge(
      'tern_sandbox_info',
      'A tern sandbox (one VM) on this node; start_path is how its VM came up (pool, template, cold; unknown while it boots).',
    );
    const created = x.gauge('tern_sandbox_start_time_seconds', 'When the sandbox began its start, seconds since the epoch.');
    const vcpus = x.gauge('tern_sandbox_vcpus', 'vCPUs of the sandbox VM.');
    const vmMemory = x.gauge('tern_sandbox_vm_memory_bytes', 'Memory size of the sandbox VM.');
    const containers = x.gauge('tern_sandbox_containers', "Containers the sandbox's shim has recorded.");
    const statsOk = x.gauge(
      'tern_sandbox_stats_ok',
      "1 if the sandbox's shim answered Task.Stats for its containers in this scrape, 0 if it was skipped (not running, unreachable, too slow).",
    );
    const pss = x.gauge('tern_host_pss_bytes', "Host memory (proportional set size, /proc/PID/smaps_rollup) of the sandbox's QEMU and shim processes.");
    const memUsage = x.gauge('tern_guest_memory_usage_bytes', "Memory usage of a container's cgroup in the guest.");
    const memWs = x.gauge('tern_guest_memory_working_set_bytes', "Working set of a container's cgroup in the guest (usage - inactive_file).");
    const memRss = x.gauge('tern_guest_memory_rss_bytes', "Anonymous memory of a container's cgroup in the guest.");
    const cpu = x.counter('tern_guest_cpu_seconds_total', "CPU time of a container's cgroup in the guest, by mode (user, system).");
    const pids = x.gauge('tern_guest_pids', "Processes in a container's cgroup in the guest.");
    const ooms = x.counter('tern_guest_oom_kills_total', "OOM kills in a container's cgroup in the guest.");
    const pressure = {
      total: x.counter(
        'tern_guest_pressure_seconds_total',
        "Time tasks of a container's cgroup in the guest were stalled waiting for a resource (PSI total of cpu|memory|io.pressure): kind some = at least one task, full = all non-idle tasks at once.",
      ),
      ratio: x.gauge(
        'tern_guest_pressure_ratio',
        "Share of wall time tasks of a container's cgroup in the guest were stalled waiting for a resource, the kernel's PSI running average over window 10s, 60s or 300s.",
      ),
    };
    const vmPressure = {
      total: x.counter(
        'tern_sandbox_pressure_seconds_total',
        "Time tasks of the sandbox's whole guest were stalled waiting for a resource (PSI total of /proc/pressure/cpu|memory|io): kind some = at least one task, full = all non-idle tasks at once.",
      ),
      ratio: x.gauge(
        'tern_sandbox_pressure_ratio',
        "Share of wall time tasks of the sandbox's whole guest were stalled waiting for a resource, the kernel's PSI running average over window 10s, 60s or 300s.",
      ),
    };

    sandboxes.forEach((s, i) => {
      const labels: Labels = { namespace: s.namespace!, sandbox: s.id!, start_path: s.startPath ?? 'unknown' };
      info.set(labels, 1);
      const at = s.createdAt ? Date.parse(s.createdAt) : Number.NaN;
      if (Number.isFinite(at)) created.set(labels, at / 1000);
      vcpus.set(labels, s.vcpus);
      vmMemory.set(labels, s.memoryMiB * MIB);
      containers.set(labels, s.containers.length);
      const r = stats[i];
      const answered = r ? !r.error : s.shim.alive && s.containers.length === 0; // nothing to ask
      statsOk.set(labels, answered ? 1 : 0);
      if (s.qemu.pssKiB !== null) pss.set({ ...labels, process: 'qemu' }, s.qemu.pssKiB * KIB);
      if (s.shim.pssKiB !== null) pss.set({ ...labels, process: 'shim' }, s.shim.pssKiB * KIB);
      setPressure(vmPressure, labels, r?.guestPressure ?? []);
      for (const c of r?.containers ?? []) {
        const cl = { ...labels, container: c.id };
        memUsage.set(cl, c.stats.memoryUsageBytes);
        memWs.set(cl, c.stats.memoryWorkingSetBytes);
        memRss.set(cl, c.stats.memoryRssBytes);
        cpu.set({ ...cl, mode: 'user' }, c.stats.cpuUserSeconds);
        cpu.set({ ...cl, mode: 'system' }, c.stats.cpuSystemSeconds);
        pids.set(cl, c.stats.pids);
        ooms.set(cl, c.stats.oomKills);
        setPressure(pressure, cl, c.pressure);
      }
    });
  }

  private renderStarts(x: Exposition): void {
    const st = this.starts;
    const starts = x.counter('tern_starts_total', "Sandbox starts (first container process running), by start path, from the shims' start events.");
    for (const path of START_PATHS) starts.set({ start_path: path }, st.starts.get(path) ?? 0);
    const h = x.histogram(
      'tern_start_duration_seconds',
      "Seconds from the start of a sandbox's boot until a phase completed (vm_ready, container_created, process_started), by start path.",
    );
    for (const path of START_PATHS) {
      for (const phase of START_PHASES) h.histogram({ start_path: path, phase }, st.durations.get(path)!.get(phase)!);
    }
    const fb = x.counter('tern_start_fallbacks_total', 'Starts that did not take a faster path (from = pool or template), by reason.');
    for (const from of Object.keys(FALLBACK_REASONS) as FallbackFrom[]) {
      for (const reason of FALLBACK_REASONS[from]) fb.set({ from, reason }, st.fallbacks.get(`${from}/${reason}`) ?? 0);
    }
    const failures = x.counter('tern_start_failures_total', 'Sandbox starts that failed, by the phase that failed and the error code.');
    for (const [key, n] of [...st.failures].sort(([a], [b]) => a.localeCompare(b))) {
      const [phase, reason] = key.split('/') as [string, string];
      failures.set({ phase, reason }, n);
    }
  }

  private renderPool(x: Exposition, pool: PoolAnswer | undefined): void {
    const size = x.gauge('tern_pool_size', "Ready VMs the warm pool is to keep (the running pool's size, else pool.size of the config).");
    const up = x.gauge('tern_pool_up', '1 if the warm pool answered its status, 0 if it is configured but not answering.');
    const ready = x.gauge('tern_pool_ready_vms', 'VMs ready in the warm pool.');
    const starting = x.gauge('tern_pool_starting_vms', 'VMs the warm pool is starting.');
    const takes = x.counter('tern_pool_takes_total', 'Takes the running pool served or missed (since it started).');
    const failures = x.counter('tern_pool_failures_total', 'VM starts that failed in the running pool (since it started).');
    const hit = x.gauge('tern_pool_hit_ratio', 'Share of sandbox starts served from the pool, out of all starts in the start events read.');
    const ratio = this.starts.poolHitRatio();
    if (ratio !== undefined) hit.set({}, ratio);
    if (!pool) {
      size.set({}, this.cfg.pool.size);
      return;
    }
    up.set({}, pool.up ? 1 : 0);
    if (!pool.up) {
      size.set({}, this.cfg.pool.size);
      return;
    }
    const s = pool.status;
    size.set({}, s.size);
    ready.set({}, s.ready.length);
    starting.set({}, s.starting);
    takes.set({ result: 'served' }, s.served);
    takes.set({ result: 'missed' }, s.missed);
    failures.set({}, s.failures);
  }
}
