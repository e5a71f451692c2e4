// Seeded, reproducible fuzzing of the ttrpc layer: FrameDecoder against a
// reference parser, and two real servers over unix sockets, each attacked with
// hostile byte streams (truncated headers, oversize lengths, garbage protobuf,
// unknown services and methods, even stream ids, wrong frame types, thousands
// of concurrent calls, random mutations of valid requests, a client that never
// reads) and checked against a model of what server.ts answers. After every
// attack a new connection must still get a correct answer, and the attacked
// connection's state must be gone. corpus/*.hex is replayed on every run.
//
// The servers:
//  - "fuzz": a TtrpcServer built exactly as the guest agent builds its own
//    (src/agent/main.ts: `new TtrpcServer()`, default options), with a few test
//    handlers; the agent itself only runs inside the VM.
//  - "task": the shim's server as src/shim/serve.ts builds it (`new
//    TtrpcServer()` + registerTask) around the real TaskService, Sandbox and
//    EventPublisher. No Create that could boot a VM is ever sent; the sandbox
//    is checked to still be in state "new" at the end.
//
// A failing case names its seed and case number; set TTRPC_FUZZ_SEED to run
// one more seed (decimal or 0x hex).
//
// The generators, the reference decoder, the server model, the raw client and
// the two servers live in ./fuzz/.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../../src/shim/sandbox';
import { encodeFrame, FrameDecoder, FrameType, HEADER_LENGTH } from '../../../src/ttrpc/frame-codec';
import { encodeResponse } from '../../../src/ttrpc/messages';
import { DEFAULT_MAX_IN_FLIGHT } from '../../../src/ttrpc/server';
import { Code, oversizeMessage } from '../../../src/ttrpc/status';
import { attack, codes } from './fuzz/attack';
import { loadCorpus } from './fuzz/corpus';
import { withDeadline } from './fuzz/deadline';
import { chunkSizes, header, MAX, request, requestFrame, u32be } from './fuzz/frames';
import { startFuzzServer } from './fuzz/fuzz-server';
import { findGc } from './fuzz/gc';
import { ODD_ID_MESSAGE } from './fuzz/model';
import { mutationScript, randomMetadata, randomName } from './fuzz/mutations';
import { hexSeed, Rng, SEEDS } from './fuzz/prng';
import { nextConnection, Peer } from './fuzz/raw-client';
import { checkDecoder, randomStream } from './fuzz/reference-decoder';
import { FUZZ_SVC, TASK_SVC, type Target } from './fuzz/target';
import { startTaskServer } from './fuzz/task-server';

// ---------------------------------------------------------------- tests: decoder

describe('FrameDecoder under random input', () => {
  it.each(SEEDS.map((seed) => [hexSeed(seed), seed] as const))('matches the reference parse chunk by chunk (seed %s)', (_name, seed) => {
    const rng = new Rng(seed);
    let frames = 0;
    for (let i = 0; i < 400; i++) {
      const max = rng.pick([0, 1, 9, 10, 16, 100, 1024, MAX]);
      const bytes = randomStream(rng, max);
      frames += checkDecoder(bytes, max, chunkSizes(rng, bytes.length), `seed ${hexSeed(seed)} case ${i} max ${max}`);
    }
    expect(frames).toBeGreaterThan(400); // the generator does produce frames
  });

  it('reports an oversize length without allocating or buffering it, and resynchronises after the skip', () => {
    const dec = new FrameDecoder();
    expect(dec.push(header(0xffffffff, 7))).toEqual([{ streamId: 7, type: 1, flags: 0, oversize: 0xffffffff }]);
    const mib = Buffer.alloc(1 << 20, 0xab);
    for (let i = 0; i < 16; i++) {
      expect(dec.push(mib)).toEqual([]);
      expect(dec.buffered).toBe(0);
    }
    // exactly MAX + 1 skipped bytes, then a frame: the frame comes out whole
    const valid = requestFrame(9, request(FUZZ_SVC, 'State'));
    const stream = Buffer.concat([header(MAX + 1, 1), Buffer.alloc(MAX + 1, 0x0a), valid]);
    const rng = new Rng(SEEDS[0]!);
    expect(checkDecoder(stream, MAX, chunkSizes(rng, stream.length), 'oversize then valid')).toBe(2);
    // the limit itself is allowed, and buffered while it arrives stays within it plus a header
    const atLimit = Buffer.concat([header(MAX, 11), Buffer.alloc(MAX, 1)]);
    expect(
      checkDecoder(
        atLimit,
        MAX,
        Array.from({ length: Math.ceil(atLimit.length / 4099) }, () => 4099),
        'frame at the limit',
      ),
    ).toBe(1);
  });

  it('encodeFrame throws only RangeError for fields out of range and round-trips the rest', () => {
    const rng = new Rng(SEEDS[1]!);
    const u32s = [-1, 0, 1, 0xffffffff, 2 ** 32, 1.5, Number.NaN];
    const u8s = [-1, 0, 1, 255, 256, 0.5];
    for (let i = 0; i < 500; i++) {
      const streamId = rng.chance(0.5) ? rng.pick(u32s) : rng.u32();
      const type = rng.pick(u8s);
      const flags = rng.pick(u8s);
      const max = rng.pick([0, 4, 64]);
      const payload = rng.bytes(rng.int(80));
      const valid =
        Number.isInteger(streamId) &&
        streamId >= 0 &&
        streamId <= 0xffffffff &&
        Number.isInteger(type) &&
        type >= 0 &&
        type <= 255 &&
        Number.isInteger(flags) &&
        flags >= 0 &&
        flags <= 255 &&
        payload.length <= max;
      const ctx = `case ${i}: id=${streamId} type=${type} flags=${flags} len=${payload.length} max=${max}`;
      if (!valid) {
        expect(() => encodeFrame(streamId, type, payload, flags, max), ctx).toThrow(RangeError);
        continue;
      }
      const frames = new FrameDecoder(max).push(encodeFrame(streamId, type, payload, flags, max));
      expect(frames, ctx).toEqual([{ streamId, type, flags, payload }]);
    }
  });
});

// ---------------------------------------------------------------- tests: servers

describe('ttrpc servers under attack', () => {
  let dir: string;
  const targets = {} as Record<'fuzz' | 'task', Target>;
  let sandbox: Sandbox;
  let shutdowns = 0;
  const block = { started: 0, aborted: 0, release: [] as Array<() => void> };
  const corpus = loadCorpus();

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ttrpc-fuzz-'));
    targets.fuzz = await startFuzzServer(dir, block);
    ({ target: targets.task, sandbox } = await startTaskServer(dir, () => shutdowns++));
  });

  afterAll(async () => {
    try {
      for (const t of Object.values(targets)) await withDeadline(t.server.close(), 5000, `${t.name} server close`);
      // Nothing sent may reach the VM: the sandbox never left "new", and no Shutdown ran.
      expect(sandbox.state).toBe('new');
      expect(shutdowns).toBe(0);
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  describe.each(['fuzz', 'task'] as const)('%s server', (name) => {
    const t = () => targets[name];

    it('(a) truncated headers and payloads, then the client ends or vanishes: no answer, connection closed', async () => {
      const full = requestFrame(1, t().validRequest(new Rng(1)));
      for (let n = 0; n < full.length; n++) {
        const r = await attack(t(), full.subarray(0, n), `first ${n} bytes of a request`);
        expect(r.received, `cut at ${n}`).toEqual([]);
      }
      // the same, but the client disappears instead of ending
      for (const n of [1, 5, 9, 10, 12]) {
        const connP = nextConnection(t().server);
        const peer = await Peer.open(t().path);
        const conn = await connP;
        peer.sock.write(full.subarray(0, n));
        peer.sock.destroy();
        await withDeadline(conn.closed, 5000, `server side closed after a reset at ${n} bytes`);
        expect(peer.responses).toEqual([]);
        expect(t().server.connections.size).toBe(0);
        await t().healthy();
      }
    });

    it('(b) lengths over 4 MiB: ResourceExhausted naming the length, and the declared bytes are skipped', async () => {
      const lengths = [MAX + 1, MAX * 2, 0x7fffffff, 0x80000000, 0xffffffff];
      const r = await attack(t(), Buffer.concat(lengths.map((len, i) => header(len, 2 * i + 1))), 'oversize headers');
      // only the first is seen: its skip swallows the other headers
      expect(r.received.map((x) => [x.streamId, x.code, x.message])).toEqual([[1, Code.ResourceExhausted, oversizeMessage(MAX + 1, MAX)]]);
      for (const len of lengths) {
        const one = await attack(t(), header(len, 3), `oversize ${len}`);
        expect(one.received.map((x) => [x.code, x.message])).toEqual([[Code.ResourceExhausted, oversizeMessage(len, MAX)]]);
      }
      // skip exactly the declared bytes, then the same connection answers normally
      const valid = t().validRequest(new Rng(2));
      const after = await attack(t(), Buffer.concat([header(MAX + 1, 1), Buffer.alloc(MAX + 1, 0x0a), requestFrame(3, valid)]), 'oversize then valid');
      expect(after.received.map((x) => x.streamId)).toEqual([1, 3]);
      expect(after.received[0]!.code).toBe(Code.ResourceExhausted);
    });

    it("(c) garbage protobuf envelopes and payloads: InvalidArgument, Unimplemented or the handler's own error", async () => {
      for (const seed of SEEDS) {
        const rng = new Rng(seed ^ 0xc);
        const frames: Buffer[] = [];
        for (let i = 0; i < 40; i++) {
          const env = i % 2 === 0 ? rng.bytes(rng.int(64)) : t().garbageRequest(rng);
          frames.push(requestFrame(2 * i + 1, env));
        }
        const r = await attack(t(), Buffer.concat(frames), `garbage seed ${hexSeed(seed)}`, rng);
        expect(r.received.length).toBe(40);
        // every junk envelope that fails to decode is InvalidArgument with the decoder's reason
        for (const e of r.expected) {
          if (e.outcome.message?.startsWith('unmarshal request error: ')) expect(e.outcome.code).toBe(Code.InvalidArgument);
        }
        expect(r.expected.some((e) => e.outcome.code === Code.InvalidArgument)).toBe(true);
      }
    });

    it('(d) unknown services and methods: Unimplemented naming them', async () => {
      const rng = new Rng(0xd);
      const own = name === 'fuzz' ? FUZZ_SVC : TASK_SVC;
      const pairs = [
        ['no.such.Service', 'State'],
        [own, 'NoSuchMethod'],
        ['__proto__', 'constructor'],
        [own, 'hasOwnProperty'],
        [own, '__proto__'],
        ['', ''],
        ...Array.from({ length: 30 }, () => [randomName(rng), randomName(rng)]),
      ].filter(
        ([service, method]) => t().outcome({ service: service!, method: method!, payload: Buffer.alloc(0), timeoutNano: 0, metadata: [] }) === 'unregistered',
      );
      expect(pairs.length).toBeGreaterThan(10);
      const r = await attack(t(), Buffer.concat(pairs.map(([s, m], i) => requestFrame(2 * i + 1, request(s!, m!)))), 'unknown names');
      expect(r.received.map((x) => [x.streamId, x.code, x.message])).toEqual(
        pairs.map(([s, m], i) => [2 * i + 1, Code.Unimplemented, s === own ? `method ${s}/${m}: not implemented` : `service ${s}: not implemented`]),
      );
    });

    it('(e) even stream ids: InvalidArgument, and the connection goes on', async () => {
      const evens = [0, 2, 4, 0xfffffffe, (new Rng(0xe).u32() & ~1) >>> 0];
      const frames = evens.map((id) => requestFrame(id, t().validRequest(new Rng(id))));
      const r = await attack(t(), Buffer.concat([...frames, requestFrame(7, t().validRequest(new Rng(7)))]), 'even ids');
      expect(r.received.filter((x) => x.streamId !== 7).map((x) => [x.streamId, x.code, x.message])).toEqual(
        evens.map((id) => [id, Code.InvalidArgument, ODD_ID_MESSAGE]),
      );
      expect(r.received.filter((x) => x.streamId === 7)).toHaveLength(1);
    });

    it('(f) frames of other types are ignored; the next request is answered', async () => {
      const types = [0, FrameType.Response, FrameType.Data, 4, 0x7f, 0xff];
      const frames = types.map((type, i) => requestFrame(2 * i + 1, t().validRequest(new Rng(i)), type));
      const r = await attack(t(), Buffer.concat([...frames, requestFrame(99, t().validRequest(new Rng(99)))]), 'frame types');
      expect(r.received.map((x) => x.streamId)).toEqual([99]);
    });

    it.each(SEEDS.map((seed) => [hexSeed(seed), seed] as const))('(h) random mutations of valid requests (seed %s)', async (_n, seed) => {
      const rng = new Rng(seed ^ (name === 'fuzz' ? 0x1000 : 0x2000));
      const seen = new Set<number>();
      for (let i = 0; i < 40; i++) {
        const script = mutationScript(t(), rng);
        const r = await attack(t(), script, `seed ${hexSeed(seed)} case ${i}`, rng);
        for (const e of r.expected) seen.add(e.outcome.code);
      }
      // the mutations reach well past the envelope decoder
      expect(seen.size).toBeGreaterThanOrEqual(3);
    });

    it('replays the corpus: every entry gets its declared answers, or a closed connection', async () => {
      expect(corpus.length).toBeGreaterThanOrEqual(5);
      const rng = new Rng(0xc0c0);
      for (const entry of corpus) {
        const declared = entry.declared.get(name);
        expect(declared, `${entry.name} declares no answers for the ${name} server`).toBeDefined();
        const r = await attack(t(), entry.bytes, `corpus ${entry.name}`, rng);
        expect(
          r.expected.map((e) => e.outcome.code),
          `${entry.name}: model vs declared`,
        ).toEqual(declared);
        expect(codes(r.received).length, entry.name).toBe(declared!.length);
      }
    });
  });

  it('replays the corpus against FrameDecoder in random chunks', () => {
    const rng = new Rng(0xdec0de);
    for (const entry of corpus) {
      for (let round = 0; round < 3; round++) checkDecoder(entry.bytes, MAX, chunkSizes(rng, entry.bytes.length), `corpus ${entry.name} round ${round}`);
    }
  });

  it('metadata keys that name Object.prototype members are plain keys', async () => {
    const metadata = [
      { key: '__proto__', value: 'a' },
      { key: 'constructor', value: 'b' },
      { key: 'Constructor', value: 'c' },
      { key: 'toString', value: 'd' },
      { key: 'hasOwnProperty', value: 'e' },
    ];
    const r = await attack(targets.fuzz, requestFrame(1, request(FUZZ_SVC, 'Meta', Buffer.alloc(0), { metadata })), 'prototype keys');
    expect(JSON.parse(r.received[0]!.payload.toString())).toEqual([
      ['__proto__', ['a']],
      ['constructor', ['b', 'c']],
      ['hasownproperty', ['e']],
      ['tostring', ['d']],
    ]);
    const rng = new Rng(SEEDS[2]!);
    const frames = Array.from({ length: 200 }, (_, i) =>
      requestFrame(2 * i + 1, request(FUZZ_SVC, 'Meta', Buffer.alloc(0), { metadata: randomMetadata(rng) })),
    );
    const all = await attack(targets.fuzz, Buffer.concat(frames), 'random metadata', rng);
    expect(codes(all.received)).toEqual(frames.map(() => Code.OK));
  });

  it('(g) 5000 concurrent calls on one connection: 1024 run, the rest get ResourceExhausted; a close aborts the ones in flight', async () => {
    const { server, path } = targets.fuzz;
    const N = 5000;
    const started0 = block.started;
    const aborted0 = block.aborted;
    const connP = nextConnection(server);
    const peer = await Peer.open(path);
    const conn = await connP;
    const wave = (base: number) =>
      Buffer.concat(Array.from({ length: N }, (_, i) => requestFrame(2 * (base + i) + 1, request(FUZZ_SVC, 'Block', u32be(base + i)))));

    peer.sock.write(wave(0));
    const rejected = N - DEFAULT_MAX_IN_FLIGHT;
    await peer.until(() => peer.responses.length >= rejected, `${rejected} ResourceExhausted answers`);
    expect(conn.inFlight).toBe(DEFAULT_MAX_IN_FLIGHT);
    expect(block.started - started0).toBe(DEFAULT_MAX_IN_FLIGHT);
    expect(peer.responses.map((x) => [x.streamId, x.code, x.message])).toEqual(
      Array.from({ length: rejected }, (_, i) => [
        2 * (DEFAULT_MAX_IN_FLIGHT + i) + 1,
        Code.ResourceExhausted,
        `too many calls in flight (${DEFAULT_MAX_IN_FLIGHT})`,
      ]),
    );
    for (const release of block.release.splice(0)) release();
    await peer.until(() => peer.responses.length >= N, `${N} answers`);
    const done = peer.responses.slice(rejected);
    expect(done.map((x) => [x.streamId, x.code, x.payload.readUInt32BE(0)])).toEqual(
      Array.from({ length: DEFAULT_MAX_IN_FLIGHT }, (_, i) => [2 * i + 1, Code.OK, i]),
    );
    expect(conn.inFlight).toBe(0);

    // again, and the client goes away with 1024 calls in flight: all are aborted and released
    peer.sock.write(wave(N));
    await peer.until(() => peer.responses.length >= N + rejected, 'second wave rejections');
    expect(conn.inFlight).toBe(DEFAULT_MAX_IN_FLIGHT);
    peer.sock.destroy();
    await withDeadline(conn.closed, 5000, 'server side closed');
    expect(conn.inFlight).toBe(0);
    expect(block.aborted - aborted0).toBe(DEFAULT_MAX_IN_FLIGHT);
    expect(server.connections.size).toBe(0);
    block.release.length = 0;
    await targets.fuzz.healthy();
  });

  it('(i) a client that sends without reading: the server stops reading instead of buffering answers', async () => {
    const { server, path } = targets.fuzz;
    const entry = corpus.find((e) => e.name === 'even-id-flood.hex');
    expect(entry).toBeDefined();
    const flood = entry!.bytes;
    const frames = flood.length / HEADER_LENGTH;
    const answerBytes =
      frames *
      (HEADER_LENGTH + encodeResponse({ status: { code: Code.InvalidArgument, message: ODD_ID_MESSAGE, details: [] }, payload: Buffer.alloc(0) }).length);
    const bound = 1 << 20;
    expect(answerBytes).toBeGreaterThan(3 * bound); // enough to tell bounded from unbounded

    const connP = nextConnection(server);
    const sock = net.createConnection(path);
    await withDeadline(once(sock, 'connect'), 5000, 'connect');
    const conn = await connP;
    let peak = 0;
    let pauses = 0;
    conn.stream.on('pause', () => {
      pauses++;
      peak = Math.max(peak, conn.stream.writableLength);
    });
    const paused = once(conn.stream, 'pause');
    sock.write(flood); // and read nothing
    await withDeadline(paused, 10_000, 'the server to stop reading from a client that does not read');
    expect(conn.stream.writableLength).toBeLessThan(bound);

    const peer = new Peer(sock); // now read
    await peer.until(() => peer.responses.length >= frames, `${frames} answers`);
    expect(peer.responses.every((x) => x.streamId === 2 && x.code === Code.InvalidArgument)).toBe(true);
    expect(peer.responses.length).toBe(frames);
    expect(pauses).toBeGreaterThanOrEqual(1);
    expect(peak).toBeLessThan(bound);
    sock.end();
    await withDeadline(conn.closed, 5000, 'server side closed');
    await targets.fuzz.healthy();
  });

  it('hundreds of hostile connections leave no connections, calls or memory behind', async () => {
    const { server, path } = targets.fuzz;
    const gc = findGc();
    gc?.();
    const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const usedBefore = used();
    let sent = 0;
    const started0 = block.started;
    const aborted0 = block.aborted;
    const rng = new Rng(SEEDS[3]!);
    for (let round = 0; round < 300; round++) {
      const connP = nextConnection(server);
      const peer = await Peer.open(path);
      const conn = await connP;
      const parts: Buffer[] = [];
      switch (round % 5) {
        case 0:
          parts.push(rng.bytes(rng.int(8192)));
          break;
        case 1:
          parts.push(header(rng.pick([MAX + 1, 0xffffffff]), 1), rng.bytes(rng.int(65536)));
          break;
        case 2:
          for (let i = 0; i < 50; i++) parts.push(requestFrame(2 * i + 1, request(FUZZ_SVC, 'Block', rng.bytes(rng.int(4096)))));
          break;
        case 3: // most of a 4 MiB frame, held by the decoder until the connection goes
          parts.push(header(MAX, 1), Buffer.alloc(rng.range(256 << 10, 1 << 20), round));
          break;
        default:
          parts.push(mutationScript(targets.fuzz, rng));
      }
      const bytes = Buffer.concat(parts);
      sent += bytes.length;
      peer.sock.write(bytes);
      if (rng.chance(0.5)) peer.sock.end();
      else await new Promise<void>((resolve) => peer.sock.write(Buffer.alloc(0), () => resolve())).then(() => peer.sock.destroy());
      await withDeadline(conn.closed, 5000, `round ${round}: server side closed`);
      expect(conn.inFlight, `round ${round}`).toBe(0);
      if (round % 50 === 49) await targets.fuzz.healthy();
    }
    expect(server.connections.size).toBe(0);
    // every Block call that started was aborted by its connection's close
    expect(block.aborted - aborted0).toBe(block.started - started0);
    block.release.length = 0;
    gc?.();
    const growth = used() - usedBefore;
    // Kept connections would keep what was sent to them (tens of MB, mostly buffered by
    // their decoders); without a forced collection only a loose bound is meaningful.
    expect(sent).toBeGreaterThan(32e6);
    const bound = gc ? 16e6 : 256e6;
    expect(
      growth,
      `heap + buffers grew ${Math.round(growth / 1e6)} MB after ${Math.round(sent / 1e6)} MB sent (gc ${gc ? 'forced' : 'unavailable'})`,
    ).toBeLessThan(bound);
  });
});
