// A sandbox's start, as it is recorded for `tern metrics` (metrics-events.ts):
// the fallbacks on the way, then exactly one outcome: `start` once the first
// container's process runs (its path and phase times), or `failure` in the
// phase that failed. Later containers of the pod (CRI) are not a start.
import { TernError } from '../common/errors';
import type { FallbackFrom, FallbackReasonOf, StartEvent, StartPathName, StartPhase } from './metrics-events';
import { EVENTS_FORMAT_VERSION, START_PHASES } from './metrics-events';

type Sink = (e: StartEvent) => void;

export class StartRecorder {
  private readonly phasesMs: Partial<Record<StartPhase, number>> = {};
  private outcome: 'start' | 'failure' | undefined;

  constructor(
    private readonly namespace: string,
    private readonly sandbox: string,
    private readonly sink: Sink,
  ) {}

  /** Whether the start's outcome is already recorded (later containers are not starts). */
  get settled(): boolean {
    return this.outcome !== undefined;
  }

  private base(): Pick<StartEvent, 'v' | 'at' | 'namespace' | 'sandbox'> {
    return { v: EVENTS_FORMAT_VERSION, at: new Date().toISOString(), namespace: this.namespace, sandbox: this.sandbox };
  }

  /** A faster path (the pool, a template) was not taken, and why. */
  fallback<F extends FallbackFrom>(from: F, reason: FallbackReasonOf<F>, detail: string): void {
    if (this.outcome) return;
    this.sink({ ...this.base(), kind: 'fallback', from, reason, detail });
  }

  /** Notes when a phase completed (ms since the boot began); the first note of a phase counts. */
  phase(p: StartPhase, ms: number): void {
    if (this.outcome || this.phasesMs[p] !== undefined) return;
    this.phasesMs[p] = Math.max(0, Math.round(ms));
  }

  /** The first container's process runs: records the start with its path and phase times. */
  started(path: StartPathName): void {
    if (this.outcome) return;
    this.outcome = 'start';
    const phasesMs = {} as Record<StartPhase, number>;
    // A phase not noted (it cannot be, but a record must be whole) takes the next one's time.
    let later = this.phasesMs.process_started ?? 0;
    for (const p of [...START_PHASES].reverse()) later = phasesMs[p] = this.phasesMs[p] ?? later;
    this.sink({ ...this.base(), kind: 'start', path, phasesMs });
  }

  /** The start failed in `phase`; its reason is the error's code. */
  failed(phase: StartPhase, err: unknown): void {
    if (this.outcome) return;
    this.outcome = 'failure';
    const reason = err instanceof TernError ? err.code : 'Unknown';
    this.sink({ ...this.base(), kind: 'failure', phase, reason, detail: err instanceof Error ? err.message : String(err) });
  }
}
