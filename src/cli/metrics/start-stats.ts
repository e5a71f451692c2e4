// Start statistics of the node, accumulated from the shims' start events
// (events-tail.ts) for as long as `tern metrics serve` runs: latency per
// start path and phase, starts per path, fallbacks and failures by reason.
import {
  FALLBACK_REASONS,
  START_PATHS,
  START_PHASES,
  type FallbackFrom,
  type StartEvent,
  type StartPathName,
  type StartPhase,
} from '../../shim/metrics-events';
import { Histogram, START_SECONDS_BUCKETS } from './histogram';

export class StartStats {
  /** Seconds from the start of the sandbox's boot until each phase completed, per start path. */
  readonly durations = new Map<StartPathName, Map<StartPhase, Histogram>>();
  readonly starts = new Map<StartPathName, number>();
  /** "from/reason" -> count */
  readonly fallbacks = new Map<string, number>();
  /** "phase/reason" -> count */
  readonly failures = new Map<string, number>();

  constructor(readonly buckets: readonly number[] = START_SECONDS_BUCKETS) {
    for (const path of START_PATHS) {
      this.starts.set(path, 0);
      this.durations.set(path, new Map(START_PHASES.map((ph) => [ph, new Histogram(buckets)])));
    }
    for (const from of Object.keys(FALLBACK_REASONS) as FallbackFrom[]) {
      for (const reason of FALLBACK_REASONS[from]) this.fallbacks.set(`${from}/${reason}`, 0);
    }
  }

  add(e: StartEvent): void {
    switch (e.kind) {
      case 'start':
        this.starts.set(e.path, (this.starts.get(e.path) ?? 0) + 1);
        for (const ph of START_PHASES)
          this.durations
            .get(e.path)!
            .get(ph)!
            .observe(e.phasesMs[ph] / 1000);
        break;
      case 'fallback':
        bump(this.fallbacks, `${e.from}/${e.reason}`);
        break;
      case 'failure':
        bump(this.failures, `${e.phase}/${e.reason}`);
        break;
    }
  }

  /** Starts from the pool out of all starts, or undefined before any start. */
  poolHitRatio(): number | undefined {
    let all = 0;
    for (const n of this.starts.values()) all += n;
    return all === 0 ? undefined : (this.starts.get('pool') ?? 0) / all;
  }
}

function bump(m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1);
}
