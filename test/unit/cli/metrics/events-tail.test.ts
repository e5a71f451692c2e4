// Following the start events file as shims append to it and rotate it:
// everything kept at the first read (.1 then the current file), only what is
// new later, the rest of a rotated file before the new one, a line being
// written left for the next read, garbage counted and skipped. Real files,
// written by the shims' own writer where the test is about the shims' files.
import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventsTail } from '../../../../src/cli/metrics/events-tail';
import { EVENTS_FORMAT_VERSION, formatEvent, rotatedPath, StartEventLog, type StartEvent } from '../../../../src/shim/metrics-events';

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-tail-'));
  path = join(dir, 'events.jsonl');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ev = (sandbox: string): StartEvent => ({
  v: EVENTS_FORMAT_VERSION,
  at: '2025-01-01T00:00:00.000Z',
  namespace: 'default',
  sandbox,
  kind: 'start',
  path: 'pool',
  phasesMs: { vm_ready: 100, container_created: 200, process_started: 300 },
});
const ids = (r: { events: StartEvent[] }) => r.events.map((e) => e.sandbox);

describe('EventsTail', () => {
  it('reads nothing when there is no file yet, then what appears', () => {
    const tail = new EventsTail(path);
    expect(tail.read()).toEqual({ events: [], invalidLines: 0 });
    appendFileSync(path, formatEvent(ev('a')));
    expect(ids(tail.read())).toEqual(['a']);
    expect(ids(tail.read())).toEqual([]);
  });

  it('reads the rotated file and the current one at first, then only what was appended', () => {
    writeFileSync(rotatedPath(path), formatEvent(ev('old1')) + formatEvent(ev('old2')));
    writeFileSync(path, formatEvent(ev('cur1')));
    const tail = new EventsTail(path);
    expect(ids(tail.read())).toEqual(['old1', 'old2', 'cur1']);
    appendFileSync(path, formatEvent(ev('cur2')) + formatEvent(ev('cur3')));
    expect(ids(tail.read())).toEqual(['cur2', 'cur3']);
    expect(ids(tail.read())).toEqual([]);
  });

  it('leaves a line still being written for the next read', () => {
    const line = formatEvent(ev('b'));
    writeFileSync(path, formatEvent(ev('a')) + line.slice(0, 30));
    const tail = new EventsTail(path);
    expect(tail.read()).toMatchObject({ invalidLines: 0 });
    appendFileSync(path, line.slice(30));
    expect(tail.read()).toEqual({ events: [ev('b')], invalidLines: 0 });
  });

  it('skips and counts garbage lines, a torn line and a huge line without a newline', () => {
    writeFileSync(path, ['not json', '{"v":1,"kind":"start"}', formatEvent(ev('a')).trim(), '', '{"torn":'].join('\n') + formatEvent(ev('b')));
    const tail = new EventsTail(path);
    // A torn write followed by a whole line: the two together are one bad line.
    expect(tail.read()).toEqual({ events: [ev('a')], invalidLines: 3 });
    appendFileSync(path, 'z'.repeat(200_000));
    expect(tail.read()).toMatchObject({ events: [], invalidLines: 1 });
    appendFileSync(path, `zzz\n${formatEvent(ev('c'))}`);
    const r = tail.read();
    expect(ids(r)).toEqual(['c']);
  });

  it('after a rotation, reads the rest of the old file (now .1) and then the new one from its start', () => {
    const tail = new EventsTail(path);
    const lineBytes = Buffer.byteLength(formatEvent(ev('x0')));
    const log = new StartEventLog(path, lineBytes * 4);
    log.append(ev('x0'));
    log.append(ev('x1'));
    expect(ids(tail.read())).toEqual(['x0', 'x1']);
    log.append(ev('x2'));
    log.append(ev('x3'));
    log.append(ev('x4')); // past the bound: rotated after this write
    log.append(ev('y0'));
    log.append(ev('y1'));
    expect(ids(tail.read())).toEqual(['x2', 'x3', 'x4', 'y0', 'y1']);
    log.append(ev('y2'));
    expect(ids(tail.read())).toEqual(['y2']);
  });

  it('counts the unfinished end of a rotated file as invalid, and survives the file vanishing', () => {
    writeFileSync(path, formatEvent(ev('a')));
    const tail = new EventsTail(path);
    expect(ids(tail.read())).toEqual(['a']);
    appendFileSync(path, `${formatEvent(ev('b'))}{"half`);
    renameSync(path, rotatedPath(path));
    expect(tail.read()).toEqual({ events: [ev('b')], invalidLines: 1 });
    unlinkSync(rotatedPath(path));
    expect(tail.read()).toEqual({ events: [], invalidLines: 0 });
    writeFileSync(path, formatEvent(ev('c')));
    expect(ids(tail.read())).toEqual(['c']);
  });

  it('rereads a file truncated under it', () => {
    writeFileSync(path, formatEvent(ev('a')) + formatEvent(ev('b')));
    const tail = new EventsTail(path);
    expect(ids(tail.read())).toEqual(['a', 'b']);
    truncateSync(path, 0);
    appendFileSync(path, formatEvent(ev('c')));
    expect(ids(tail.read())).toEqual(['c']);
  });

  it('throws when the file is there but cannot be read', () => {
    const tail = new EventsTail(dir); // a directory: open works, reading fails
    expect(() => tail.read()).toThrow();
  });
});
