// The Prometheus text exposition format (version 0.0.4), written by hand:
// per family a HELP and a TYPE line, then its samples, `name{label="value"} v`.
// Label values escape backslash, double quote and newline; HELP text escapes
// backslash and newline. Histograms expand into _bucket (cumulative, with an
// `le` label ending at +Inf), _sum and _count.
import type { Histogram } from './histogram';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge' | 'histogram';
export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function labelText(labels: Labels, extra?: [string, string]): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
  return parts.length > 0 ? `{${parts.join(',')}}` : '';
}

export class MetricFamily {
  private readonly lines: string[] = [];

  constructor(
    readonly name: string,
    readonly type: MetricType,
    readonly help: string,
  ) {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
  }

  private checkLabels(labels: Labels): void {
    for (const k of Object.keys(labels)) {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`${this.name}: invalid label name ${JSON.stringify(k)}`);
      if (this.type === 'histogram' && k === 'le') throw new Error(`${this.name}: label "le" is the histogram's own`);
    }
  }

  /** A gauge's or counter's sample. */
  set(labels: Labels, value: number): this {
    if (this.type === 'histogram') throw new Error(`${this.name} is a histogram: use histogram()`);
    this.checkLabels(labels);
    this.lines.push(`${this.name}${labelText(labels)} ${formatValue(value)}`);
    return this;
  }

  histogram(labels: Labels, h: Histogram): this {
    if (this.type !== 'histogram') throw new Error(`${this.name} is a ${this.type}`);
    this.checkLabels(labels);
    const cumulative = h.cumulative();
    h.bounds.forEach((b, i) => {
      this.lines.push(`${this.name}_bucket${labelText(labels, ['le', formatValue(b)])} ${cumulative[i]}`);
    });
    this.lines.push(`${this.name}_bucket${labelText(labels, ['le', '+Inf'])} ${h.count}`);
    this.lines.push(`${this.name}_sum${labelText(labels)} ${formatValue(h.sum)}`);
    this.lines.push(`${this.name}_count${labelText(labels)} ${h.count}`);
    return this;
  }

  render(): string {
    return `${[`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`, ...this.lines].join('\n')}\n`;
  }
}

/** The families of one scrape, rendered in the order they were declared. */
export class Exposition {
  private readonly families = new Map<string, MetricFamily>();

  family(name: string, type: MetricType, help: string): MetricFamily {
    const have = this.families.get(name);
    if (have) {
      if (have.type !== type) throw new Error(`metric ${name} declared as ${have.type} and ${type}`);
      return have;
    }
    const f = new MetricFamily(name, type, help);
    this.families.set(name, f);
    return f;
  }

  gauge(name: string, help: string): MetricFamily {
    return this.family(name, 'gauge', help);
  }

  counter(name: string, help: string): MetricFamily {
    return this.family(name, 'counter', help);
  }

  histogram(name: string, help: string): MetricFamily {
    return this.family(name, 'histogram', help);
  }

  render(): string {
    return [...this.families.values()].map((f) => f.render()).join('');
  }
}
