// A strict little parser of the Prometheus text format (0.0.4) for tests:
// every sample must belong to a family announced by HELP and TYPE before it,
// label values are unescaped, histograms are checked (buckets cumulative and
// increasing in le, ending at +Inf equal to _count, _sum present).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value ${JSON.stringify(text)}`);
  return Number(text);
}

function parseLabels(text: string, at: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  let i = at + 1; // after '{'
  while (text[i] !== '}') {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(text.slice(i));
    if (!m) throw new Error(`bad label at ${i}: ${text}`);
    i += m[0].length;
    let v = '';
    for (;;) {
      const c = text[i++];
      if (c === undefined) throw new Error(`unterminated label value: ${text}`);
      if (c === '"') break;
      if (c === '\\') {
        const e = text[i++];
        if (e === 'n') v += '\n';
        else if (e === '\\' || e === '"') v += e;
        else throw new Error(`bad escape \\${e}: ${text}`);
      } else v += c;
    }
    if (Object.hasOwn(labels, m[1]!)) throw new Error(`label ${m[1]} twice: ${text}`);
    labels[m[1]!] = v;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`expected , or } at ${i}: ${text}`);
  }
  return { labels, end: i + 1 };
}

function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  if (families.has(sample)) return families.get(sample);
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (sample.endsWith(suffix)) {
      const f = families.get(sample.slice(0, -suffix.length));
      if (f?.type === 'histogram') return f;
    }
  }
  return undefined;
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  const helps = new Map<string, string>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const [name, ...rest] = line.slice(7).split(' ');
      if (helps.has(name!)) throw new Error(`HELP for ${name} twice`);
      helps.set(name!, rest.join(' ').replace(/\\n/g, '\n').replace(/\\\\/g, '\\'));
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice(7).split(' ');
      if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type!)) throw new Error(`bad type ${type}`);
      if (families.has(name!)) throw new Error(`TYPE for ${name} twice`);
      if (!helps.has(name!)) throw new Error(`TYPE for ${name} without HELP before it`);
      families.set(name!, { name: name!, type: type!, help: helps.get(name!)!, samples: [] });
      continue;
    }
    if (line.startsWith('#') || line === '') throw new Error(`unexpected line ${JSON.stringify(line)}`);
    const m = NAME.exec(line);
    if (!m) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    let i = m[0].length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') ({ labels, end: i } = parseLabels(line, i));
    if (line[i] !== ' ') throw new Error(`expected a space before the value: ${line}`);
    const value = parseValue(line.slice(i + 1));
    const fam = familyOf(m[0], families);
    if (!fam) throw new Error(`sample ${m[0]} has no TYPE before it`);
    fam.samples.push({ name: m[0], labels, value });
  }
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

const keyOf = (labels: Record<string, string>) =>
  JSON.stringify(
    Object.entries(labels)
      .filter(([k]) => k !== 'le')
      .sort(),
  );

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const k = keyOf(s.labels);
    const e = series.get(k) ?? { buckets: [] };
    series.set(k, e);
    if (s.name === `${f.name}_bucket`) e.buckets.push([parseValue(s.labels.le ?? 'missing'), s.value]);
    else if (s.name === `${f.name}_sum`) e.sum = s.value;
    else if (s.name === `${f.name}_count`) e.count = s.value;
  }
  for (const [k, e] of series) {
    if (e.sum === undefined || e.count === undefined) throw new Error(`${f.name}${k}: no _sum or _count`);
    for (let i = 1; i < e.buckets.length; i++) {
      if (!(e.buckets[i]![0] > e.buckets[i - 1]![0]) || e.buckets[i]![1] < e.buckets[i - 1]![1]) throw new Error(`${f.name}${k}: buckets not cumulative`);
    }
    const last = e.buckets[e.buckets.length - 1];
    if (!last || last[0] !== Infinity || last[1] !== e.count) throw new Error(`${f.name}${k}: +Inf bucket missing or not _count`);
  }
}

/** The samples of a family (or a histogram's _bucket/_sum/_count series) whose labels include `match`. */
export function samples(families: Map<string, Family>, name: string, match: Record<string, string> = {}): Sample[] {
  const fam = familyOf(name, families);
  if (!fam) return [];
  return fam.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The one value of a series; throws when there is none or more than one. */
export function value(families: Map<string, Family>, name: string, match: Record<string, string> = {}): number {
  const found = samples(families, name, match);
  if (found.length !== 1) throw new Error(`${name}${JSON.stringify(match)}: ${found.length} samples`);
  return found[0]!.value;
}
