// tern.shim.v1.Stats: tern's own service on the shim's socket, beside
// containerd's Task service, for `tern metrics` (what containerd's cgroups
// Metrics cannot carry). Served by the same TaskService; nothing is read
// until it is called.
import type { Logger } from '../common/logging';
import { registerService, type ServiceImpl } from '../common/proto-service';
import type { TtrpcServer } from '../ttrpc/server';
import type { TaskService } from './task-service';

export const STATS_SERVICE = 'tern.shim.v1.Stats' as const;

export function registerStats(server: TtrpcServer, svc: TaskService, log: Logger): void {
  const stats: ServiceImpl<typeof STATS_SERVICE> = {
    Pressure: (r) => svc.pressure(r.container_ids),
  };
  registerService(server, STATS_SERVICE, stats, async (method, run) => {
    const started = performance.now();
    try {
      return await run();
    } finally {
      log.debug({ method, ms: Math.round(performance.now() - started) }, 'stats rpc');
    }
  });
}
