// The start events file the shims append to: one line per event, short,
// rotated to .1 past its bound (by whichever writer finds it full, unless
// another already did), errors reported instead of thrown; and the parser
// that takes only well-formed events of this version.
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  EVENTS_FORMAT_VERSION,
  eventsPath,
  formatEvent,
  MAX_EVENT_LINE_BYTES,
  parseEvent,
  rotatedPath,
  rotateIfFull,
  StartEventLog,
  type StartEvent,
} from '../../../src/shim/metrics-events';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-events-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const base = { v: EVENTS_FORMAT_VERSION, at: '2025-01-01T00:00:00.000Z', namespace: 'default', sandbox: 'pod-1' } as const;
const start = (sandbox = 'pod-1'): StartEvent => ({
  ...base,
  sandbox,
  kind: 'start',
  path: 'template',
  phasesMs: { vm_ready: 3000, container_created: 3400, process_started: 3500 },
});

describe('StartEventLog', () => {
  it('appends one line per event under <stateDir>/metrics, making the directory', () => {
    const path = eventsPath(join(dir, 'state'));
    expect(path).toBe(join(dir, 'state', 'metrics', 'events.jsonl'));
    const log = new StartEventLog(path, 1 << 20);
    log.append(start('a'));
    log.append({ ...base, kind: 'fallback', from: 'pool', reason: 'refused', detail: 'no ready VM in the pool (1 starting)' });
    log.append({ ...base, kind: 'failure', phase: 'vm_ready', reason: 'DeadlineExceeded', detail: 'guest agent did not answer' });
    const lines = readFileSync(path, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.map((l) => parseEvent(l)?.kind)).toEqual(['start', 'fallback', 'failure']);
    expect(parseEvent(lines[0]!)).toEqual(start('a'));
  });

  it('cuts long details so that a line stays well under 4 KiB, and drops a line that would not', () => {
    const errors: Error[] = [];
    const path = join(dir, 'e.jsonl');
    const log = new StartEventLog(path, 1 << 20, (e) => errors.push(e));
    log.append({ ...base, kind: 'failure', phase: 'vm_ready', reason: 'Internal', detail: 'x'.repeat(100_000) });
    const line = readFileSync(path, 'utf8');
    expect(Buffer.byteLength(line)).toBeLessThan(1024);
    expect((parseEvent(line.trim()) as { detail: string }).detail).toMatch(/^x+\.\.\.$/);
    log.append({
      ...base,
      sandbox: 's'.repeat(MAX_EVENT_LINE_BYTES),
      kind: 'start',
      path: 'cold',
      phasesMs: { vm_ready: 1, container_created: 2, process_started: 3 },
    });
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/not written \(limit 3500\)/)]);
    expect(readFileSync(path, 'utf8')).toBe(line);
  });

  it('rotates to .1 once past its bound, replacing the previous .1', () => {
    const path = join(dir, 'e.jsonl');
    const lineBytes = Buffer.byteLength(formatEvent(start()));
    const log = new StartEventLog(path, lineBytes * 3);
    for (let i = 0; i < 3; i++) log.append(start(`a${i}`));
    expect(existsSync(rotatedPath(path))).toBe(false);
    log.append(start('a3')); // 4 lines > bound: renamed away after the write
    expect(existsSync(path)).toBe(false);
    expect(readFileSync(rotatedPath(path), 'utf8').trim().split('\n')).toHaveLength(4);
    log.append(start('b0'));
    expect(
      readFileSync(path, 'utf8')
        .trim()
        .split('\n')
        .map((l) => parseEvent(l)!.sandbox),
    ).toEqual(['b0']);
    for (let i = 1; i < 4; i++) log.append(start(`b${i}`));
    expect(
      readFileSync(rotatedPath(path), 'utf8')
        .trim()
        .split('\n')
        .map((l) => parseEvent(l)!.sandbox),
    ).toEqual(['b0', 'b1', 'b2', 'b3']);
    expect(existsSync(path)).toBe(false);
  });

  it('rotates only the file it wrote to: not the new one another writer started meanwhile', () => {
    const path = join(dir, 'e.jsonl');
    writeFileSync(path, `${'x'.repeat(100)}\n`);
    const fd = openSync(path, 'a');
    try {
      // Another writer rotated it and a third began a new file, between our write and our check.
      renameSync(path, rotatedPath(path));
      writeFileSync(path, `${'y'.repeat(100)}\n`);
      expect(rotateIfFull(path, fd, 10)).toBe(false);
      expect(readFileSync(path, 'utf8')).toMatch(/^y+\n$/);
      expect(readFileSync(rotatedPath(path), 'utf8')).toMatch(/^x+\n$/);
    } finally {
      closeSync(fd);
    }
    const fd2 = openSync(path, 'a');
    try {
      expect(rotateIfFull(path, fd2, 1000)).toBe(false); // not full
      expect(rotateIfFull(path, fd2, 10)).toBe(true);
      expect(readFileSync(rotatedPath(path), 'utf8')).toMatch(/^y+\n$/);
      expect(existsSync(path)).toBe(false);
    } finally {
      closeSync(fd2);
    }
  });

  it('reports (never throws) when it cannot write', () => {
    const errors: Error[] = [];
    mkdirSync(join(dir, 'blocked'));
    writeFileSync(join(dir, 'blocked', 'metrics'), 'a file where the directory should be');
    const log = new StartEventLog(eventsPath(join(dir, 'blocked')), 1 << 20, (e) => errors.push(e));
    expect(() => log.append(start())).not.toThrow();
    expect(errors).toHaveLength(1);
  });
});

describe('parseEvent', () => {
  it('takes each kind of event', () => {
    for (const e of [
      start(),
      { ...base, kind: 'fallback', from: 'template', reason: 'restore_refused', detail: 'd' },
      { ...base, kind: 'failure', phase: 'process_started', reason: 'Unknown', detail: '' },
    ] as StartEvent[]) {
      expect(parseEvent(formatEvent(e).trim())).toEqual(e);
    }
  });

  it('refuses garbage, torn lines, other versions and values outside the closed sets', () => {
    const good = JSON.parse(formatEvent(start())) as Record<string, unknown>;
    const bad: unknown[] = [
      'not json',
      formatEvent(start()).slice(0, 40),
      '[]',
      'null',
      { ...good, v: 2 },
      { ...good, kind: 'other' },
      { ...good, path: 'warm' },
      { ...good, phasesMs: { vm_ready: 1, container_created: 2 } },
      { ...good, phasesMs: { vm_ready: -1, container_created: 2, process_started: 3 } },
      { ...good, namespace: '' },
      { ...base, kind: 'fallback', from: 'pool', reason: 'restore_refused', detail: '' },
      { ...base, kind: 'fallback', from: 'cache', reason: 'refused', detail: '' },
      { ...base, kind: 'failure', phase: 'vm_ready', reason: 'not a code', detail: '' },
      { ...base, kind: 'failure', phase: 'booting', reason: 'Internal', detail: '' },
    ];
    for (const b of bad) expect(parseEvent(typeof b === 'string' ? b : JSON.stringify(b)), JSON.stringify(b)).toBeUndefined();
  });
});
