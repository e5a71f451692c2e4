// ttrpc framing, pure (no I/O): a 10-byte big-endian header
//   length u32 (payload bytes only) | stream_id u32 | type u8 | flags u8
// followed by the payload. FrameDecoder turns arbitrary chunks of a byte
// stream into frames; a frame whose length is over the limit is reported as
// `oversize` and its payload is skipped without being buffered, so the
// connection stays usable.

export const HEADER_LENGTH = 10;
export const MAX_MESSAGE_LENGTH = 4 * 1024 * 1024;

export const FrameType = {
  Request: 1,
  Response: 2,
  /** ttrpc v1.2 streaming data; never sent to containerd 1.6. */
  Data: 3,
} as const;

export interface FrameHeader {
  streamId: number;
  type: number;
  flags: number;
}

export interface Frame extends FrameHeader {
  payload: Buffer;
  oversize?: undefined;
}

export interface OversizeFrame extends FrameHeader {
  /** Declared payload length, over the limit; the payload was discarded. */
  oversize: number;
  payload?: undefined;
}

export type DecodedFrame = Frame | OversizeFrame;

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`ttrpc frame ${name} out of range: ${value}`);
  }
}

/** One complete frame. Throws RangeError for a payload over `maxLength` or fields out of range. */
export function encodeFrame(streamId: number, type: number, payload: Uint8Array, flags = 0, maxLength = MAX_MESSAGE_LENGTH): Buffer {
  checkUint('stream id', streamId, 0xffffffff);
  checkUint('type', type, 0xff);
  checkUint('flags', flags, 0xff);
  if (payload.length > maxLength) {
    throw new RangeError(`message length ${payload.length} exceed maximum message size of ${maxLength}`);
  }
  const frame = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(streamId, 4);
  frame.writeUInt8(type, 8);
  frame.writeUInt8(flags, 9);
  frame.set(payload, HEADER_LENGTH);
  return frame;
}

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;
  private header: (FrameHeader & { length: number }) | undefined;
  private skip = 0;

  constructor(readonly maxLength = MAX_MESSAGE_LENGTH) {}

  /** Bytes received that are not yet part of a returned frame (header included). */
  get buffered(): number {
    return this.size + (this.header ? HEADER_LENGTH : 0);
  }

  push(chunk: Buffer): DecodedFrame[] {
    const frames: DecodedFrame[] = [];
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    for (;;) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.size);
        this.take(n);
        this.skip -= n;
        if (this.skip > 0) break;
      }
      if (!this.header) {
        if (this.size < HEADER_LENGTH) break;
        const h = this.take(HEADER_LENGTH);
        const length = h.readUInt32BE(0);
        const header = { streamId: h.readUInt32BE(4), type: h.readUInt8(8), flags: h.readUInt8(9) };
        if (length > this.maxLength) {
          frames.push({ ...header, oversize: length });
          this.skip = length;
          continue;
        }
        this.header = { ...header, length };
      }
      if (this.size < this.header.length) break;
      const { length, ...header } = this.header;
      this.header = undefined;
      frames.push({ ...header, payload: this.take(length) });
    }
    return frames;
  }

  // Remove and return the first n buffered bytes (n <= size).
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length > n) {
      out = first.subarray(0, n);
      this.chunks[0] = first.subarray(n);
    } else if (first.length === n) {
      out = first;
      this.chunks.shift();
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const want = n - filled;
        if (c.length <= want) {
          c.copy(out, filled);
          filled += c.length;
          this.chunks.shift();
        } else {
          c.copy(out, filled, 0, want);
          this.chunks[0] = c.subarray(want);
          filled += want;
        }
      }
    }
    this.size -= n;
    return out;
  }
}
