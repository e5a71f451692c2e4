// The guest I/O benchmark's pure parts: what a container's script prints and
// how it is read, the --variant option, and the per-workload tables.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  guestScript,
  type IoRow,
  ioTables,
  judgeRun,
  parseBusyboxElapsed,
  parseGuestIo,
  parseVariant,
  parseVariants,
  UsageError,
  variantConfig,
} from '../../../bench/guest-io-report';
import { parseConfig } from '../../../src/common/config';

describe('parseBusyboxElapsed', () => {
  it('reads busybox time\'s "real" figure below and above an hour', () => {
    expect(parseBusyboxElapsed('0m 0.22s')).toBeCloseTo(0.22, 9);
    expect(parseBusyboxElapsed('2m 3.50s')).toBeCloseTo(123.5, 9);
    expect(parseBusyboxElapsed(' 0m 1.07s\t')).toBeCloseTo(1.07, 9);
    expect(parseBusyboxElapsed('1h 2m 03s')).toBe(3723);
  });

  it('refuses anything else', () => {
    for (const s of ['', '0.22', '0.22s', 'real\t0m 0.22s', '0m 0.22', '0m .22s', '0m 0.22s extra', 'failed: exit 1']) {
      expect(parseBusyboxElapsed(s), s).toBeUndefined();
    }
  });
});

describe('parseGuestIo', () => {
  it('takes the time of each workload from its line, ignoring other lines', () => {
    const out = parseGuestIo('noise\ntern-io shm-write 0m 0.22s\ntern-io layer-write 0m 0.43s\r\ntern-io other 0m 9.99s\ntern-io pipe-md5 0m 1.80s\n');
    expect(out.errors).toEqual([]);
    expect(out.seconds).toEqual({ 'shm-write': 0.22, 'layer-write': 0.43, 'pipe-md5': 1.8 });
  });

  it('names each workload whose line is missing, failed, repeated or unparsable', () => {
    const out = parseGuestIo(
      ['tern-io shm-write failed: exit 1', 'tern-io layer-write 0m 0.40s', 'tern-io layer-write 0m 0.41s', 'tern-io pipe-md5 '].join('\n'),
    );
    expect(out.seconds).toEqual({});
    expect(out.errors).toEqual(['shm-write failed: exit 1', 'layer-write: 2 result lines', 'pipe-md5: unparsable time ""']);
    expect(parseGuestIo('').errors).toEqual(['shm-write: no result line', 'layer-write: no result line', 'pipe-md5: no result line']);
  });
});

describe('judgeRun', () => {
  const good = 'tern-io shm-write 0m 0.22s\ntern-io layer-write 0m 0.43s\ntern-io pipe-md5 0m 1.80s\n';

  it('is a success with exit code 0 and every workload timed', () => {
    expect(judgeRun(0, good, 'ignored\n')).toEqual({ seconds: { 'shm-write': 0.22, 'layer-write': 0.43, 'pipe-md5': 1.8 } });
  });

  it('fails on a non-zero exit even with every time there, and keeps the times for the record', () => {
    const r = judgeRun(137, good, 'ctr: task killed\n');
    expect(r.error).toBe('exit code 137 (ctr: task killed)');
    expect(r.seconds['pipe-md5']).toBe(1.8);
  });

  it('fails on a missing or failed workload, with the last line of stderr', () => {
    const out = 'tern-io shm-write failed: exit 1\ntern-io layer-write 0m 0.43s\n';
    const err = "dd: error writing '/dev/shm/f': No space left on device\n\n";
    expect(judgeRun(1, out, err).error).toBe(
      "exit code 1; shm-write failed: exit 1; pipe-md5: no result line (dd: error writing '/dev/shm/f': No space left on device)",
    );
    expect(judgeRun(0, out, '').error).toBe('shm-write failed: exit 1; pipe-md5: no result line');
  });
});

describe('guestScript', () => {
  // The script as the container runs it, on the host's busybox (its applets
  // first on PATH, as in the busybox image) with its files moved to a directory
  // of the test's own: its lines are what parseGuestIo reads. busybox-static
  // is one of the packages scripts/setup-host.sh installs.
  const busyboxPath = spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim();
  if (busyboxPath === '') throw new Error('busybox not found on PATH: install the Debian package busybox-static (scripts/setup-host.sh does)');
  const dir = mkdtempSync(join(tmpdir(), 'tern-guest-io-'));
  const files = join(dir, 'files');
  const bin = join(dir, 'bin');
  mkdirSync(files);
  mkdirSync(bin);
  for (const applet of ['sh', 'time', 'dd', 'md5sum', 'sed', 'rm']) symlinkSync(busyboxPath, join(bin, applet));
  const env = { PATH: `${bin}:${process.env.PATH}` };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('times every workload in a line parseGuestIo reads, and removes its files', () => {
    const script = guestScript(2).replaceAll('/dev/shm/f', join(files, 'shm')).replaceAll('/tmp/f', join(files, 'layer'));
    const r = spawnSync(join(bin, 'sh'), ['-c', script], { encoding: 'utf8', env });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(judgeRun(r.status!, r.stdout, r.stderr)).toEqual({
      seconds: { 'shm-write': expect.any(Number), 'layer-write': expect.any(Number), 'pipe-md5': expect.any(Number) },
    });
    expect(readdirSync(files)).toEqual([]);
  });

  it('reports a failing workload as failed, its error on stderr, and exits 1', () => {
    const script = guestScript(1)
      .replaceAll('/dev/shm/f', join(files, 'missing', 'shm'))
      .replaceAll('/tmp/f', join(files, 'layer'));
    const r = spawnSync(join(bin, 'sh'), ['-c', script], { encoding: 'utf8', env });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^tern-io shm-write failed: exit 1$/m);
    expect(r.stderr).toContain('dd: can');
    expect(judgeRun(r.status!, r.stdout, r.stderr).error).toMatch(/^exit code 1; shm-write failed: exit 1 \(dd: can/);
  });

  it('writes --mib MiB in each workload', () => {
    const script = guestScript(16);
    expect(script.match(/count=16 /g)).toHaveLength(3);
    expect(script).not.toContain('count=64');
  });
});

describe('parseVariant(s)', () => {
  it('splits NAME=TOML at the first "=", "\\n" standing for a line break', () => {
    expect(parseVariant('cpu-max=[hypervisor]\\ntcg_cpu_model = "max"')).toEqual({ name: 'cpu-max', toml: '[hypervisor]\ntcg_cpu_model = "max"\n' });
    expect(parseVariant('same=')).toEqual({ name: 'same', toml: '' });
  });

  it('refuses [factory] and [pool], as headers or top-level dotted keys, but not a key that merely contains the word', () => {
    for (const toml of [
      '[factory]\\ntemplate = false',
      '[hypervisor]\\nvcpus = 1\\n[pool]\\nsize = 2',
      '[pool.x]\\na = 1',
      'factory.template = false',
      ' [ factory ]',
    ]) {
      expect(() => parseVariant(`v=${toml}`), toml).toThrow("--variant v: [factory] and [pool] are the benchmark's own");
    }
    expect(parseVariant('v=[runtime]\\npool_hint = 1').toml).toBe('[runtime]\npool_hint = 1\n');
  });

  it('refuses an empty, missing or unsafe NAME and a NAME given twice, as usage errors', () => {
    expect(() => parseVariant('=[hypervisor]')).toThrow(UsageError);
    expect(() => parseVariant('=[hypervisor]')).toThrow('the NAME before "=" is empty');
    expect(() => parseVariant('  =x')).toThrow('is empty');
    expect(() => parseVariant('cpu-max')).toThrow('want NAME=TOML');
    expect(() => parseVariant('a/b=x')).toThrow('NAME may hold letters');
    expect(() => parseVariant('..=x')).toThrow('NAME may hold letters');
    expect(() => parseVariants(['a=', 'b=', 'a=[runtime]'])).toThrow('--variant a: given twice');
    expect(parseVariants(['a=', 'b=']).map((v) => v.name)).toEqual(['a', 'b']);
  });

  it("gives a config tern accepts: tern-template's with the variant's sections", () => {
    const base = '[factory]\ntemplate = true\n[runtime]\nlayer_slots = 2';
    const cfg = parseConfig(variantConfig(base, parseVariant('cpu-max=[hypervisor]\\ntcg_cpu_model = "max"')));
    expect(cfg.factory.template).toBe(true);
    expect(cfg.runtime.layerSlots).toBe(2);
    expect(cfg.hypervisor.tcgCpuModel).toBe('max');
  });
});

describe('ioTables', () => {
  const row = (name: string, shm: number[], layer: number[], pipe: number[], extra: Partial<IoRow> = {}): IoRow => ({
    name,
    seconds: { 'shm-write': shm, 'layer-write': layer, 'pipe-md5': pipe },
    failures: [],
    ...extra,
  });

  it('gives per workload the median, p90, MiB/s and the ratios to runc and to the default tern row', () => {
    const rows = [
      row('tern-template', [0.24, 0.2, 0.22], [0.45, 0.43, 0.44], [1.8, 1.9, 1.7], { configPath: '/c/tern-template.toml' }),
      row('tern-template:cpu-max', [0.58, 0.6, 0.55], [0.845, 0.9, 0.8], [2.09, 2.0, 2.2], {
        variant: '[hypervisor]\ntcg_cpu_model = "max"\n',
        configPath: '/c/tern-template-cpu-max.toml',
      }),
      row('runc', [0.04, 0.05, 0.04], [0.1, 0.08, 0.09], [0.2, 0.2, 0.2]),
      row('gvisor', [], [], [], { failures: ['warm-up: exit code 1 (runsc: not found)'] }),
    ];
    const lines = ioTables(rows, 3, 64).split('\n');
    expect(lines.slice(0, 6)).toEqual([
      'shm-write: dd if=/dev/zero of=/dev/shm/f bs=1M count=64 status=none (3 runs per row)',
      'row                    runs  median (s)  p90 (s)  MiB/s   vs runc  vs default  status',
      'tern-template          3     0.220       0.240    290.9   5.50x    -           ok',
      'tern-template:cpu-max  3     0.580       0.600    110.3   14.50x   2.64x       ok',
      'runc                   3     0.040       0.050    1600.0  -        -           ok',
      'gvisor                 0/1   -           -        -       n/a      -           FAILED 1 of 1 runs: warm-up: exit code 1 (runsc: not found)',
    ]);
    // The other workloads' tables follow, each with its own figures.
    expect(lines[7]).toBe('layer-write: dd if=/dev/zero of=/tmp/f bs=1M count=64 status=none (3 runs per row)');
    expect(lines[10]).toBe('tern-template:cpu-max  3     0.845       0.900    75.7   9.39x    1.92x       ok');
    expect(lines[14]).toBe('pipe-md5: dd if=/dev/zero bs=1M count=64 status=none | md5sum (3 runs per row)');
    expect(lines[16]).toBe('tern-template          3     1.800       1.900    35.6   9.00x    -           ok');
    // Under the tables: what each variant row changed, and how it was run.
    expect(lines.slice(20)).toEqual([
      '',
      "vs default: ratio of the median to tern-template's",
      "tern-template:cpu-max: tern-template's config plus",
      '    [hypervisor]',
      '    tcg_cpu_model = "max"',
      '  ctr run --rm --runtime io.containerd.tern.v2 --runtime-config-path /c/tern-template-cpu-max.toml <image> <id> sh -c <script>',
    ]);
  });

  it('leaves out the runc and default columns when there is nothing to compare with, and counts failed runs', () => {
    const rows = [row('tern-template', [0.3, 0.2], [0.5, 0.4], [2, 1], { failures: ['run 2: pipe-md5: no result line'] })];
    expect(ioTables(rows, 3, 32).split('\n').slice(0, 3)).toEqual([
      'shm-write: dd if=/dev/zero of=/dev/shm/f bs=1M count=32 status=none (3 runs per row)',
      'row            runs  median (s)  p90 (s)  MiB/s  status',
      'tern-template  2/3   0.250       0.300    128.0  FAILED 1 of 3 runs: run 2: pipe-md5: no result line',
    ]);
  });

  it('reads n/a against a default row that did not run', () => {
    const rows = [row('runc', [0.04], [0.1], [0.2]), row('tern-template:x', [0.2], [0.4], [1.8], { variant: '' })];
    const lines = ioTables(rows, 1, 64).split('\n');
    expect(lines[3]).toBe('tern-template:x  1     0.200       0.200    320.0   5.00x    n/a         ok');
    expect(lines).toContain('vs default: n/a, no tern row without a variant ran');
  });
});
