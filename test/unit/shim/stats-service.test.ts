// tern.shim.v1.Stats as serve.ts registers it beside the Task service, around
// the real TaskService: with no container there is no VM to ask, so Pressure
// is FailedPrecondition (the containers' path is in
// test/integration/metrics-pressure.test.ts); the Task service is unchanged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../src/common/config';
import { silentLogger } from '../../../src/common/logging';
import { encode } from '../../../src/common/proto';
import { createDriver } from '../../../src/hypervisor/index';
import { EventPublisher } from '../../../src/shim/events';
import { sandboxDir } from '../../../src/shim/paths';
import { Sandbox } from '../../../src/shim/sandbox';
import { registerTask } from '../../../src/shim/serve';
import { registerStats, STATS_SERVICE } from '../../../src/shim/stats-service';
import { TaskService } from '../../../src/shim/task-service';
import { TtrpcClient } from '../../../src/ttrpc/client';
import { TtrpcServer } from '../../../src/ttrpc/server';

let dir: string;
let server: TtrpcServer;
let client: TtrpcClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tern-statssvc-'));
  const cfg = defaultConfig();
  cfg.runtime.stateDir = join(dir, 'state');
  const sandbox = new Sandbox(
    'unit',
    'pod',
    sandboxDir(cfg.runtime.stateDir, 'unit', 'pod'),
    cfg,
    createDriver(cfg.hypervisor.driver, silentLogger),
    silentLogger,
  );
  const svc = new TaskService(sandbox, cfg, new EventPublisher(undefined, 'unit', silentLogger), silentLogger, () => undefined);
  server = new TtrpcServer();
  registerTask(server, svc, silentLogger);
  registerStats(server, svc, silentLogger);
  await server.listen(join(dir, 'shim.sock'));
  client = await TtrpcClient.connect(join(dir, 'shim.sock'), 2000);
});

afterAll(async () => {
  await client?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tern.shim.v1.Stats', () => {
  it('answers Pressure with FailedPrecondition while the sandbox has no container', async () => {
    const err = await client.call(STATS_SERVICE, 'Pressure', encode('tern.shim.v1.PressureRequest', { container_ids: ['c1'] })).catch((e: unknown) => e);
    expect(err).toMatchObject({ grpcCode: 9, message: expect.stringContaining('the sandbox has no container (and no VM)') });
  });

  it('leaves the Task service as it was: Stats of an unknown container is NotFound', async () => {
    const err = await client.call('containerd.task.v2.Task', 'Stats', encode('containerd.task.v2.StatsRequest', { id: 'c1' })).catch((e: unknown) => e);
    expect(err).toMatchObject({ grpcCode: 5 });
  });
});
