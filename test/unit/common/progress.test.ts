// Progress: the live line on a terminal-like stream (isTTY, columns), its
// redraw throttle and final clean line; plain step lines on a non-TTY stream
// and under CI. The streams are real Writables that record what was written;
// time is vitest's fake clock (timers and Date).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CLEAR_LINE, ciSet, Progress, progressMode } from '../../../src/common/progress';
import { recordingStream } from './recording-stream';

const now = () => Date.now();
const ESC = '\x1b';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('progressMode', () => {
  it('is live on a TTY without CI, lines on a pipe or under CI, off without a stream', () => {
    const tty = recordingStream({ columns: 80 });
    expect(progressMode(tty, {})).toBe('live');
    expect(progressMode(tty, { CI: '1' })).toBe('lines');
    expect(progressMode(tty, { CI: 'true' })).toBe('lines');
    expect(progressMode(tty, { TERM: 'dumb' })).toBe('lines');
    expect(progressMode(recordingStream(), {})).toBe('lines');
    expect(progressMode(undefined, {})).toBe('off');
  });

  it('takes an empty CI, CI=false and CI=0 as unset', () => {
    expect(ciSet({})).toBe(false);
    expect(ciSet({ CI: '' })).toBe(false);
    expect(ciSet({ CI: 'false' })).toBe(false);
    expect(ciSet({ CI: '0' })).toBe(false);
    expect(ciSet({ CI: '1' })).toBe(true);
  });
});

describe('on a terminal', () => {
  it('draws the step, its counter and its seconds in place, and ends on a clean line', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: {}, prefix: 'init: ', now });
    expect(p.mode).toBe('live');
    p.begin('boot', { current: 1, total: 3 });
    expect(s.writes).toEqual([`${CLEAR_LINE}init: [1/3] boot 0.0s`]);
    vi.advanceTimersByTime(1000);
    expect(s.writes.at(-1)).toBe(`${CLEAR_LINE}init: [1/3] boot 1.0s`);
    p.begin('agent ready', { current: 2, total: 3 }, 'tcg');
    vi.advanceTimersByTime(100);
    expect(s.writes.at(-1)).toBe(`${CLEAR_LINE}init: [2/3] agent ready tcg 0.1s`);
    expect(s.writes.join('')).not.toContain('\n');
    p.end();
    expect(s.writes.at(-1)).toBe(CLEAR_LINE);
    const written = s.writes.length;
    vi.advanceTimersByTime(5000);
    p.begin('late');
    p.end();
    expect(s.writes.length).toBe(written);
  });

  it('redraws at most once per 100 ms, however often it is updated', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: {}, now });
    p.begin('runs', { current: 0, total: 1000 });
    for (let i = 1; i <= 1000; i++) {
      p.update({ count: { current: i, total: 1000 } });
      vi.advanceTimersByTime(1);
    }
    const draws = s.writes.filter((w) => w.startsWith(CLEAR_LINE) && w.length > CLEAR_LINE.length);
    // 1000 updates over one second: the first draw and one per 100 ms after it.
    expect(draws.length).toBeGreaterThanOrEqual(9);
    expect(draws.length).toBeLessThanOrEqual(11);
    // The last update shows within one redraw interval.
    vi.advanceTimersByTime(100);
    expect(s.writes.at(-1)).toMatch(/\[1000\/1000\] runs 1\.\ds$/);
    p.end();
  });

  it('keeps the counter when only the detail changes, and shows the change within one interval', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: {}, now });
    p.begin('run', { current: 3, total: 10 });
    vi.advanceTimersByTime(30);
    p.update({ detail: 'runc' });
    expect(s.writes).toHaveLength(1); // 30 ms after the last frame: no draw yet
    vi.advanceTimersByTime(70);
    expect(s.writes).toEqual([`${CLEAR_LINE}[3/10] run 0.0s`, `${CLEAR_LINE}[3/10] run runc 0.1s`]);
    p.end();
  });

  it('does not redraw an unchanged line', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: {}, now, redrawMs: 100 });
    p.begin('wait');
    vi.advanceTimersByTime(40); // 0.04 s still prints as 0.0s
    p.update({ detail: undefined });
    expect(s.writes).toHaveLength(1);
    p.end();
  });

  it('cuts the line one column short of the terminal width', () => {
    const s = recordingStream({ columns: 20 });
    const p = new Progress({ stream: s, env: {}, now });
    p.begin('a step with a rather long name', { current: 12, total: 40 });
    expect(s.writes[0]).toBe(`${CLEAR_LINE}[12/40] a step with`);
    expect(s.writes[0]!.length - CLEAR_LINE.length).toBe(19);
    p.end();
  });

  it('prints a line above the status without tearing it, and the status comes back', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: {}, now });
    p.begin('boot');
    p.print('a log line\n');
    expect(s.writes.slice(1)).toEqual([CLEAR_LINE, 'a log line\n']);
    vi.advanceTimersByTime(100);
    expect(s.writes.at(-1)).toBe(`${CLEAR_LINE}boot 0.1s`);
    p.end();
  });

  it('clears the line when a step finishes, failed or not', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: {}, now });
    p.begin('save');
    p.fail();
    expect(s.writes.at(-1)).toBe(CLEAR_LINE);
    vi.advanceTimersByTime(500);
    expect(s.writes.at(-1)).toBe(CLEAR_LINE);
    p.end();
  });
});

describe('elsewhere', () => {
  function runSteps(p: Progress): void {
    p.begin('boot', { current: 1, total: 2 });
    for (let i = 0; i < 15; i++) {
      vi.advanceTimersByTime(100);
      p.update({ detail: `tick ${i}` });
    }
    p.begin('save', { current: 2, total: 2 });
    vi.advanceTimersByTime(250);
    p.fail();
    p.end();
  }

  it('writes one plain line per finished step on a non-TTY stream, no live updates', () => {
    const s = recordingStream();
    const p = new Progress({ stream: s, env: {}, prefix: 'bench: ', now });
    expect(p.mode).toBe('lines');
    runSteps(p);
    expect(s.writes).toEqual(['bench: [1/2] boot 1.5s\n', 'bench: [2/2] save failed after 0.3s\n']);
    expect(s.writes.join('')).not.toContain('\r');
    expect(s.writes.join('')).not.toContain(ESC);
  });

  it('writes plain lines on a terminal when CI is set', () => {
    const s = recordingStream({ columns: 80 });
    const p = new Progress({ stream: s, env: { CI: '1' }, now });
    expect(p.mode).toBe('lines');
    runSteps(p);
    expect(s.writes).toEqual(['[1/2] boot 1.5s\n', '[2/2] save failed after 0.3s\n']);
  });

  it('shows no steps in mode off (printed lines still pass), and writes nothing without a stream', () => {
    const s = recordingStream({ columns: 80 });
    const off = new Progress({ stream: s, mode: 'off', now });
    runSteps(off);
    expect(s.writes).toEqual([]);
    off.print('an error\n');
    expect(s.writes).toEqual(['an error\n']);
    const none = new Progress({ now });
    expect(none.mode).toBe('off');
    runSteps(none);
    none.print('nowhere\n');
  });

  it('passes printed text through unchanged', () => {
    const s = recordingStream();
    const p = new Progress({ stream: s, env: {}, now });
    p.begin('x');
    p.print('line\n');
    p.end();
    expect(s.writes).toEqual(['line\n', 'x 0.0s\n']);
  });
});
