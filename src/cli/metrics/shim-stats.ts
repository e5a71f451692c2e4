// Asks one shim for its containers' guest statistics: containerd's own
// Task.Stats call over the shim's ttrpc socket, as `ctr task metrics` gets
// them through containerd. Everything (connect and every call) shares one
// deadline, so a hung shim costs a scrape that long and no more; a container
// that has exited meanwhile (NotFound) is simply absent. Pressure (PSI) of
// the guest and of those containers comes from tern's own service on the same
// socket (tern.shim.v1.Stats), one call beside the Task.Stats calls; a shim
// of an older tern that does not have it (Unimplemented) gives no pressure.
import { codeOf, ErrorCode } from '../../common/errors';
import { decode, encode, type AnyMessage } from '../../common/proto';
import type { Msg } from '../../common/proto-service';
import { TtrpcClient } from '../../ttrpc/client';
import { guestStatsFromAny, type GuestStats } from './guest-stats';
import { pressureSamples, type PressureSample } from './guest-pressure';

const TASK = 'containerd.task.v2.Task';
const STATS = 'tern.shim.v1.Stats';

type PressureResponse = Msg<'tern.shim.v1.PressureResponse'>;

export type ShimStatsError = 'shim_timeout' | 'shim_unreachable' | 'stats_failed' | 'stats_undecodable';

export interface ShimStats {
  containers: Array<{ id: string; stats: GuestStats; pressure: PressureSample[] }>;
  /** The whole guest's pressure (/proc/pressure). */
  guestPressure: PressureSample[];
  /** Why some or all stats are missing (the worst reason, once per shim). */
  error?: { reason: ShimStatsError; message: string };
}

const SEVERITY: ShimStatsError[] = ['shim_timeout', 'shim_unreachable', 'stats_failed', 'stats_undecodable'];

function classify(err: unknown): ShimStatsError {
  const code = codeOf(err);
  if (code === ErrorCode.DeadlineExceeded) return 'shim_timeout';
  if (code === ErrorCode.Unavailable) return 'shim_unreachable';
  return 'stats_failed';
}

/** Stats of each container id through the shim at socketPath, within timeoutMs altogether. */
export async function shimStats(socketPath: string, containerIds: readonly string[], timeoutMs: number): Promise<ShimStats> {
  const deadline = performance.now() + timeoutMs;
  const out: ShimStats = { containers: [], guestPressure: [] };
  const fail = (reason: ShimStatsError, message: string): void => {
    if (!out.error || SEVERITY.indexOf(reason) < SEVERITY.indexOf(out.error.reason)) out.error = { reason, message };
  };
  let client: TtrpcClient;
  try {
    client = await TtrpcClient.connect(socketPath, timeoutMs, { closeGraceMs: 100 });
  } catch (err) {
    fail(classify(err), (err as Error).message);
    return out;
  }
  const remaining = () => Math.max(1, Math.round(deadline - performance.now()));
  const pressure = new Map<string, PressureSample[]>();
  const askPressure = async (): Promise<void> => {
    let reply: Buffer;
    try {
      reply = await client.call(STATS, 'Pressure', encode('tern.shim.v1.PressureRequest', { container_ids: containerIds }), { timeoutMs: remaining() });
    } catch (err) {
      if (codeOf(err) !== ErrorCode.NotImplemented) fail(classify(err), `pressure: ${(err as Error).message}`);
      return;
    }
    try {
      const r = decode<Partial<PressureResponse>>('tern.shim.v1.PressureResponse', reply);
      out.guestPressure = pressureSamples(r.guest);
      for (const c of r.containers ?? []) pressure.set(c.container_id, pressureSamples(c.pressure));
    } catch (err) {
      fail('stats_undecodable', `pressure: ${(err as Error).message}`);
    }
  };
  const stats: Array<{ id: string; stats: GuestStats }> = [];
  try {
    await Promise.all([
      askPressure(),
      ...containerIds.map(async (id) => {
        let reply: Buffer;
        try {
          reply = await client.call(TASK, 'Stats', encode('containerd.task.v2.StatsRequest', { id }), { timeoutMs: remaining() });
        } catch (err) {
          if (codeOf(err) !== ErrorCode.NotFound) fail(classify(err), `${id}: ${(err as Error).message}`);
          return;
        }
        try {
          const any = decode<{ stats: AnyMessage | null }>('containerd.task.v2.StatsResponse', reply).stats ?? {};
          stats.push({ id, stats: guestStatsFromAny(any) });
        } catch (err) {
          fail('stats_undecodable', `${id}: ${(err as Error).message}`);
        }
      }),
    ]);
  } finally {
    void client.close();
  }
  out.containers = stats.map((c) => ({ ...c, pressure: pressure.get(c.id) ?? [] }));
  out.containers.sort((a, b) => a.id.localeCompare(b.id));
  return out;
}
