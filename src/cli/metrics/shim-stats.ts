// Asks one shim for its containers' guest statistics: containerd's own
// Task.Stats call over the shim's ttrpc socket, as `ctr task metrics` gets
// them through containerd. Everything (connect and every call) shares one
// deadline, so a hung shim costs a scrape that long and no more; a container
// that has exited meanwhile (NotFound) is simply absent.
import { codeOf, ErrorCode } from '../../common/errors';
import { decode, encode, type AnyMessage } from '../../common/proto';
import { TtrpcClient } from '../../ttrpc/client';
import { guestStatsFromAny, type GuestStats } from './guest-stats';

const TASK = 'containerd.task.v2.Task';

export type ShimStatsError = 'shim_timeout' | 'shim_unreachable' | 'stats_failed' | 'stats_undecodable';

export interface ShimStats {
  containers: Array<{ id: string; stats: GuestStats }>;
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
  const out: ShimStats = { containers: [] };
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
  try {
    await Promise.all(
      containerIds.map(async (id) => {
        let reply: Buffer;
        try {
          const remaining = Math.max(1, Math.round(deadline - performance.now()));
          reply = await client.call(TASK, 'Stats', encode('containerd.task.v2.StatsRequest', { id }), { timeoutMs: remaining });
        } catch (err) {
          if (codeOf(err) !== ErrorCode.NotFound) fail(classify(err), `${id}: ${(err as Error).message}`);
          return;
        }
        try {
          const any = decode<{ stats: AnyMessage | null }>('containerd.task.v2.StatsResponse', reply).stats ?? {};
          out.containers.push({ id, stats: guestStatsFromAny(any) });
        } catch (err) {
          fail('stats_undecodable', `${id}: ${(err as Error).message}`);
        }
      }),
    );
  } finally {
    void client.close();
  }
  out.containers.sort((a, b) => a.id.localeCompare(b.id));
  return out;
}
