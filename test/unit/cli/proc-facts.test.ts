// Parsers behind the sandbox listing: PSS from smaps_rollup, vCPUs and memory
// from a QEMU argv, tails of console logs, and the text formatting helpers.
import { describe, expect, it } from 'vitest';
import { duration, kibToMiB, printable, table } from '../../../src/cli/format';
import { parseQemuMemory, parseQemuSmp, processPssKiB, pssFromRollup, resourcesFromArgv, tailLines } from '../../../src/cli/proc-facts';

describe('proc facts', () => {
  it('reads Pss from smaps_rollup text and from this process', () => {
    expect(pssFromRollup('55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss: 2048 kB\nPss:    1234 kB\nPss_Anon: 1000 kB\n')).toBe(1234);
    expect(pssFromRollup('Rss: 1 kB\n')).toBeNull();
    expect(processPssKiB(process.pid)).toBeGreaterThan(1000);
    expect(processPssKiB(0x7ffffff0)).toBeNull();
  });

  it('parses QEMU -m and -smp forms', () => {
    expect(parseQemuMemory('512M')).toBe(512);
    expect(parseQemuMemory('2G')).toBe(2048);
    expect(parseQemuMemory('size=1G,slots=2,maxmem=4G')).toBe(1024);
    expect(parseQemuMemory('256')).toBe(256);
    expect(parseQemuMemory('lots')).toBeNull();
    expect(parseQemuSmp('2')).toBe(2);
    expect(parseQemuSmp('cpus=4,sockets=1')).toBe(4);
    expect(parseQemuSmp('sockets=1')).toBeNull();
    expect(resourcesFromArgv(['qemu', '-smp', '2', '-m', '1G', '-name', 'x'])).toEqual({ vcpus: 2, memoryMiB: 1024 });
    expect(resourcesFromArgv(['qemu', '-m'])).toEqual({ vcpus: null, memoryMiB: null });
  });

  it('takes the last lines of a text', () => {
    expect(tailLines('a\nb\nc\n', 2)).toEqual(['b', 'c']);
    expect(tailLines('a\nb', 5)).toEqual(['a', 'b']);
    expect(tailLines('', 3)).toEqual([]);
  });
});

describe('format', () => {
  it('aligns table columns', () => {
    expect(
      table([
        ['A', 'BB', 'C'],
        ['long', 'x', 'y'],
      ]),
    ).toBe('A     BB  C\nlong  x   y\n');
  });
  it('formats durations and sizes', () => {
    expect(duration(5)).toBe('5s');
    expect(duration(185)).toBe('3m05s');
    expect(duration(7620)).toBe('2h07m');
    expect(duration(3 * 86400 + 4 * 3600)).toBe('3d04h');
    expect(kibToMiB(51200)).toBe('50.0 MiB');
  });
  it('strips terminal escapes from console lines', () => {
    expect(printable('\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r')).toBe('SeaBIOS (version 1.16)');
    expect(printable('a\tb\x07')).toBe('a\tb');
  });
});
