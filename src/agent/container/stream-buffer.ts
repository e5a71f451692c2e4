// A bounded in-memory buffer in front of a child's output pipe, read by long
// polls: read() answers as soon as bytes are buffered, or with eof once the
// pipe has ended and everything was read. When the buffer is full the pipe is
// paused (the writer then blocks in the guest) and resumed once reads drain it
// to half.
import type { Readable } from 'node:stream';

export interface ReadResult {
  data: Buffer;
  eof: boolean;
}

export class StreamBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private paused = false;
  private waiters = new Set<() => void>();

  constructor(
    private readonly stream: Readable | null,
    private readonly capacity = 1 << 20,
  ) {
    if (!stream) {
      this.ended = true;
      return;
    }
    stream.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.size += chunk.length;
      if (this.size >= this.capacity && !this.paused) {
        this.paused = true;
        stream.pause();
      }
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  /** Bytes currently held. */
  get buffered(): number {
    return this.size;
  }

  /** Long poll: resolves with up to maxBytes as soon as any are buffered, or eof. An aborted read resolves empty. */
  async read(maxBytes: number, signal?: AbortSignal): Promise<ReadResult> {
    const max = Math.max(1, Math.floor(maxBytes) || 1);
    while (this.size === 0 && !this.ended) {
      if (signal?.aborted) return { data: Buffer.alloc(0), eof: false };
      await new Promise<void>((resolve) => {
        const done = () => {
          this.waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
    if (this.size === 0) return { data: Buffer.alloc(0), eof: true };
    const parts: Buffer[] = [];
    let taken = 0;
    while (taken < max && this.chunks.length > 0) {
      const c = this.chunks[0]!;
      const want = max - taken;
      if (c.length <= want) {
        parts.push(c);
        this.chunks.shift();
        taken += c.length;
      } else {
        parts.push(c.subarray(0, want));
        this.chunks[0] = c.subarray(want);
        taken += want;
      }
    }
    this.size -= taken;
    // resume at half capacity, so a steady writer is not paused and resumed per read
    if (this.paused && this.size <= this.capacity / 2) {
      this.paused = false;
      this.stream?.resume();
    }
    return { data: parts.length === 1 ? parts[0]! : Buffer.concat(parts), eof: false };
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
