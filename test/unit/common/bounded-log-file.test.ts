// The shim's bounded log file on a real temp directory: lines appended whole,
// one rotation to .1 when the cap would be passed (never a third file, never
// more than the cap in either), lines over the cap dropped, and nothing
// written (or recreated) after close() or once the directory is gone.
import { closeSync, existsSync, mkdirSync, openSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoundedLogFile } from '../../../src/common/bounded-log-file';
import { createLogger } from '../../../src/common/logging';

let root: string;
let n = 0;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'tern-blog-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function freshDir(): string {
  const d = join(root, String(++n));
  mkdirSync(d);
  return d;
}

const line = (i: number) => `${JSON.stringify({ level: 30, time: 1_700_000_000_000 + i, seq: i, msg: 'x'.repeat(40) })}\n`;

describe('BoundedLogFile', () => {
  it('appends whole lines and rotates once to .1 at the cap, never keeping more than two files', () => {
    const dir = freshDir();
    const path = join(dir, 'shim.log');
    const f = new BoundedLogFile(path, 1024);
    expect(f.open()).toBe(true);
    const written: string[] = [];
    for (let i = 0; i < 200; i++) {
      written.push(line(i));
      f.write(line(i));
      expect(statSync(path).size).toBeLessThanOrEqual(1024);
      if (existsSync(f.previousPath)) expect(statSync(f.previousPath).size).toBeLessThanOrEqual(1024);
      expect(readdirSync(dir).sort()).toEqual(existsSync(f.previousPath) ? ['shim.log', 'shim.log.1'] : ['shim.log']);
    }
    f.close();
    expect(f.dropped).toBe(0);
    const prev = readFileSync(f.previousPath, 'utf8');
    const cur = readFileSync(path, 'utf8');
    // Every line intact, the newest ones kept, in order across the two files.
    const kept = (prev + cur).split('\n').filter(Boolean);
    for (const l of kept) expect(() => JSON.parse(l)).not.toThrow();
    const seqs = kept.map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs[seqs.length - 1]).toBe(199);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    expect(`${kept.join('\n')}\n`).toBe(written.slice(seqs[0]).join(''));
    // The current file was begun by a rotation, not filled past the cap: the next line would not have fitted into .1.
    expect(Buffer.byteLength(prev) + Buffer.byteLength(line(seqs[0]! + prev.split('\n').filter(Boolean).length))).toBeGreaterThan(1024);
  });

  it('appends to an existing file and counts its size towards the cap', () => {
    const dir = freshDir();
    const path = join(dir, 'shim.log');
    writeFileSync(path, `${'a'.repeat(1000)}\n`);
    const f = new BoundedLogFile(path, 1024);
    f.open();
    f.write(line(1));
    f.close();
    expect(readFileSync(f.previousPath, 'utf8')).toBe(`${'a'.repeat(1000)}\n`);
    expect(readFileSync(path, 'utf8')).toBe(line(1));
  });

  it('drops a line longer than the cap, and lines before open() and after close()', () => {
    const dir = freshDir();
    const f = new BoundedLogFile(join(dir, 'shim.log'), 256);
    f.write(line(0));
    expect(existsSync(join(dir, 'shim.log'))).toBe(false);
    f.open();
    f.write(`${'y'.repeat(300)}\n`);
    f.write(line(1));
    f.close();
    f.write(line(2));
    f.close();
    expect(readFileSync(join(dir, 'shim.log'), 'utf8')).toBe(line(1));
    expect(f.dropped).toBe(3);
  });

  it('never throws and never recreates a removed directory', () => {
    const dir = freshDir();
    const f = new BoundedLogFile(join(dir, 'shim.log'), 256);
    f.open();
    f.write(line(0));
    rmSync(dir, { recursive: true });
    // Up to and past the point where a rotation is due.
    for (let i = 1; i < 20; i++) expect(() => f.write(line(i))).not.toThrow();
    expect(existsSync(dir)).toBe(false);
    expect(f.dropped).toBeGreaterThan(0);
    f.close();
  });

  it('cannot open in a missing directory: closed for good, writes dropped', () => {
    const f = new BoundedLogFile(join(root, 'no', 'such', 'shim.log'), 1024);
    expect(f.open()).toBe(false);
    expect(() => f.write(line(0))).not.toThrow();
    expect(existsSync(join(root, 'no'))).toBe(false);
  });
});

describe('createLogger with a file', () => {
  it('writes the same lines to the destination and the file, child bindings included', () => {
    const dir = freshDir();
    const fifoStandIn = join(dir, 'fifo.out');
    writeFileSync(fifoStandIn, '');
    const fd = openSync(fifoStandIn, 'w');
    const file = new BoundedLogFile(join(dir, 'shim.log'), 64 * 1024);
    file.open();
    const log = createLogger({ name: 'test', destination: { fd, mode: 'drop-when-busy' }, file }).child({ namespace: 'ns', sandbox: 'sb1' });
    log.info('plain');
    log.child({ container: 'c1' }).warn({ exitStatus: 7 }, 'about a container');
    file.close();
    closeSync(fd);
    const fileText = readFileSync(join(dir, 'shim.log'), 'utf8');
    expect(fileText).toBe(readFileSync(fifoStandIn, 'utf8'));
    const [a, b] = fileText
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(a).toMatchObject({ level: 30, name: 'test', namespace: 'ns', sandbox: 'sb1', msg: 'plain' });
    expect(a!.container).toBeUndefined();
    expect(b).toMatchObject({ level: 40, namespace: 'ns', sandbox: 'sb1', container: 'c1', exitStatus: 7, msg: 'about a container' });
    expect(typeof b!.time).toBe('number');
  });
});
