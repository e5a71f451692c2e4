// Random names and metadata, and mutated request scripts that still have a
// single right answer by the model.
import type { KeyValue } from '../../../../src/ttrpc/messages';
import { MAX, request, requestFrame } from './frames';
import { model } from './model';
import type { Rng } from './prng';
import { FUZZ_SVC, TASK_SVC, type Target } from './target';

const NAMES = [
  '',
  'State',
  'state',
  'STATE',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  FUZZ_SVC,
  TASK_SVC,
  'tern.agent.v1.Agent',
  'Block',
  'Throw',
  'Meta',
  'Connect',
];
export function randomName(rng: Rng): string {
  return rng.chance(0.6) ? rng.pick(NAMES) : rng.chance(0.5) ? rng.string(20) : rng.bytes(rng.int(12)).toString('latin1');
}

export function randomMetadata(rng: Rng): KeyValue[] {
  const keys = ['__proto__', 'constructor', 'Constructor', 'toString', 'valueOf', 'hasOwnProperty', 'containerd-namespace', 'X-Trace', 'x-trace', '', '0', '1'];
  return Array.from({ length: rng.int(6) }, () => ({ key: rng.chance(0.7) ? rng.pick(keys) : rng.string(8), value: rng.string(8) }));
}

/** A base frame for mutation: valid requests, junk payloads, junk envelopes, unknown names. */
function baseEnvelope(target: Target, rng: Rng): Buffer {
  switch (rng.int(6)) {
    case 0:
    case 1:
      return target.validRequest(rng);
    case 2:
      return target.garbageRequest(rng);
    case 3:
      return request(randomName(rng), randomName(rng), rng.bytes(rng.int(16)), { metadata: randomMetadata(rng) });
    case 4:
      return rng.bytes(rng.int(48));
    default:
      return request(rng.chance(0.5) ? FUZZ_SVC : TASK_SVC, randomName(rng));
  }
}

const INTERESTING_U32 = [0, 1, 9, 10, 11, 0x7f, 0x80, MAX - 1, MAX, MAX + 1, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function mutate(rng: Rng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  const at = () => rng.int(Math.max(1, b.length));
  switch (rng.int(9)) {
    case 0:
      for (let n = rng.range(1, 4); n > 0 && b.length > 0; n--) b[at()]! ^= 1 << rng.int(8);
      break;
    case 1:
      if (b.length > 0) b[at()] = rng.pick([0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff, rng.int(256)]);
      break;
    case 2: {
      const p = at();
      b = Buffer.concat([b.subarray(0, p), rng.bytes(rng.range(1, 16)), b.subarray(p)]);
      break;
    }
    case 3: {
      const p = at();
      b = Buffer.concat([b.subarray(0, p), b.subarray(p + rng.range(1, 16))]);
      break;
    }
    case 4:
      b = b.subarray(0, rng.int(b.length + 1));
      break;
    case 5: {
      const p = at();
      const q = Math.min(b.length, p + rng.range(1, 64));
      b = Buffer.concat([b.subarray(0, q), b.subarray(p, q), b.subarray(q)]);
      break;
    }
    case 6: // a header field: length or stream id of the first frame, or any 4 bytes
    case 7: {
      const p = rng.pick([0, 4, at()]);
      if (p + 4 <= b.length) b.writeUInt32BE(rng.chance(0.7) ? rng.pick(INTERESTING_U32) : rng.u32(), p);
      break;
    }
    default:
      if (b.length > 8) b[8] = rng.pick([0, 2, 3, 4, 0xff]); // frame type
  }
  return b;
}

/** A connection's worth of frames, some mutated; only inputs with one right answer. */
export function mutationScript(target: Target, rng: Rng): Buffer {
  for (;;) {
    const frames: Buffer[] = [];
    let id = 1;
    for (let n = rng.range(1, 5); n > 0; n--) {
      const streamId = rng.chance(0.15) ? rng.int(8) * 2 : (id += 2);
      frames.push(requestFrame(streamId, baseEnvelope(target, rng)));
    }
    let script: Buffer = Buffer.concat(frames);
    for (let n = rng.int(4); n > 0; n--) script = mutate(rng, script);
    if (!model(script, (req) => target.outcome(req)).ambiguous) return script;
  }
}
