// The text format we write, read back by a strict parser (prom-text.ts):
// HELP and TYPE per family, escaping, histograms expanded, values.
import { describe, expect, it } from 'vitest';
import { Exposition, escapeLabelValue, formatValue } from '../../../../src/cli/metrics/exposition';
import { Histogram } from '../../../../src/cli/metrics/histogram';
import { parsePrometheusText, samples, value } from './prom-text';

describe('Exposition', () => {
  it('writes families that parse back with their labels, values and help', () => {
    const x = new Exposition();
    x.gauge('tern_a', 'A gauge.\nSecond line with a \\ backslash.')
      .set({ sandbox: 'p"o\\d\nx', namespace: 'default' }, 1.5)
      .set({ sandbox: 'b', namespace: 'n' }, 0);
    x.counter('tern_b_total', 'A counter.').set({}, 42);
    x.gauge('tern_empty', 'Declared, no samples.');
    x.gauge('tern_special', 'Special values.')
      .set({ v: 'nan' }, NaN)
      .set({ v: 'inf' }, Infinity)
      .set({ v: 'big' }, 2 ** 53);
    const text = x.render();
    const fams = parsePrometheusText(text);
    expect([...fams.keys()]).toEqual(['tern_a', 'tern_b_total', 'tern_empty', 'tern_special']);
    expect(fams.get('tern_a')).toMatchObject({ type: 'gauge', help: 'A gauge.\nSecond line with a \\ backslash.' });
    expect(value(fams, 'tern_a', { sandbox: 'p"o\\d\nx' })).toBe(1.5);
    expect(samples(fams, 'tern_a', { namespace: 'n' })).toEqual([{ name: 'tern_a', labels: { sandbox: 'b', namespace: 'n' }, value: 0 }]);
    expect(fams.get('tern_b_total')!.type).toBe('counter');
    expect(value(fams, 'tern_b_total')).toBe(42);
    expect(fams.get('tern_empty')!.samples).toEqual([]);
    expect(value(fams, 'tern_special', { v: 'nan' })).toBeNaN();
    expect(value(fams, 'tern_special', { v: 'inf' })).toBe(Infinity);
    expect(value(fams, 'tern_special', { v: 'big' })).toBe(2 ** 53);
    expect(text).toContain('# TYPE tern_b_total counter\ntern_b_total 42\n');
    expect(text).toContain('tern_a{sandbox="p\\"o\\\\d\\nx",namespace="default"} 1.5\n');
  });

  it('expands a histogram into cumulative buckets, +Inf, _sum and _count', () => {
    const h = new Histogram([0.5, 1, 2.5]);
    for (const v of [0.2, 0.7, 3, 1]) h.observe(v);
    const x = new Exposition();
    x.histogram('tern_d_seconds', 'Durations.')
      .histogram({ path: 'pool', phase: 'vm_ready' }, h)
      .histogram({ path: 'cold', phase: 'vm_ready' }, new Histogram([0.5, 1, 2.5]));
    const text = x.render();
    const fams = parsePrometheusText(text);
    const buckets = samples(fams, 'tern_d_seconds_bucket', { path: 'pool' }).map((s) => [s.labels.le, s.value]);
    expect(buckets).toEqual([
      ['0.5', 1],
      ['1', 3],
      ['2.5', 3],
      ['+Inf', 4],
    ]);
    expect(value(fams, 'tern_d_seconds_sum', { path: 'pool' })).toBeCloseTo(4.9);
    expect(value(fams, 'tern_d_seconds_count', { path: 'pool' })).toBe(4);
    expect(value(fams, 'tern_d_seconds_count', { path: 'cold' })).toBe(0);
    expect(text).toContain('tern_d_seconds_bucket{path="pool",phase="vm_ready",le="+Inf"} 4\n');
  });

  it('refuses bad names, counters without _total, mixed types and le on a histogram', () => {
    const x = new Exposition();
    expect(() => x.gauge('tern-bad', 'x')).toThrow(/invalid metric name/);
    expect(() => x.counter('tern_c', 'x')).toThrow(/_total/);
    x.gauge('tern_g', 'x');
    expect(() => x.counter('tern_g', 'x')).toThrow(/declared as gauge and counter/);
    expect(() => x.gauge('tern_g', 'x').set({ 'bad-label': 'v' }, 1)).toThrow(/invalid label name/);
    expect(() => x.gauge('tern_g', 'x').set({ __reserved: 'v' }, 1)).toThrow(/invalid label name/);
    expect(() => x.histogram('tern_h', 'x').histogram({ le: '1' }, new Histogram([1]))).toThrow(/"le"/);
    expect(() => x.histogram('tern_h', 'x').set({}, 1)).toThrow(/histogram/);
  });

  it('escapes label values and formats values as Prometheus reads them', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(formatValue(-Infinity)).toBe('-Inf');
    expect(formatValue(0.1)).toBe('0.1');
    expect(formatValue(1e21)).toBe('1e+21');
  });
});
