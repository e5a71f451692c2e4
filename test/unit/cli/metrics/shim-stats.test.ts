// Asking a shim for its containers' stats over its ttrpc socket: a real
// TtrpcServer stands where the shim would be, answering Task.Stats (or
// NotFound for an exited container, or nothing at all). A shim that does not
// answer costs the deadline and no more. Pressure comes from the same
// shim's tern.shim.v1.Stats; a shim without that service (an older tern)
// gives no pressure and no error.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shimStats } from '../../../../src/cli/metrics/shim-stats';
import { CGROUPS_V2_METRICS_TYPE, emptyV2MemoryStat } from '../../../../src/common/cgroup-metrics';
import { internal, notFound } from '../../../../src/common/errors';
import { anyPack, decode, encode } from '../../../../src/common/proto';
import { TtrpcServer } from '../../../../src/ttrpc/server';

let dir: string;
let shim: TtrpcServer;
let silent: Server;
let shimPath: string;
let silentPath: string;
let oldShim: TtrpcServer;
let oldShimPath: string;
const requested: string[][] = [];

const line = (avg10: number, total: number) => ({ avg10, avg60: avg10 / 2, avg300: 0, total_usec: total });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tern-shimstats-'));
  shimPath = join(dir, 'shim.sock');
  silentPath = join(dir, 'silent.sock');
  shim = new TtrpcServer();
  shim.register('containerd.task.v2.Task', 'Stats', async (payload) => {
    const { id } = decode<{ id: string }>('containerd.task.v2.StatsRequest', payload);
    if (id === 'gone') throw notFound(`container ${id} has exited: no stats`);
    if (id === 'broken') throw internal('agent said no');
    if (id === 'odd') return encode('containerd.task.v2.StatsResponse', { stats: { type_url: 'x.Unknown', value: Buffer.alloc(0) } });
    const metrics = { memory: { ...emptyV2MemoryStat(), usage: id === 'a' ? 1000 : 2000 }, pids: { current: 1, limit: 0 } };
    return encode('containerd.task.v2.StatsResponse', { stats: anyPack(CGROUPS_V2_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, metrics) });
  });
  shim.register('tern.shim.v1.Stats', 'Pressure', async (payload) => {
    const { container_ids } = decode<{ container_ids: string[] }>('tern.shim.v1.PressureRequest', payload);
    requested.push(container_ids);
    return encode('tern.shim.v1.PressureResponse', {
      guest: { cpu: { some: line(50, 3_000_000), full: line(0, 0) }, memory: null, io: { some: line(1, 10), full: null } },
      containers: container_ids
        .filter((id) => id === 'a' || id === 'gone')
        .map((id) => ({ container_id: id, pressure: { cpu: { some: line(25, 1_500_000), full: null }, memory: null, io: null } })),
    });
  });
  await shim.listen(shimPath);
  // A shim of an older tern: Task.Stats only.
  oldShimPath = join(dir, 'old.sock');
  oldShim = new TtrpcServer();
  oldShim.register('containerd.task.v2.Task', 'Stats', async () =>
    encode('containerd.task.v2.StatsResponse', { stats: anyPack(CGROUPS_V2_METRICS_TYPE, CGROUPS_V2_METRICS_TYPE, { pids: { current: 1, limit: 0 } }) }),
  );
  await oldShim.listen(oldShimPath);
  // Reads requests and never answers: a hung shim.
  silent = createServer((sock) => sock.resume());
  await new Promise<void>((r) => silent.listen(silentPath, r));
});

afterAll(async () => {
  await shim.close();
  await oldShim.close();
  await new Promise<void>((r) => silent.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe('shimStats', () => {
  it("gets each container's stats; an exited one is simply absent", async () => {
    const r = await shimStats(shimPath, ['b', 'gone', 'a'], 2000);
    expect(r.error).toBeUndefined();
    expect(r.containers.map((c) => [c.id, c.stats.memoryUsageBytes])).toEqual([
      ['a', 1000],
      ['b', 2000],
    ]);
  });

  it("has the guest's and each container's pressure from one Pressure call, in seconds and ratios", async () => {
    requested.length = 0;
    const r = await shimStats(shimPath, ['b', 'gone', 'a'], 2000);
    expect(requested).toEqual([['b', 'gone', 'a']]);
    expect(r.error).toBeUndefined();
    expect(r.guestPressure).toEqual([
      { resource: 'cpu', kind: 'some', totalSeconds: 3, ratios: { '10s': 0.5, '60s': 0.25, '300s': 0 } },
      { resource: 'cpu', kind: 'full', totalSeconds: 0, ratios: { '10s': 0, '60s': 0, '300s': 0 } },
      { resource: 'io', kind: 'some', totalSeconds: 0.00001, ratios: { '10s': 0.01, '60s': 0.005, '300s': 0 } },
    ]);
    // "gone" has no Task.Stats, so it is not reported at all; "b" has stats and no pressure.
    expect(r.containers.map((c) => [c.id, c.pressure])).toEqual([
      ['a', [{ resource: 'cpu', kind: 'some', totalSeconds: 1.5, ratios: { '10s': 0.25, '60s': 0.125, '300s': 0 } }]],
      ['b', []],
    ]);
  });

  it('takes a shim without the Pressure service (an older tern) as having no pressure, not as an error', async () => {
    const r = await shimStats(oldShimPath, ['a'], 2000);
    expect(r.error).toBeUndefined();
    expect(r.guestPressure).toEqual([]);
    expect(r.containers).toMatchObject([{ id: 'a', stats: { pids: 1 }, pressure: [] }]);
  });

  it('names what went wrong: a failed call, an answer of another type', async () => {
    const r = await shimStats(shimPath, ['a', 'broken'], 2000);
    expect(r.containers.map((c) => c.id)).toEqual(['a']);
    expect(r.error).toMatchObject({ reason: 'stats_failed', message: expect.stringMatching(/^broken: .*agent said no/) });
    expect((await shimStats(shimPath, ['odd'], 2000)).error).toMatchObject({ reason: 'stats_undecodable' });
  });

  it('gives up on a shim that does not answer within the deadline', async () => {
    const t0 = performance.now();
    const r = await shimStats(silentPath, ['a', 'b'], 300);
    const took = performance.now() - t0;
    expect(r).toMatchObject({ containers: [], guestPressure: [], error: { reason: 'shim_timeout' } });
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(1500);
  });

  it('reports a socket nobody listens on as unreachable', async () => {
    const r = await shimStats(join(dir, 'none.sock'), ['a'], 1000);
    expect(r).toMatchObject({ containers: [], error: { reason: 'shim_unreachable' } });
  });
});
