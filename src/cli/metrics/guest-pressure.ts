// Pressure stall information (PSI) as `tern metrics` reports it, from the
// shim's tern.shim.v1.Stats Pressure answer: per resource (cpu, memory, io)
// and kind (some: at least one task stalled; full: all non-idle tasks
// stalled at once), the total stall time in seconds (the kernel counts
// microseconds) and the kernel's running averages over 10 s, 60 s and 300 s
// as ratios of wall time (the kernel prints percent). A resource or kind the
// guest did not report (no PSI, a malformed file, cpu `full` before Linux
// 5.13) gives no sample.
import type { Msg } from '../../common/proto-service';

type PressureStats = Msg<'tern.agent.v1.PressureStats'>;

export const PRESSURE_RESOURCES = ['cpu', 'memory', 'io'] as const;
export const PRESSURE_KINDS = ['some', 'full'] as const;
/** The averaging windows, as the `window` label has them. */
export const PRESSURE_WINDOWS = { '10s': 'avg10', '60s': 'avg60', '300s': 'avg300' } as const;

export interface PressureSample {
  resource: (typeof PRESSURE_RESOURCES)[number];
  kind: (typeof PRESSURE_KINDS)[number];
  totalSeconds: number;
  /** By window label: the share of wall time stalled, 0..1. */
  ratios: Record<keyof typeof PRESSURE_WINDOWS, number>;
}

// Divided, not multiplied by 1e-6 / 0.01: 10 us is then 0.00001 s exactly as printed.
const USEC_PER_SEC = 1e6;
const PERCENT = 100;

/** The samples of one PressureStats (decoded: any part may be absent), in resource then kind order. */
export function pressureSamples(p: Partial<PressureStats> | null | undefined): PressureSample[] {
  const out: PressureSample[] = [];
  for (const resource of PRESSURE_RESOURCES) {
    const file = p?.[resource];
    for (const kind of PRESSURE_KINDS) {
      const line = file?.[kind];
      if (!line) continue;
      out.push({
        resource,
        kind,
        totalSeconds: (line.total_usec ?? 0) / USEC_PER_SEC,
        ratios: { '10s': (line.avg10 ?? 0) / PERCENT, '60s': (line.avg60 ?? 0) / PERCENT, '300s': (line.avg300 ?? 0) / PERCENT },
      });
    }
  }
  return out;
}
