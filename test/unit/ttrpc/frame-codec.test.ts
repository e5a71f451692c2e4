// Byte-level tests of the pure ttrpc frame encoder/decoder.
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameType, HEADER_LENGTH, MAX_MESSAGE_LENGTH, type DecodedFrame } from '../../../src/ttrpc/frame-codec';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('encodeFrame', () => {
  it('writes the 10-byte big-endian header then the payload', () => {
    const f = encodeFrame(1, FrameType.Request, Buffer.from([0xaa, 0xbb]));
    expect(hex(f)).toBe('00000002' + '00000001' + '01' + '00' + 'aabb');
  });

  it('encodes large stream ids, response type and flags big-endian', () => {
    const f = encodeFrame(0x01020304, FrameType.Response, Buffer.alloc(0), 0x05);
    expect(hex(f)).toBe('00000000' + '01020304' + '02' + '05');
    expect(f.length).toBe(HEADER_LENGTH);
    expect(hex(encodeFrame(0xffffffff, FrameType.Data, Buffer.from([1]), 0)).slice(8, 16)).toBe('ffffffff');
  });

  it('counts the payload only in the length field', () => {
    const f = encodeFrame(7, 1, Buffer.alloc(300, 1));
    expect(f.readUInt32BE(0)).toBe(300);
    expect(f.length).toBe(310);
  });

  it('refuses payloads over the limit and out-of-range header fields', () => {
    expect(MAX_MESSAGE_LENGTH).toBe(4194304);
    expect(() => encodeFrame(1, 1, Buffer.alloc(11), 0, 10)).toThrow(/message length 11 exceed maximum message size of 10/);
    expect(() => encodeFrame(1, 1, Buffer.alloc(10), 0, 10)).not.toThrow();
    expect(() => encodeFrame(-1, 1, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeFrame(2 ** 32, 1, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeFrame(1, 256, Buffer.alloc(0))).toThrow(RangeError);
    expect(() => encodeFrame(1, 1, Buffer.alloc(0), 256)).toThrow(RangeError);
  });
});

describe('FrameDecoder', () => {
  const frames = [
    { streamId: 1, type: 1, flags: 0, payload: Buffer.from('hello') },
    { streamId: 3, type: 2, flags: 0, payload: Buffer.alloc(0) },
    { streamId: 0x10000001, type: 3, flags: 2, payload: Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) },
  ];
  const wire = Buffer.concat(frames.map((f) => encodeFrame(f.streamId, f.type, f.payload, f.flags)));
  const plain = (out: DecodedFrame[]) => out.map((f) => ({ ...f, payload: f.payload ? hex(f.payload) : undefined }));
  const expected = frames.map((f) => ({ ...f, payload: hex(f.payload) }));

  it('decodes several frames from one chunk', () => {
    expect(plain(new FrameDecoder().push(wire))).toEqual(expected);
  });

  it('decodes the same frames when the stream is split at every byte boundary', () => {
    for (let i = 0; i <= wire.length; i++) {
      const d = new FrameDecoder();
      const out = [...d.push(wire.subarray(0, i)), ...d.push(wire.subarray(i))];
      expect(plain(out), `split at ${i}`).toEqual(expected);
      expect(d.buffered).toBe(0);
    }
    for (let i = 1; i < wire.length; i++) {
      for (const j of [i + 1, i + 7, wire.length]) {
        const d = new FrameDecoder();
        const out = [...d.push(wire.subarray(0, i)), ...d.push(wire.subarray(i, j)), ...d.push(wire.subarray(j))];
        expect(plain(out), `split at ${i},${j}`).toEqual(expected);
      }
    }
  });

  it('decodes a stream fed one byte at a time', () => {
    const d = new FrameDecoder();
    const out: DecodedFrame[] = [];
    for (const byte of wire) out.push(...d.push(Buffer.from([byte])));
    expect(plain(out)).toEqual(expected);
  });

  it('returns nothing until a frame is complete and holds the partial bytes', () => {
    const d = new FrameDecoder();
    expect(d.push(wire.subarray(0, 12))).toEqual([]);
    expect(d.buffered).toBe(12);
  });

  it('reports an oversize frame and skips its payload across chunks without buffering it', () => {
    const max = 64;
    const d = new FrameDecoder(max);
    const header = Buffer.from('00000041' + '00000005' + '01' + '00', 'hex'); // length 65 > 64
    const payload = Buffer.alloc(65, 0xee);
    const next = encodeFrame(7, 1, Buffer.from('ok'));
    const out: DecodedFrame[] = [];
    out.push(...d.push(header.subarray(0, 4)));
    out.push(...d.push(Buffer.concat([header.subarray(4), payload.subarray(0, 3)])));
    expect(out).toEqual([{ streamId: 5, type: 1, flags: 0, oversize: 65 }]);
    for (let off = 3; off < 60; off += 9) {
      out.push(...d.push(payload.subarray(off, Math.min(off + 9, 60))));
      expect(d.buffered).toBe(0);
    }
    out.push(...d.push(Buffer.concat([payload.subarray(60), next])));
    expect(plain(out)).toEqual([
      { streamId: 5, type: 1, flags: 0, oversize: 65, payload: undefined },
      { streamId: 7, type: 1, flags: 0, payload: hex(Buffer.from('ok')) },
    ]);
    expect(d.buffered).toBe(0);
  });

  it('accepts a frame of exactly the limit and rejects one byte more (default 4 MiB)', () => {
    const d = new FrameDecoder();
    const exact = Buffer.alloc(MAX_MESSAGE_LENGTH, 1);
    const [f] = d.push(encodeFrame(9, 1, exact));
    expect(f?.payload?.length).toBe(MAX_MESSAGE_LENGTH);
    const over = Buffer.alloc(HEADER_LENGTH);
    over.writeUInt32BE(MAX_MESSAGE_LENGTH + 1, 0);
    over.writeUInt32BE(11, 4);
    over.writeUInt8(1, 8);
    expect(d.push(over)).toEqual([{ streamId: 11, type: 1, flags: 0, oversize: MAX_MESSAGE_LENGTH + 1 }]);
    expect(d.push(Buffer.alloc(MAX_MESSAGE_LENGTH + 1))).toEqual([]);
    expect(d.buffered).toBe(0);
  });

  it('decodes even stream ids as they are (policy belongs to the server)', () => {
    const [f] = new FrameDecoder().push(encodeFrame(2, 1, Buffer.from([1])));
    expect(f).toMatchObject({ streamId: 2, type: 1 });
  });
});
