// Raw ttrpc bytes for the fuzz tests: frame headers, request envelopes and
// frames built by hand, a hex preview for failure messages, and random chunk
// sizes to cut a byte stream into.
import { FrameType, HEADER_LENGTH, MAX_MESSAGE_LENGTH } from '../../../../src/ttrpc/frame-codec';
import { encodeRequest, type RequestMessage } from '../../../../src/ttrpc/messages';
import type { Rng } from './prng';

export const MAX = MAX_MESSAGE_LENGTH;

export function hexPreview(bytes: Buffer, max = 256): string {
  const hex = bytes.subarray(0, max).toString('hex');
  return bytes.length > max ? `${hex}... (${bytes.length} bytes)` : hex;
}

export function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

export function header(length: number, streamId: number, type: number = FrameType.Request, flags = 0): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h.writeUInt32BE(length >>> 0, 0);
  h.writeUInt32BE(streamId >>> 0, 4);
  h.writeUInt8(type & 0xff, 8);
  h.writeUInt8(flags & 0xff, 9);
  return h;
}

export function request(service: string, method: string, payload: Uint8Array = Buffer.alloc(0), extra: Partial<RequestMessage> = {}): Buffer {
  return Buffer.from(encodeRequest({ service, method, payload: Buffer.from(payload), timeoutNano: 0, metadata: [], ...extra }));
}

export function requestFrame(streamId: number, envelope: Uint8Array, type: number = FrameType.Request): Buffer {
  return Buffer.concat([header(envelope.length, streamId, type), envelope]);
}

export function chunkSizes(rng: Rng, total: number): number[] {
  const sizes: number[] = [];
  // at most a few thousand pieces, so multi-MiB inputs stay fast
  const scale = Math.max(rng.pick([1, 3, 10, 11, 64, 1000, total >> 6, total]), total >> 12, 1);
  let left = total;
  while (left > 0) {
    if (rng.chance(0.05)) sizes.push(0);
    const n = Math.min(left, rng.range(1, Math.max(1, scale)));
    sizes.push(n);
    left -= n;
  }
  if (rng.chance(0.1)) sizes.push(0);
  return sizes;
}
