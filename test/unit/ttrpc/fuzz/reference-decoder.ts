// A reference parse of a whole ttrpc byte stream, the simple way, and the check
// that a FrameDecoder fed the same bytes in chunks returns the same frames and
// buffers the same bytes after every push; plus random streams to feed it.
import { assert } from 'vitest';
import { FrameDecoder, HEADER_LENGTH, type DecodedFrame } from '../../../../src/ttrpc/frame-codec';
import { header, hexPreview } from './frames';
import type { Rng } from './prng';

interface RefSegment {
  start: number;
  /** One past the segment's last byte (may lie past the input for an incomplete one). */
  end: number;
  /** Stream position after which the decoder returns this segment's frame. */
  emitAt: number;
  /** From here on an oversize payload is skipped, not buffered. */
  skipFrom: number;
  frame?: DecodedFrame;
}

/** Parse a whole byte stream at once, the simple way, as the spec says. */
function referenceParse(bytes: Buffer, max: number): RefSegment[] {
  const segs: RefSegment[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    if (bytes.length - pos < HEADER_LENGTH) {
      segs.push({ start: pos, end: pos + HEADER_LENGTH, emitAt: Infinity, skipFrom: Infinity });
      break;
    }
    const length = bytes.readUInt32BE(pos);
    const h = { streamId: bytes.readUInt32BE(pos + 4), type: bytes[pos + 8]!, flags: bytes[pos + 9]! };
    const body = pos + HEADER_LENGTH;
    if (length > max) {
      segs.push({ start: pos, end: body + length, emitAt: body, skipFrom: body, frame: { ...h, oversize: length } });
    } else {
      const complete = body + length <= bytes.length;
      segs.push({
        start: pos,
        end: body + length,
        emitAt: complete ? body + length : Infinity,
        skipFrom: Infinity,
        frame: complete ? { ...h, payload: bytes.subarray(body, body + length) } : undefined,
      });
    }
    pos = body + length;
  }
  return segs;
}

function sameFrame(a: DecodedFrame, b: DecodedFrame): boolean {
  if (a.streamId !== b.streamId || a.type !== b.type || a.flags !== b.flags) return false;
  if (a.oversize !== undefined || b.oversize !== undefined) return a.oversize === b.oversize && a.payload === undefined && b.payload === undefined;
  return a.payload.equals(b.payload);
}

function showFrame(f: DecodedFrame | undefined): string {
  if (!f) return 'nothing';
  const body = f.oversize !== undefined ? `oversize=${f.oversize}` : `payload=${hexPreview(f.payload, 32)}`;
  return `{id=${f.streamId} type=${f.type} flags=${f.flags} ${body}}`;
}

/** Fail with a message built only on failure (the checks run millions of times). */
function check(cond: boolean, message: () => string): asserts cond {
  if (!cond) assert.fail(message());
}

/**
 * Feed `bytes` to a FrameDecoder in the given chunks; after every push, the
 * frames returned so far and `buffered` must be what the reference parse says.
 */
export function checkDecoder(bytes: Buffer, max: number, sizes: number[], ctx: string): number {
  const segs = referenceParse(bytes, max);
  const emits = segs.filter((s) => s.frame !== undefined);
  const dec = new FrameDecoder(max);
  let pos = 0;
  let returned = 0;
  let seg = 0;
  for (const size of sizes) {
    const chunk = bytes.subarray(pos, pos + size);
    let frames: DecodedFrame[];
    try {
      frames = dec.push(chunk);
    } catch (err) {
      return assert.fail(`${ctx}: FrameDecoder.push threw ${String(err)} at offset ${pos}; input ${hexPreview(bytes, 4096)}`);
    }
    pos += chunk.length;
    for (const f of frames) {
      const want = emits[returned];
      check(want !== undefined && want.emitAt <= pos, () => `${ctx}: unexpected frame ${showFrame(f)} at offset ${pos}; input ${hexPreview(bytes, 4096)}`);
      check(sameFrame(f, want.frame!), () => `${ctx}: frame #${returned} is ${showFrame(f)}, want ${showFrame(want.frame)}; input ${hexPreview(bytes, 4096)}`);
      returned++;
    }
    const due = emits[returned];
    check(
      due === undefined || due.emitAt > pos,
      () => `${ctx}: frame #${returned} ${showFrame(due?.frame)} not returned by offset ${pos}; input ${hexPreview(bytes, 4096)}`,
    );
    while (seg < segs.length && segs[seg]!.end <= pos) seg++;
    const s = segs[seg];
    const wantBuffered = s && s.start <= pos ? (pos >= s.skipFrom ? 0 : pos - s.start) : 0;
    check(dec.buffered <= HEADER_LENGTH + max, () => `${ctx}: decoder buffers ${dec.buffered} bytes, over the ${max} limit plus a header`);
    check(dec.buffered === wantBuffered, () => `${ctx}: buffered ${dec.buffered} at offset ${pos}, want ${wantBuffered}; input ${hexPreview(bytes, 4096)}`);
  }
  check(returned === emits.length, () => `${ctx}: ${returned} frames returned, want ${emits.length}`);
  return returned;
}

/** A random byte stream of frames, near-frames and junk, for a decoder with limit `max`. */
export function randomStream(rng: Rng, max: number): Buffer {
  const parts: Buffer[] = [];
  for (let n = rng.range(1, 12); n > 0; n--) {
    const id = rng.chance(0.5) ? rng.u32() : rng.int(16);
    const type = rng.chance(0.7) ? rng.range(1, 3) : rng.int(256);
    const flags = rng.chance(0.8) ? 0 : rng.int(256);
    const small = Math.min(max, 2048);
    switch (rng.int(7)) {
      case 0: // a well-formed frame
      case 1: {
        const len = rng.chance(0.1) ? Math.min(max, small) : rng.int(small + 1);
        parts.push(header(len, id, type, flags), rng.bytes(len));
        break;
      }
      case 2: {
        // oversize, with all, some or none of the bytes it claims
        const len = rng.pick([max + 1, max + 1 + rng.int(4096), 0xffffffff, Math.max(max + 1, rng.u32())]);
        parts.push(header(len, id, type, flags));
        if (len - max <= 4097 && rng.chance(0.5) && len <= 1 << 16) parts.push(rng.bytes(len));
        else parts.push(rng.bytes(rng.int(64)));
        break;
      }
      case 3: // junk
        parts.push(rng.bytes(rng.int(64)));
        break;
      case 4: // a header cut short
        parts.push(header(rng.int(small + 1), id, type, flags).subarray(0, rng.int(HEADER_LENGTH)));
        break;
      case 5: {
        // a payload shorter than its header says
        const len = rng.range(1, small + 1);
        parts.push(header(len, id, type, flags), rng.bytes(rng.int(len)));
        break;
      }
      default: // zero-length
        parts.push(header(0, id, type, flags));
    }
  }
  return Buffer.concat(parts);
}
