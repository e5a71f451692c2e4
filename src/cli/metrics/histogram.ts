// A Prometheus-style histogram: fixed upper bounds, a value counts in the
// first bucket whose bound it does not exceed (le = "less or equal"), plus
// an implicit +Inf bucket; sum and count of everything observed.

/** Start latencies in seconds: sub-second (KVM, the pool) up to a loaded TCG host's cold boot. */
export const START_SECONDS_BUCKETS: readonly number[] = [0.1, 0.25, 0.5, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 60, 120];

export class Histogram {
  /** Observations per bucket (not cumulative); the last is +Inf. */
  private readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(readonly bounds: readonly number[]) {
    for (let i = 0; i < bounds.length; i++) {
      if (!Number.isFinite(bounds[i]!) || (i > 0 && bounds[i]! <= bounds[i - 1]!)) {
        throw new Error(`histogram bounds must be finite and increasing: ${bounds.join(', ')}`);
      }
    }
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    if (Number.isNaN(value)) return;
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** Cumulative counts per bound, then the +Inf bucket (= count). */
  cumulative(): number[] {
    let acc = 0;
    return this.counts.map((c) => (acc += c));
  }
}
