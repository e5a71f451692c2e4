// The benchmarks' SVG charts: well-formed XML, every runtime (failed ones as
// FAILED rows), the medians and values as text, log-scale ticks, the RunD
// reference line, escaping; writeChart's SVG and (only with a converter) PNG.
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  concurrencyChart,
  densityChart,
  escapeXml,
  formatSeconds,
  latencyChart,
  machineSubtitle,
  pngConverter,
  RUND_MIB,
  writeChart,
  type ConcurrencyRow,
  type DensityRow,
  type LatencySeries,
} from '../../../bench/plot';
import { benchOutDir, hostSubtitle } from '../../../bench/chart-out';
import { median } from '../../../bench/stats';

// ---- a minimal XML well-formedness check (no parser in the dependencies) ----

const NAME = '[A-Za-z_][\\w:.-]*';
const BAD_ENTITY = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;

/** Throws unless xml is one well-formed element (after an optional declaration); returns the element count. */
function checkWellFormed(xml: string): number {
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(xml)) throw new Error('character not allowed in XML');
  const body = xml.replace(/^<\?xml\s[^?]*\?>/, '');
  const token = new RegExp(`<!--([\\s\\S]*?)-->|</(${NAME})\\s*>|<(${NAME})((?:\\s+${NAME}\\s*=\\s*(?:"[^"]*"|'[^']*'))*)\\s*(/?)>|([^<]+)|(<)`, 'g');
  const stack: string[] = [];
  let roots = 0;
  let elements = 0;
  for (const m of body.matchAll(token)) {
    const [, comment, close, open, attrText, selfClose, chars, stray] = m;
    if (comment !== undefined) {
      if (comment.includes('--')) throw new Error('"--" inside a comment');
    } else if (close !== undefined) {
      const top = stack.pop();
      if (top !== close) throw new Error(`</${close}> closes <${top ?? 'nothing'}> at ${m.index}`);
    } else if (open !== undefined) {
      if (stack.length === 0 && ++roots > 1) throw new Error(`second root element <${open}>`);
      elements++;
      const seen = new Set<string>();
      for (const a of (attrText ?? '').matchAll(new RegExp(`(${NAME})\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, 'g'))) {
        if (seen.has(a[1]!)) throw new Error(`attribute ${a[1]} twice on <${open}>`);
        seen.add(a[1]!);
        const value = a[2] ?? a[3] ?? '';
        if (value.includes('<') || BAD_ENTITY.test(value)) throw new Error(`bad attribute value ${JSON.stringify(value)}`);
      }
      if (selfClose !== '/') stack.push(open);
    } else if (chars !== undefined) {
      if (stack.length === 0 && chars.trim() !== '') throw new Error(`text outside the root: ${JSON.stringify(chars.slice(0, 40))}`);
      if (BAD_ENTITY.test(chars)) throw new Error(`unescaped & in ${JSON.stringify(chars.slice(0, 60))}`);
    } else if (stray !== undefined) {
      throw new Error(`malformed markup at ${m.index}: ${JSON.stringify(body.slice(m.index, m.index + 60))}`);
    }
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (roots !== 1) throw new Error('no root element');
  return elements;
}

function unescapeXml(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** The text of every <text> element, its tspans joined, entities resolved. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text\b[^>]*>([\s\S]*?)<\/text>/g)].map((m) => unescapeXml(m[1]!.replace(/<[^>]+>/g, '')));
}

function expectSelfContained(svg: string): void {
  expect(svg).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="900" /);
  expect(svg).toContain('sans-serif');
  expect(svg).not.toMatch(/<script|href=|@import|@font-face|url\(/i);
}

// ---- fixtures ----

const SUBTITLE = machineSubtitle('QEMU under TCG (no usable KVM)', new Date('2025-01-02T03:04:05Z'), 2);

const latency: LatencySeries[] = [
  { name: 'tern-cold', timesMs: [12_000, 13_000, 14_500] },
  { name: 'tern-template', timesMs: [4_100, 4_400, 4_600, 4_700] },
  { name: 'tern-pool', timesMs: [], error: 'ctr exited 1: failed to create shim task: <pool> & "socket" gone\u001b[0m' },
  { name: 'runc', timesMs: [100, 120, 190] },
  { name: 'gvisor', timesMs: [250, 280, 300] },
];

const concurrency: ConcurrencyRow[] = [
  { name: 'tern-template', wallS: { 10: 31.03, 20: 64.64 } },
  { name: 'tern-pool', wallS: { 10: 12.2 } }, // n=20 missing
  { name: 'tern-cold', wallS: {}, error: 'ctr run exited 1: timeout' },
  { name: 'runc', wallS: { 10: 0.79, 20: 1.77 } },
  { name: 'gvisor', wallS: { 10: 1.5, 20: undefined } },
];

const density: DensityRow[] = [
  { name: 'tern-template', mib: { 10: 127.8, 20: 121.3 }, ksmMib: { 10: 118.7 } },
  { name: 'tern-pool', mib: {}, ksmMib: {}, error: '3/10 failed to start' },
  { name: 'runc', mib: { 10: 2.9, 20: 2.8 }, ksmMib: { 10: 2.9, 20: 2.8 } },
  { name: 'gvisor', mib: { 10: 14.7 }, ksmMib: { 10: 14.7, 20: 13.6 } },
];

describe('the well-formedness check itself', () => {
  it('accepts good XML and rejects broken markup', () => {
    expect(checkWellFormed('<?xml version="1.0"?>\n<svg a="1" b=\'2\'><g><text>x &amp; y</text></g><!-- c --><line/></svg>\n')).toBe(4);
    for (const bad of [
      '<svg><g></svg>',
      '<svg>a & b</svg>',
      '<svg a="<"/>',
      '<svg/><svg/>',
      '<svg a="1" a="2"/>',
      '<svg><text>1 < 2</text></svg>',
      '<svg>',
      'x<svg/>',
    ]) {
      expect(() => checkWellFormed(bad), bad).toThrow();
    }
  });
});

describe('machineSubtitle', () => {
  it('gives cores, the accel note and the date', () => {
    expect(SUBTITLE).toBe('2 cores, QEMU under TCG (no usable KVM), 2025-01-02 03:04 UTC');
    expect(machineSubtitle('KVM', new Date('2025-01-02T03:04:05Z'), 1)).toBe('1 core, KVM, 2025-01-02 03:04 UTC');
  });
});

describe('escapeXml', () => {
  it('escapes the five special characters and drops characters XML cannot carry', () => {
    expect(escapeXml(`a<b>&"c'`)).toBe('a&lt;b&gt;&amp;&quot;c&apos;');
    expect(escapeXml('x\u0000y\u001bz\ud800')).toBe('xyz\ufffd');
    expect(escapeXml('\u00d7 ok \ud83d\ude00')).toBe('\u00d7 ok \ud83d\ude00');
  });
});

describe('latencyChart', () => {
  const svg = latencyChart(latency, 'Start latency: ctr run --rm busybox /bin/true', { subtitle: SUBTITLE });
  const t = texts(svg);

  it('is a well-formed, self-contained SVG', () => {
    expect(checkWellFormed(svg)).toBeGreaterThan(50);
    expectSelfContained(svg);
  });

  it('has the title, subtitle and every runtime, the failed one as FAILED with its error', () => {
    expect(t).toContain('Start latency: ctr run --rm busybox /bin/true');
    expect(t).toContain(SUBTITLE);
    for (const r of latency) expect(t).toContain(r.name);
    const failed = t.find((s) => s.startsWith('FAILED'));
    expect(failed).toContain('failed to create shim task: <pool> & "socket" gone');
    expect(svg).not.toContain('\u001b');
  });

  it('draws a dot per run and prints each median, p90 and run count', () => {
    expect(svg.match(/<circle /g)?.length).toBe(3 + 4 + 3 + 3 + 1); // the runs, plus the legend's dot
    expect(formatSeconds(median(latency[0]!.timesMs))).toBe('13.000 s');
    for (const r of latency.filter((x) => x.timesMs.length > 0)) {
      expect(t.some((s) => s.startsWith(formatSeconds(median(r.timesMs))))).toBe(true);
    }
    expect(t).toContain('p90 0.190 s, 3 runs');
    expect(t.some((s) => s.startsWith('4.500 s'))).toBe(true); // tern-template: median of an even count
  });

  it('gives each tern row its ratio to runc, and no other row one', () => {
    expect(t).toContain('13.000 s108\u00d7 runc'); // 13 / 0.12
    expect(t).toContain('4.500 s37.5\u00d7 runc');
    expect(t.some((s) => s.startsWith('0.280 s') && s.includes('runc'))).toBe(false);
    const noRunc = texts(
      latencyChart(
        latency.filter((r) => r.name !== 'runc'),
        'x',
      ),
    );
    expect(noRunc.some((s) => s.includes('\u00d7'))).toBe(false);
  });

  it('has a log axis in seconds labelled 1-3-10 from below runc to above tern-cold', () => {
    for (const tick of ['0.03', '0.1', '0.3', '1', '3', '10', '30']) expect(t).toContain(tick);
    expect(t).not.toContain('100');
    expect(t.some((s) => /seconds \(log scale\)/.test(s))).toBe(true);
  });

  it('labels 2 and 5 too when the data spans less than two decades', () => {
    const narrow = texts(latencyChart([{ name: 'runc', timesMs: [110, 120, 180] }], 'x'));
    for (const tick of ['0.1', '0.2', '0.3']) expect(narrow).toContain(tick);
  });

  it('escapes XML special characters in names, titles and errors', () => {
    const odd = latencyChart(
      [
        { name: `rt<&>"'`, timesMs: [100] },
        { name: 'x&y', timesMs: [], error: 'a < b && c > "d"' },
      ],
      'T <&> "q"',
      { subtitle: "s'&" },
    );
    checkWellFormed(odd);
    expect(odd).toContain('rt&lt;&amp;&gt;&quot;&apos;');
    expect(odd).not.toContain('rt<&');
    expect(odd).toContain('T &lt;&amp;&gt; &quot;q&quot;');
    expect(texts(odd)).toContain(`rt<&>"'`);
    expect(texts(odd).some((s) => s.includes('a < b && c > "d"'))).toBe(true);
  });

  it('stays well-formed with no runtimes or only failed ones', () => {
    checkWellFormed(latencyChart([], 'nothing'));
    const allFailed = latencyChart([{ name: 'runc', timesMs: [130], error: 'deadline' }], 'failed');
    checkWellFormed(allFailed);
    expect(texts(allFailed).some((s) => s.startsWith('FAILED') && s.includes('after 1 run: deadline'))).toBe(true);
  });
});

describe('concurrencyChart', () => {
  const svg = concurrencyChart(concurrency, [10, 20], { subtitle: SUBTITLE });
  const t = texts(svg);

  it('is a well-formed, self-contained SVG with a default title and the subtitle', () => {
    checkWellFormed(svg);
    expectSelfContained(svg);
    expect(t.some((s) => s.startsWith('Concurrent start'))).toBe(true);
    expect(t).toContain(SUBTITLE);
  });

  it('has a bar and a printed value per runtime and N, tern with its ratio to runc', () => {
    for (const r of concurrency) expect(t).toContain(r.name);
    expect(t).toContain('n=10: 31.03 s39.3\u00d7 runc');
    expect(t).toContain('n=20: 64.64 s36.5\u00d7 runc');
    expect(t).toContain('n=10: 0.79 s');
    expect(t).toContain('n=20: 1.77 s');
    expect(t).toContain('n=10: 1.50 s');
    expect(svg.match(/<rect [^>]*height="16"/g)?.length).toBe(6);
    for (const n of [10, 20]) expect(t).toContain(`N = ${n} at once`);
  });

  it('marks a missing N as FAILED and a runtime without data as a FAILED row', () => {
    expect(t.filter((s) => s === 'n=20:FAILED')).toHaveLength(2); // tern-pool, gvisor
    expect(t).toContain('FAILEDctr run exited 1: timeout');
  });

  it('has a log axis in seconds', () => {
    for (const tick of ['0.3', '1', '3', '10', '30', '100']) expect(t).toContain(tick);
    expect(t.some((s) => /\(log scale\)/.test(s))).toBe(true);
  });
});

describe('densityChart', () => {
  const svg = densityChart(density, [10, 20], { subtitle: SUBTITLE, note: 'tern template store: 145.7 MiB resident & shared' });
  const t = texts(svg);

  it('is a well-formed, self-contained SVG', () => {
    checkWellFormed(svg);
    expectSelfContained(svg);
    expect(t.some((s) => s.startsWith('Memory per idle container'))).toBe(true);
    expect(t).toContain('tern template store: 145.7 MiB resident & shared');
  });

  it('prints MiB per container for each N, with and without KSM', () => {
    for (const r of density) expect(t).toContain(r.name);
    for (const v of ['n=10: 127.8 MiB', 'n=20: 121.3 MiB', 'n=10 + KSM: 118.7 MiB', 'n=10: 2.9 MiB', 'n=20 + KSM: 2.8 MiB', 'n=20 + KSM: 13.6 MiB']) {
      expect(t).toContain(v);
    }
    expect(t).toContain('10 idle, after KSM');
  });

  it('marks missing values and failed runtimes', () => {
    expect(t).toContain('n=20 + KSM:FAILED'); // tern-template
    expect(t).toContain('n=20:FAILED'); // gvisor
    expect(t).toContain('FAILED3/10 failed to start');
  });

  it('has a linear axis from 0 and the RunD reference line', () => {
    for (const tick of ['0', '20', '40', '60', '80', '100', '120', '140']) expect(t).toContain(tick);
    expect(t).toContain(`RunD ${RUND_MIB} MiB`);
    expect(t).toContain('RunD 24 MiB');
    expect(svg).toMatch(/<line [^>]*stroke-dasharray="6 4"/);
  });

  it('keeps the reference line in view when every value is far below it, and leaves out KSM bars when none were measured', () => {
    const small = densityChart([{ name: 'runc', mib: { 5: 2.5 } }], [5]);
    checkWellFormed(small);
    expect(texts(small)).toContain('RunD 24 MiB');
    expect(texts(small).some((s) => s.includes('KSM'))).toBe(false);
  });
});

describe('writeChart', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'tern-plot-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    vi.restoreAllMocks();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const svg = latencyChart(latency, 'chart', { subtitle: SUBTITLE });
  const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

  /** A bin directory holding one fake converter script (only shell builtins: PATH is this directory alone). */
  function fakeBin(name: string, script: string): NodeJS.ProcessEnv {
    const bin = tempDir();
    writeFileSync(join(bin, name), `#!/bin/sh\n${script}\n`);
    chmodSync(join(bin, name), 0o755);
    return { PATH: bin };
  }

  it('writes the SVG (creating the directory), and a PNG only where a converter is found', () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const dir = join(tempDir(), 'build', 'bench');
    const paths = writeChart(dir, 'start-latency', svg);
    expect(paths[0]).toBe(join(dir, 'start-latency.svg'));
    expect(readFileSync(paths[0]!, 'utf8')).toBe(svg);
    const png = join(dir, 'start-latency.png');
    if (pngConverter()) {
      expect(paths).toEqual([paths[0], png]);
      expect(readFileSync(png).subarray(0, 8)).toEqual(PNG_SIGNATURE);
    } else {
      expect(paths).toEqual([paths[0]]);
      expect(existsSync(png)).toBe(false);
    }
  });

  it('runs rsvg-convert when it is on PATH and checks that it wrote the PNG', () => {
    const env = fakeBin(
      'rsvg-convert',
      `[ "$1" = --version ] && { echo "rsvg-convert version 2.54.7"; exit 0; }
out=""; prev=""
for a in "$@"; do [ "$prev" = --output ] && out="$a"; prev="$a"; done
printf '\\211PNG\\r\\n\\032\\n' > "$out"`,
    );
    expect(pngConverter(env)?.name).toBe('rsvg-convert');
    const dir = tempDir();
    const paths = writeChart(dir, 'fleet-density', svg, env);
    expect(paths).toEqual([join(dir, 'fleet-density.svg'), join(dir, 'fleet-density.png')]);
    expect(readFileSync(paths[1]!).subarray(0, 8)).toEqual(PNG_SIGNATURE);
  });

  it('leaves no PNG and says why when the converter fails', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const env = fakeBin('rsvg-convert', `[ "$1" = --version ] && exit 0\necho "cannot render" >&2\nexit 3`);
    const dir = tempDir();
    expect(writeChart(dir, 'c', svg, env)).toEqual([join(dir, 'c.svg')]);
    expect(readdirSync(dir)).toEqual(['c.svg']);
    expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toMatch(/rsvg-convert failed .*exit 3: cannot render/);
  });

  it('takes convert only when it is ImageMagick', () => {
    expect(pngConverter(fakeBin('convert', 'echo "convert: not the one"; exit 1'))).toBeUndefined();
    expect(pngConverter(fakeBin('convert', 'echo "Version: ImageMagick 6.9.11-60 Q16 x86_64"; exit 0'))?.name).toBe('convert');
  });

  it('without a converter writes no PNG (removing an old one) and says so on stderr once', async () => {
    vi.resetModules();
    const fresh = await import('../../../bench/plot');
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const env = { PATH: tempDir() };
    expect(fresh.pngConverter(env)).toBeUndefined();
    const dir = tempDir();
    writeFileSync(join(dir, 'a.png'), 'from an earlier run');
    expect(fresh.writeChart(dir, 'a', svg, env)).toEqual([join(dir, 'a.svg')]);
    expect(fresh.writeChart(dir, 'b', svg, env)).toEqual([join(dir, 'b.svg')]);
    expect(readdirSync(dir).sort()).toEqual(['a.svg', 'b.svg']);
    const said = stderr.mock.calls.map((c) => String(c[0])).filter((s) => s.includes('no PNG'));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/rsvg-convert.*convert/);
  });
});

describe('chart output location', () => {
  it('is build/bench of the repository, and the subtitle names cores and accel', () => {
    expect(benchOutDir()).toMatch(/[/\\]build[/\\]bench$/);
    expect(hostSubtitle(new Date('2025-01-02T03:04:05Z'))).toMatch(/^\d+ cores?, tern's QEMU under (KVM|TCG \(no usable KVM\)), 2025-01-02 03:04 UTC$/);
  });
});
