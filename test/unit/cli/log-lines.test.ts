// Parsing, ordering and printing of `tern logs` lines, on sample files in
// the shim's and the guest console's formats (log-sample.ts).
import { describe, expect, it } from 'vitest';
import { formatHuman, formatJson } from '../../../src/cli/log-format';
import { assignKeys, consoleEntries, mergeByTime, shimEntries, since, splitLines, type SourceState } from '../../../src/cli/log-lines';
import { CONSOLE_TEXT, MERGED, SHIM_LINES, T0 } from './log-sample';

const shim = () => assignKeys(shimEntries(splitLines(SHIM_LINES.join(''))));
const guest = () => assignKeys(consoleEntries(splitLines(CONSOLE_TEXT)));

describe('console lines', () => {
  it('splits agent JSON and kernel lines from the text glued before them; kernel times from the boot time the agent tells', () => {
    const g = guest();
    expect(g.map((e) => e.kind)).toEqual(['text', 'text', 'kernel', 'json', 'json', 'kernel']);
    expect(g[0]!.text).toContain('SeaBIOS (version 1.16.2-debian-1.16.2-1)');
    expect(g[1]!.text).toBe('Booting from ROM..');
    expect(g[2]).toMatchObject({ uptime: 2.104816, time: T0 - 290 + 2105 });
    expect(g[3]!.record).toMatchObject({ msg: 'agent serving', uptimeMs: 9290 });
    expect(g[5]).toMatchObject({ uptime: 12.345678, time: T0 - 290 + 12_346 });
    // Lines without a time sort with the first timed line after them.
    expect(g[0]!.time).toBeUndefined();
    expect(g[0]!.key).toBe(g[2]!.key);
    expect(g[1]!.key).toBe(g[2]!.key);
    expect(g.every((e) => !e.text.includes('\r'))).toBe(true);
  });

  it('keeps file order where times disagree, and leaves lines without any time unkeyed', () => {
    const entries = assignKeys(consoleEntries(['{"level":30,"time":2000,"msg":"a"}', '[    0.500000] early', '{"level":30,"time":1000,"msg":"b"}', 'plain']));
    expect(entries.map((e) => e.key)).toEqual([2000, 2000, 2000, 2000]);
    expect(entries[1]!.time).toBeUndefined(); // no boot time known
    const untimed = assignKeys(consoleEntries(['[    0.500000] Kernel panic - not syncing: VFS', 'tern-guest: error: cannot mount']));
    expect(untimed.map((e) => e.key)).toEqual([undefined, undefined]);
  });

  it('carries the boot time and the last key over to the next batch (follow mode)', () => {
    const state: SourceState = {};
    assignKeys(consoleEntries(splitLines(CONSOLE_TEXT)), state);
    expect(state.bootMs).toBe(T0 - 290);
    const next = assignKeys(consoleEntries(['[   20.000000] later', 'no time']), state);
    expect(next[0]!.time).toBe(T0 - 290 + 20_000);
    expect(next[1]!.key).toBe(next[0]!.key);
  });
});

describe('merge', () => {
  it('interleaves shim and guest lines by time, each file in its order', () => {
    const merged = mergeByTime([shim(), guest()]);
    expect(merged.map((e) => [e.source, e.text])).toEqual(MERGED.map(([s, t]) => [s, expect.stringContaining(t)]));
  });

  it('puts lines with no time at all after the timed ones, in file order', () => {
    const g = assignKeys(consoleEntries(['[    0.500000] Kernel panic', 'end']));
    const merged = mergeByTime([shim(), g]);
    expect(merged.slice(-2).map((e) => e.text)).toEqual(['[    0.500000] Kernel panic', 'end']);
  });

  it('--since keeps the lines at or after the cut (and those whose time cannot be told)', () => {
    const merged = mergeByTime([shim(), guest()]);
    expect(since(merged, T0 + 9050).map((e) => `${e.source} ${e.record?.msg ?? e.text}`)).toEqual([
      'shim sandbox VM ready',
      'guest container created',
      'shim container created',
      'shim stdio fifo write failed',
      expect.stringMatching(/^guest \[ {3}12\.345678\] Out of memory/),
    ]);
    expect(since(assignKeys(consoleEntries(['no time'])), T0)).toHaveLength(1);
  });
});

describe('format', () => {
  it('prints time, source, level, message, ids and fields', () => {
    const [serving, accel, , , created, warn] = shim();
    expect(formatHuman(serving!)).toBe(
      '2026-11-23T11:00:00.000Z  shim   INFO   shim serving  sandbox=pod1 socket=/run/containerd/s/0a1b shimLog=/run/tern/sb/0a1b/shim.log',
    );
    expect(formatHuman(accel!)).toBe(
      '2026-11-23T11:00:00.100Z  shim   INFO   hypervisor acceleration chosen  sandbox=pod1 id=pod1 accel=tcg reason="no vmx/svm in /proc/cpuinfo"',
    );
    // The container's pid, written after pino's own, is shown.
    expect(formatHuman(created!)).toBe(
      '2026-11-23T11:00:09.900Z  shim   INFO   container created  sandbox=pod1 container=c1 layers=1 sinceBootMs=9900 pid=158',
    );
    expect(formatHuman(warn!)).toMatch(/^\S+ {2}shim {3}WARN {3}stdio fifo write failed {2}sandbox=pod1 container=c1 err="stdout fifo gone"$/);
    const g = guest();
    expect(formatHuman(g[0]!)).toBe(`${' '.repeat(24)}  guest  -      SeaBIOS (version 1.16.2-debian-1.16.2-1)`);
    expect(formatHuman(g[2]!)).toBe(
      `${new Date(T0 - 290 + 2105).toISOString()}  guest  KERN   [    2.104816] virtio_blk virtio2: [vda] 524288 512-byte logical blocks (268 MB/256 MiB)`,
    );
    expect(formatHuman(g[4]!)).toBe(`${new Date(T0 + 9800).toISOString()}  guest  INFO   container created  container=c1 pid=158`);
  });

  it('--json: pino lines as written with "source" added, other lines as objects', () => {
    const [serving] = shim();
    const out = formatJson(serving!);
    expect(out).toBe(`{"source":"shim",${SHIM_LINES[0]!.trim().slice(1)}`);
    expect(JSON.parse(out)).toMatchObject({ source: 'shim', sandbox: 'pod1', msg: 'shim serving', time: T0 });
    const g = guest();
    expect(JSON.parse(formatJson(g[2]!))).toEqual({ source: 'guest', kind: 'kernel', time: T0 - 290 + 2105, uptime: 2.104816, msg: g[2]!.text });
    expect(JSON.parse(formatJson(g[1]!))).toEqual({ source: 'guest', kind: 'text', msg: 'Booting from ROM..' });
    // Duplicate keys survive (the line is not re-serialized).
    expect(formatJson(g[4]!)).toContain('"pid":139,"name":"tern-agent","container":"c1","pid":158');
  });
});
