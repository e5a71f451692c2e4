// Histogram bucketing: a value lands in the first bucket whose bound it does
// not exceed (le), past the last bound in +Inf; counts are cumulative.
import { describe, expect, it } from 'vitest';
import { Histogram, START_SECONDS_BUCKETS } from '../../../../src/cli/metrics/histogram';

describe('Histogram', () => {
  it("counts a value equal to a bound in that bound's bucket, and larger ones in +Inf", () => {
    const h = new Histogram([1, 2, 5]);
    for (const v of [0, 1, 1.0001, 2, 4.9, 5, 5.1, 1000]) h.observe(v);
    expect(h.cumulative()).toEqual([2, 4, 6, 8]);
    expect(h.count).toBe(8);
    expect(h.sum).toBeCloseTo(0 + 1 + 1.0001 + 2 + 4.9 + 5 + 5.1 + 1000);
  });

  it('ignores NaN and counts negatives in the first bucket', () => {
    const h = new Histogram([1]);
    h.observe(Number.NaN);
    h.observe(-3);
    expect(h.cumulative()).toEqual([1, 1]);
    expect(h.count).toBe(1);
  });

  it('refuses bounds that are not finite and increasing', () => {
    expect(() => new Histogram([1, 1])).toThrow(/increasing/);
    expect(() => new Histogram([2, 1])).toThrow(/increasing/);
    expect(() => new Histogram([1, Infinity])).toThrow(/finite/);
  });

  it('has start buckets from 0.1 s to 120 s', () => {
    expect(START_SECONDS_BUCKETS[0]).toBe(0.1);
    expect(START_SECONDS_BUCKETS[START_SECONDS_BUCKETS.length - 1]).toBe(120);
    const h = new Histogram(START_SECONDS_BUCKETS);
    h.observe(2.5); // a pool start under TCG
    h.observe(16); // a cold boot under TCG
    const c = h.cumulative();
    expect(c[START_SECONDS_BUCKETS.indexOf(2)]).toBe(0);
    expect(c[START_SECONDS_BUCKETS.indexOf(3)]).toBe(1);
    expect(c[START_SECONDS_BUCKETS.indexOf(15)]).toBe(1);
    expect(c[START_SECONDS_BUCKETS.indexOf(20)]).toBe(2);
  });
});
