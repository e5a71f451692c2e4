// The bounded output buffer: long-poll reads, eof, and pausing the source when full.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { StreamBuffer } from '../../../../src/agent/container/stream-buffer.js';

describe('StreamBuffer', () => {
  it('answers a pending read as soon as data arrives, then eof after end', async () => {
    const src = new PassThrough();
    const b = new StreamBuffer(src, 1024);
    const pending = b.read(10);
    src.write('hello world');
    const r = await pending;
    expect(r).toEqual({ data: Buffer.from('hello worl'), eof: false });
    src.end();
    expect((await b.read(10)).data.toString()).toBe('d');
    expect(await b.read(10)).toEqual({ data: Buffer.alloc(0), eof: true });
  });

  it('pauses the source at capacity and resumes when drained', async () => {
    const src = new PassThrough();
    const b = new StreamBuffer(src, 8);
    src.write(Buffer.alloc(8, 1));
    await new Promise((r) => setImmediate(r));
    expect(src.isPaused()).toBe(true);
    expect(b.buffered).toBe(8);
    await b.read(3);
    expect(src.isPaused()).toBe(true);
    await b.read(1);
    expect(src.isPaused()).toBe(false);
  });

  it('resolves an aborted read empty, and a missing stream is eof at once', async () => {
    const b = new StreamBuffer(new PassThrough());
    const ac = new AbortController();
    const p = b.read(10, ac.signal);
    ac.abort();
    expect(await p).toEqual({ data: Buffer.alloc(0), eof: false });
    expect(await new StreamBuffer(null).read(1)).toEqual({ data: Buffer.alloc(0), eof: true });
  });
});
