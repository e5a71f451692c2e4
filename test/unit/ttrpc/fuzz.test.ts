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
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, assert, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../src/common/config';
import { TernError } from '../../../src/common/errors';
import { silentLogger } from '../../../src/common/logging';
import { decode, encode } from '../../../src/common/proto';
import { createDriver } from '../../../src/hypervisor/index';
import { EventPublisher } from '../../../src/shim/events';
import { sandboxDir } from '../../../src/shim/paths';
import { Sandbox } from '../../../src/shim/sandbox';
import { registerTask } from '../../../src/shim/serve';
import { TaskService, VERSION } from '../../../src/shim/task-service';
import { TtrpcClient } from '../../../src/ttrpc/client';
import {
  encodeFrame,
  FrameDecoder,
  FrameType,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  type DecodedFrame,
} from '../../../src/ttrpc/frame-codec';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type KeyValue, type RequestMessage } from '../../../src/ttrpc/messages';
import { DEFAULT_MAX_IN_FLIGHT, TtrpcServer, type ServerConnection } from '../../../src/ttrpc/server';
import { Code, oversizeMessage } from '../../../src/ttrpc/status';

const MAX = MAX_MESSAGE_LENGTH;
const FUZZ_SVC = 'fuzz.v1.Echo';
const TASK_SVC = 'containerd.task.v2.Task';
const T = 'containerd.task.v2.';
const ODD_ID_MESSAGE = 'StreamID must be odd for client initiated streams';

// ---------------------------------------------------------------- PRNG

function parseSeed(s: string | undefined): number[] {
  if (!s) return [];
  const n = Number(s);
  return Number.isInteger(n) ? [n >>> 0] : [];
}
const SEEDS = [0x5eed0001, 0x5eed0002, 0x00c0ffee, 0x0decaf00, ...parseSeed(process.env.TTRPC_FUZZ_SEED)];
const hexSeed = (seed: number) => `0x${seed.toString(16).padStart(8, '0')}`;

/** mulberry32: tiny, fast, good enough to pick fuzz inputs; same seed, same sequence. */
class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  string(maxLength: number): string {
    const alphabet = ['a', 'b', 'z', '0', '9', '-', '_', '.', '/', ' ', 'é', '☃', '\u0000', '😀', 'A', 'Z'];
    let s = '';
    for (let n = this.int(maxLength + 1); n > 0; n--) s += this.pick(alphabet);
    return s;
  }
}

function hexPreview(bytes: Buffer, max = 256): string {
  const hex = bytes.subarray(0, max).toString('hex');
  return bytes.length > max ? `${hex}... (${bytes.length} bytes)` : hex;
}

// ---------------------------------------------------------------- helpers

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms))),
  ]);
}

function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function header(length: number, streamId: number, type: number = FrameType.Request, flags = 0): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h.writeUInt32BE(length >>> 0, 0);
  h.writeUInt32BE(streamId >>> 0, 4);
  h.writeUInt8(type & 0xff, 8);
  h.writeUInt8(flags & 0xff, 9);
  return h;
}

function request(service: string, method: string, payload: Uint8Array = Buffer.alloc(0), extra: Partial<RequestMessage> = {}): Buffer {
  return Buffer.from(encodeRequest({ service, method, payload: Buffer.from(payload), timeoutNano: 0, metadata: [], ...extra }));
}

function requestFrame(streamId: number, envelope: Uint8Array, type: number = FrameType.Request): Buffer {
  return Buffer.concat([header(envelope.length, streamId, type), envelope]);
}

/** global.gc, or else one obtained by turning --expose-gc on at run time; undefined if neither works. */
function findGc(): (() => void) | undefined {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------- decoder reference

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

function chunkSizes(rng: Rng, total: number): number[] {
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

/** Fail with a message built only on failure (the checks run millions of times). */
function check(cond: boolean, message: () => string): asserts cond {
  if (!cond) assert.fail(message());
}

/**
 * Feed `bytes` to a FrameDecoder in the given chunks; after every push, the
 * frames returned so far and `buffered` must be what the reference parse says.
 */
function checkDecoder(bytes: Buffer, max: number, sizes: number[], ctx: string): number {
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
    check(due === undefined || due.emitAt > pos, () => `${ctx}: frame #${returned} ${showFrame(due?.frame)} not returned by offset ${pos}; input ${hexPreview(bytes, 4096)}`);
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
function randomStream(rng: Rng, max: number): Buffer {
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

// ---------------------------------------------------------------- corpus

interface CorpusEntry {
  name: string;
  bytes: Buffer;
  /** Declared answer codes per server, in frame order (0 = ok); [] = no answer, closed when the client ends. */
  declared: Map<string, number[]>;
}

const CORPUS_DIR = fileURLToPath(new URL('./corpus', import.meta.url));

function parseRepeat(token: string, what: string): { unit: string; count: number } {
  const m = /^([^*]+)(?:\*(\d+))?$/.exec(token);
  if (!m) throw new Error(`corpus ${what}: bad token ${token}`);
  return { unit: m[1]!, count: m[2] === undefined ? 1 : Number(m[2]) };
}

function parseCorpus(name: string, text: string): CorpusEntry {
  const parts: Buffer[] = [];
  const declared = new Map<string, number[]>();
  for (const line of text.split('\n')) {
    const directive = /^#!\s*(\w+):(.*)$/.exec(line);
    if (directive) {
      const codes: number[] = [];
      for (const token of directive[2]!.trim().split(/\s+/)) {
        if (token === 'none') continue;
        const { unit, count } = parseRepeat(token, name);
        const code = unit === 'ok' ? 0 : Number(unit);
        if (!Number.isInteger(code)) throw new Error(`corpus ${name}: bad answer ${token}`);
        for (let i = 0; i < count; i++) codes.push(code);
      }
      declared.set(directive[1]!, codes);
      continue;
    }
    for (const token of line.replace(/#.*$/, '').trim().split(/\s+/).filter(Boolean)) {
      const { unit, count } = parseRepeat(token, name);
      if (!/^([0-9a-f]{2})+$/i.test(unit)) throw new Error(`corpus ${name}: bad hex ${unit}`);
      const pattern = Buffer.from(unit, 'hex');
      parts.push(count === 1 ? pattern : Buffer.alloc(pattern.length * count).fill(pattern));
    }
  }
  return { name, bytes: Buffer.concat(parts), declared };
}

function loadCorpus(): CorpusEntry[] {
  return readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.hex'))
    .sort()
    .map((f) => parseCorpus(f, readFileSync(join(CORPUS_DIR, f), 'utf8')));
}

// ---------------------------------------------------------------- model of the servers

/** What one request frame gets: a status code (0 = ok), and what the message or payload must be. */
interface Outcome {
  code: number;
  message?: string;
  payload?: (p: Buffer) => boolean;
  what?: string;
}
type HandlerOutcome = Outcome | 'unregistered' | 'ambiguous';

interface Expected {
  streamId: number;
  outcome: Outcome;
}

/**
 * Which answers a server owes for a byte stream, following server.ts in its
 * order: non-Request frames are ignored, even ids get InvalidArgument, oversize
 * frames ResourceExhausted, undecodable envelopes InvalidArgument, unknown
 * service/method Unimplemented, the rest what the handler says. `ambiguous`
 * when the answer depends on timing (a stream id reused while maybe in flight,
 * a handler that waits): generators discard such inputs.
 */
function model(bytes: Buffer, handlerOutcome: (req: RequestMessage) => HandlerOutcome): { expected: Expected[]; ambiguous: boolean } {
  const expected: Expected[] = [];
  const handled = new Set<number>();
  for (const f of new FrameDecoder().push(bytes)) {
    const { streamId } = f;
    if (f.type !== FrameType.Request) continue;
    if (streamId % 2 === 0) {
      expected.push({ streamId, outcome: { code: Code.InvalidArgument, message: ODD_ID_MESSAGE } });
      continue;
    }
    if (f.oversize !== undefined) {
      expected.push({ streamId, outcome: { code: Code.ResourceExhausted, message: oversizeMessage(f.oversize, MAX) } });
      continue;
    }
    if (handled.has(streamId)) return { expected, ambiguous: true };
    let req: RequestMessage;
    try {
      req = decodeRequest(f.payload);
    } catch (err) {
      expected.push({ streamId, outcome: { code: Code.InvalidArgument, message: `unmarshal request error: ${(err as Error).message}` } });
      continue;
    }
    const o = handlerOutcome(req);
    if (o === 'ambiguous') return { expected, ambiguous: true };
    if (o === 'unregistered') {
      expected.push({ streamId, outcome: { code: Code.Unimplemented } });
      continue;
    }
    handled.add(streamId);
    expected.push({ streamId, outcome: o });
  }
  return { expected, ambiguous: false };
}

// ---------------------------------------------------------------- raw client

interface Received {
  streamId: number;
  code: number;
  message: string;
  payload: Buffer;
}

/** A client speaking raw bytes; collects the answers and notices the close. */
class Peer {
  readonly responses: Received[] = [];
  /** Anything the server sent that is not a well-formed ttrpc answer. */
  readonly protocolErrors: string[] = [];
  closed = false;
  private readonly waiters = new Set<() => void>();

  constructor(readonly sock: net.Socket) {
    const dec = new FrameDecoder();
    sock.on('data', (chunk: Buffer) => {
      for (const f of dec.push(chunk)) {
        if (f.oversize !== undefined) {
          this.protocolErrors.push(`oversize answer (${f.oversize} bytes) on stream ${f.streamId}`);
          continue;
        }
        if (f.type !== FrameType.Response || f.flags !== 0) this.protocolErrors.push(`answer frame type ${f.type} flags ${f.flags}`);
        try {
          const res = decodeResponse(f.payload);
          this.responses.push({ streamId: f.streamId, code: res.status?.code ?? 0, message: res.status?.message ?? '', payload: res.payload });
        } catch (err) {
          this.protocolErrors.push(`undecodable answer on stream ${f.streamId}: ${(err as Error).message}`);
        }
      }
      this.notify();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  static async open(path: string): Promise<Peer> {
    const sock = net.createConnection(path);
    await withDeadline(once(sock, 'connect'), 5000, `connect ${path}`);
    return new Peer(sock);
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves when `pred` holds; rejects if the connection closes first or after `ms` (a guard, not a wait). */
  until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => done(new Error(`timed out waiting for ${what} (${this.responses.length} answers so far)`)), ms);
      const check = () => {
        if (pred()) done();
        else if (this.closed) done(new Error(`connection closed while waiting for ${what} (${this.responses.length} answers)`));
      };
      this.waiters.add(check);
    });
  }
}

function nextConnection(server: TtrpcServer): Promise<ServerConnection> {
  return new Promise((resolve) => {
    const off = server.onConnection((conn) => {
      off();
      resolve(conn);
    });
  });
}

/** Does a message the server sent satisfy the expected one? A message too long for one frame arrives cut. */
function messageMatches(got: string, want: string, code: number): boolean {
  if (got === want) return true;
  const fits = encodeResponse({ status: { code, message: want, details: [] }, payload: Buffer.alloc(0) }).length <= MAX;
  const cut = got.endsWith('\uFFFD') ? got.slice(0, -1) : got;
  return !fits && cut.length >= MAX / 2 && want.startsWith(cut);
}

function satisfies(r: Received, o: Outcome): boolean {
  if (r.code !== o.code) return false;
  if (o.message !== undefined && !messageMatches(r.message, o.message, o.code)) return false;
  if (o.payload && !o.payload(r.payload)) return false;
  return true;
}

const show = (r: Received) => `{id=${r.streamId} code=${r.code} msg=${JSON.stringify(r.message.slice(0, 80))} payload=${hexPreview(r.payload, 24)}}`;
const showExpected = (e: Expected) =>
  `{id=${e.streamId} code=${e.outcome.code}${e.outcome.message !== undefined ? ` msg=${JSON.stringify(e.outcome.message.slice(0, 80))}` : ''}${e.outcome.what ? ` ${e.outcome.what}` : ''}}`;

/** Pair every expected answer with one received on the same stream; report what is missing or extra. */
function matchAnswers(received: Received[], expected: Expected[]): string[] {
  const byStream = new Map<number, { list: Received[]; used: boolean[]; first: number }>();
  for (const r of received) {
    let s = byStream.get(r.streamId);
    if (!s) byStream.set(r.streamId, (s = { list: [], used: [], first: 0 }));
    s.list.push(r);
    s.used.push(false);
  }
  const problems: string[] = [];
  for (const e of expected) {
    const s = byStream.get(e.streamId);
    let found = -1;
    if (s) {
      while (s.first < s.list.length && s.used[s.first]) s.first++;
      for (let i = s.first; i < s.list.length; i++) {
        if (!s.used[i] && satisfies(s.list[i]!, e.outcome)) {
          found = i;
          break;
        }
      }
    }
    if (found < 0) problems.push(`missing ${showExpected(e)}; on that stream got ${(s?.list ?? []).slice(0, 4).map(show).join(', ') || 'nothing'}`);
    else s!.used[found] = true;
  }
  for (const s of byStream.values()) s.list.forEach((r, i) => !s.used[i] && problems.push(`unexpected answer ${show(r)}`));
  return problems.slice(0, 10);
}

// ---------------------------------------------------------------- targets

interface Target {
  name: 'fuzz' | 'task';
  server: TtrpcServer;
  path: string;
  outcome(req: RequestMessage): HandlerOutcome;
  /** The envelope of a request this server answers normally. */
  validRequest(rng: Rng): Buffer;
  /** The envelope of a request to a registered method whose payload is junk. */
  garbageRequest(rng: Rng): Buffer;
  /** A new connection gets a correct answer to a valid request. */
  healthy(): Promise<void>;
}

interface AttackResult {
  expected: Expected[];
  received: Received[];
}

/**
 * One connection: send `bytes` (in random pieces), wait for every answer the
 * model says is owed, end the connection, and check: exactly the owed answers
 * came, the server closed its side, dropped the connection and its calls, and
 * a new connection is still served correctly.
 */
async function attack(target: Target, bytes: Buffer, ctx: string, rng?: Rng): Promise<AttackResult> {
  const { expected, ambiguous } = model(bytes, (req) => target.outcome(req));
  assert(!ambiguous, `${ctx}: input has no single right answer (fix the generator)`);
  const connP = nextConnection(target.server);
  const peer = await Peer.open(target.path);
  const conn = await withDeadline(connP, 5000, 'server side of the connection');
  const sizes = rng && bytes.length <= 1 << 16 ? chunkSizes(rng, bytes.length) : [bytes.length];
  let pos = 0;
  for (const n of sizes) {
    if (n > 0) peer.sock.write(bytes.subarray(pos, pos + n));
    pos += n;
  }
  const where = `${ctx} [${target.name} server; input ${hexPreview(bytes, 4096)}]`;
  await peer.until(() => peer.responses.length >= expected.length, `${expected.length} answers: ${where}`);
  peer.sock.end();
  await peer.until(() => peer.closed, `the server to close the connection: ${where}`);
  await withDeadline(conn.closed, 5000, `server side closed: ${where}`);
  expect(peer.protocolErrors, where).toEqual([]);
  expect(matchAnswers(peer.responses, expected), where).toEqual([]);
  expect(conn.inFlight, `calls left on a closed connection: ${where}`).toBe(0);
  expect(target.server.connections.has(conn), `closed connection still tracked: ${where}`).toBe(false);
  await target.healthy();
  expect(target.server.connections.size, `connections left after ${where}`).toBe(0);
  return { expected, received: peer.responses };
}

const codes = (rs: { code: number }[]) => rs.map((r) => r.code);

// State as the fuzz server's echo handler answers it.
type IdRequest = { id: string; exec_id: string };

function fuzzOutcome(req: RequestMessage): HandlerOutcome {
  if (req.service !== FUZZ_SVC) return 'unregistered';
  switch (req.method) {
    case 'State': {
      let body: IdRequest;
      try {
        body = decode<IdRequest>(T + 'StateRequest', req.payload);
      } catch (err) {
        return { code: Code.InvalidArgument, message: `bad StateRequest: ${(err as Error).message}` };
      }
      return {
        code: Code.OK,
        what: `StateResponse id=${JSON.stringify(body.id)}`,
        payload: (p) => {
          const res = decode<{ id: string; exec_id: string; status: number }>(T + 'StateResponse', p);
          return res.id === body.id && res.exec_id === body.exec_id && res.status === 2;
        },
      };
    }
    case 'Throw':
      return { code: Code.FailedPrecondition, message: `rejected: ${req.payload.toString('hex')}` };
    case 'Meta': {
      const want = new Map<string, string[]>();
      for (const { key, value } of req.metadata) {
        const k = key.toLowerCase();
        want.set(k, [...(want.get(k) ?? []), value]);
      }
      const entries = [...want.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return { code: Code.OK, what: `metadata ${JSON.stringify(entries).slice(0, 80)}`, payload: (p) => isDeepStrictEqual(JSON.parse(p.toString()), entries) };
    }
    case 'Block':
      return 'ambiguous';
    default:
      return 'unregistered';
  }
}

// Request type of every method registerTask registers (src/shim/serve.ts).
const TASK_REQUESTS: Record<string, string> = {
  Create: 'CreateTaskRequest',
  Start: 'StartRequest',
  State: 'StateRequest',
  Wait: 'WaitRequest',
  Kill: 'KillRequest',
  Delete: 'DeleteRequest',
  Pids: 'PidsRequest',
  CloseIO: 'CloseIORequest',
  ResizePty: 'ResizePtyRequest',
  Connect: 'ConnectRequest',
  Shutdown: 'ShutdownRequest',
  Exec: 'ExecProcessRequest',
  Pause: 'PauseRequest',
  Resume: 'ResumeRequest',
  Checkpoint: 'CheckpointTaskRequest',
  Update: 'UpdateTaskRequest',
  Stats: 'StatsRequest',
};
// Methods that look a container up first: with none created, NotFound.
const TASK_LOOKUPS = ['Start', 'State', 'Wait', 'Kill', 'Delete', 'Pids', 'CloseIO', 'ResizePty', 'Exec', 'Pause', 'Resume', 'Update', 'Stats'];

/** The real TaskService with no container: what each RPC answers. */
function taskOutcome(req: RequestMessage): HandlerOutcome {
  if (req.service !== TASK_SVC || !Object.hasOwn(TASK_REQUESTS, req.method)) return 'unregistered';
  let body: { id?: string };
  try {
    body = decode<{ id?: string }>(T + TASK_REQUESTS[req.method]!, req.payload);
  } catch (err) {
    // registerTask decodes before the service runs: the caller's error.
    return { code: Code.InvalidArgument, message: `${req.method}: cannot decode ${T}${TASK_REQUESTS[req.method]!}: ${(err as Error).message}` };
  }
  switch (req.method) {
    case 'Connect':
      return {
        code: Code.OK,
        what: 'ConnectResponse',
        payload: (p) => {
          const res = decode<{ shim_pid: number; task_pid: number; version: string }>(T + 'ConnectResponse', p);
          return res.shim_pid === process.pid && res.task_pid === 0 && res.version === VERSION;
        },
      };
    case 'Checkpoint':
      return { code: Code.Unimplemented, message: 'Checkpoint: not implemented by tern' };
    case 'Create':
      // Only the empty id is safe: anything else would go on to read a bundle and boot a VM.
      return body.id === '' ? { code: Code.InvalidArgument, message: 'create: empty container id' } : 'ambiguous';
    case 'Shutdown':
      return 'ambiguous';
    default:
      return { code: Code.NotFound, message: `container ${body.id}: not found` };
  }
}

const NAMES = ['', 'State', 'state', 'STATE', '__proto__', 'constructor', 'toString', 'hasOwnProperty', FUZZ_SVC, TASK_SVC, 'tern.agent.v1.Agent', 'Block', 'Throw', 'Meta', 'Connect'];
function randomName(rng: Rng): string {
  return rng.chance(0.6) ? rng.pick(NAMES) : rng.chance(0.5) ? rng.string(20) : rng.bytes(rng.int(12)).toString('latin1');
}

function randomMetadata(rng: Rng): KeyValue[] {
  const keys = ['__proto__', 'constructor', 'Constructor', 'toString', 'valueOf', 'hasOwnProperty', 'containerd-namespace', 'X-Trace', 'x-trace', '', '0', '1'];
  return Array.from({ length: rng.int(6) }, () => ({ key: rng.chance(0.7) ? rng.pick(keys) : rng.string(8), value: rng.string(8) }));
}

function fuzzValidRequest(rng: Rng): Buffer {
  const extra: Partial<RequestMessage> = rng.chance(0.2) ? { timeoutNano: rng.pick([1, 1000, 5e9, -5, 2 ** 53 - 1]) } : {};
  switch (rng.int(3)) {
    case 0:
      return request(FUZZ_SVC, 'State', encode(T + 'StateRequest', { id: rng.string(24), exec_id: rng.string(8) }), extra);
    case 1:
      return request(FUZZ_SVC, 'Throw', rng.bytes(rng.int(32)), extra);
    default:
      return request(FUZZ_SVC, 'Meta', Buffer.alloc(0), { ...extra, metadata: randomMetadata(rng) });
  }
}

function taskValidRequest(rng: Rng): Buffer {
  const id = rng.chance(0.8) ? rng.string(24) : '';
  const exec_id = rng.chance(0.5) ? rng.string(8) : '';
  const extra: Partial<RequestMessage> = rng.chance(0.2) ? { timeoutNano: rng.pick([1, 1000, 5e9]) } : {};
  switch (rng.int(8)) {
    case 0:
      return request(TASK_SVC, 'Kill', encode(T + 'KillRequest', { id, exec_id, signal: rng.pick([0, 9, 15, 65, 0xffffffff]), all: rng.chance(0.5) }), extra);
    case 1:
      return request(TASK_SVC, 'Delete', encode(T + 'DeleteRequest', { id, exec_id }), extra);
    case 2:
      return request(TASK_SVC, 'Connect', encode(T + 'ConnectRequest', { id }), extra);
    case 3:
      return request(TASK_SVC, 'Checkpoint', encode(T + 'CheckpointTaskRequest', { id }), extra);
    case 4:
      return request(TASK_SVC, 'Create', encode(T + 'CreateTaskRequest', { id: '', bundle: rng.string(16) }), extra);
    case 5: {
      const m = rng.pick(TASK_LOOKUPS);
      return request(TASK_SVC, m, encode(T + TASK_REQUESTS[m]!, { id }), extra);
    }
    default:
      return request(TASK_SVC, 'State', encode(T + 'StateRequest', { id, exec_id }), extra);
  }
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
function mutationScript(target: Target, rng: Rng): Buffer {
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
    expect(checkDecoder(atLimit, MAX, Array.from({ length: Math.ceil(atLimit.length / 4099) }, () => 4099), 'frame at the limit')).toBe(1);
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
        Number.isInteger(streamId) && streamId >= 0 && streamId <= 0xffffffff && Number.isInteger(type) && type >= 0 && type <= 255 &&
        Number.isInteger(flags) && flags >= 0 && flags <= 255 && payload.length <= max;
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

    // Configured as the agent configures its server (src/agent/main.ts): default options.
    const fuzz = new TtrpcServer();
    fuzz.register(FUZZ_SVC, 'State', async (payload) => {
      let req: IdRequest;
      try {
        req = decode<IdRequest>(T + 'StateRequest', payload);
      } catch (err) {
        throw new TernError('InvalidArgument', `bad StateRequest: ${(err as Error).message}`);
      }
      return encode(T + 'StateResponse', { id: req.id, exec_id: req.exec_id, status: 2 });
    });
    fuzz.register(FUZZ_SVC, 'Throw', async (payload) => {
      throw new TernError('FailedPrecondition', `rejected: ${payload.toString('hex')}`);
    });
    fuzz.register(FUZZ_SVC, 'Meta', async (_payload, ctx) => {
      const entries = Object.entries(ctx.metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return Buffer.from(JSON.stringify(entries));
    });
    fuzz.register(
      FUZZ_SVC,
      'Block',
      (payload, ctx) =>
        new Promise<Uint8Array>((resolve, reject) => {
          block.started++;
          block.release.push(() => resolve(payload));
          ctx.signal.addEventListener('abort', () => {
            block.aborted++;
            reject(ctx.signal.reason);
          });
        }),
    );
    const fuzzPath = join(dir, 'fuzz.sock');
    await fuzz.listen(fuzzPath);
    targets.fuzz = {
      name: 'fuzz',
      server: fuzz,
      path: fuzzPath,
      outcome: fuzzOutcome,
      validRequest: fuzzValidRequest,
      garbageRequest: (rng) => request(FUZZ_SVC, 'State', rng.bytes(rng.int(40))),
      healthy: async () => {
        const connP = nextConnection(fuzz);
        const client = await TtrpcClient.connect(fuzzPath, 5000);
        const conn = await connP;
        try {
          const id = `healthy-${block.started}-${Date.now()}`;
          const reply = await withDeadline(client.call(FUZZ_SVC, 'State', encode(T + 'StateRequest', { id, exec_id: 'e1' })), 5000, 'health check');
          expect(decode(T + 'StateResponse', reply)).toMatchObject({ id, exec_id: 'e1', status: 2 });
        } finally {
          await client.close();
        }
        await withDeadline(conn.closed, 5000, 'health-check connection closed');
      },
    };

    // The shim's server, wired as src/shim/serve.ts wires it, with state kept in the temp dir.
    const cfg = defaultConfig();
    cfg.runtime.stateDir = join(dir, 'state');
    cfg.runtime.cacheDir = join(dir, 'cache');
    cfg.factory.templateDir = join(dir, 'templates');
    cfg.pool.dir = join(dir, 'pool');
    cfg.pool.socket = join(dir, 'pool.sock');
    const driver = createDriver(cfg.hypervisor.driver, silentLogger);
    sandbox = new Sandbox('fuzz', 'fuzz-pod', sandboxDir(cfg.runtime.stateDir, 'fuzz', 'fuzz-pod'), cfg, driver, silentLogger);
    const events = new EventPublisher(undefined, 'fuzz', silentLogger);
    const svc = new TaskService(sandbox, cfg, events, silentLogger, () => shutdowns++);
    const task = new TtrpcServer();
    registerTask(task, svc, silentLogger);
    const taskPath = join(dir, 'task.sock');
    await task.listen(taskPath);
    targets.task = {
      name: 'task',
      server: task,
      path: taskPath,
      outcome: taskOutcome,
      validRequest: taskValidRequest,
      garbageRequest: (rng) => request(TASK_SVC, rng.pick([...TASK_LOOKUPS, 'Connect', 'Checkpoint']), rng.bytes(rng.int(40))),
      healthy: async () => {
        const connP = nextConnection(task);
        const client = await TtrpcClient.connect(taskPath, 5000);
        const conn = await connP;
        try {
          const reply = await withDeadline(client.call(TASK_SVC, 'Connect', encode(T + 'ConnectRequest', { id: 'x' })), 5000, 'health check');
          expect(decode(T + 'ConnectResponse', reply)).toMatchObject({ shim_pid: process.pid, version: VERSION });
        } finally {
          await client.close();
        }
        await withDeadline(conn.closed, 5000, 'health-check connection closed');
      },
    };
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

    it('(c) garbage protobuf envelopes and payloads: InvalidArgument, Unimplemented or the handler\'s own error', async () => {
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
      ].filter(([service, method]) => t().outcome({ service: service!, method: method!, payload: Buffer.alloc(0), timeoutNano: 0, metadata: [] }) === 'unregistered');
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
        expect(r.expected.map((e) => e.outcome.code), `${entry.name}: model vs declared`).toEqual(declared);
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
    const frames = Array.from({ length: 200 }, (_, i) => requestFrame(2 * i + 1, request(FUZZ_SVC, 'Meta', Buffer.alloc(0), { metadata: randomMetadata(rng) })));
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
      Array.from({ length: rejected }, (_, i) => [2 * (DEFAULT_MAX_IN_FLIGHT + i) + 1, Code.ResourceExhausted, `too many calls in flight (${DEFAULT_MAX_IN_FLIGHT})`]),
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
    const answerBytes = frames * (HEADER_LENGTH + encodeResponse({ status: { code: Code.InvalidArgument, message: ODD_ID_MESSAGE, details: [] }, payload: Buffer.alloc(0) }).length);
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
    expect(growth, `heap + buffers grew ${Math.round(growth / 1e6)} MB after ${Math.round(sent / 1e6)} MB sent (gc ${gc ? 'forced' : 'unavailable'})`).toBeLessThan(bound);
  });
});
