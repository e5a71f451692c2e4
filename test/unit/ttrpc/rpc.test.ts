// TtrpcServer + TtrpcClient end to end, over a real unix socket and over an
// in-memory duplex pair; raw frames are used where a well-behaved client
// cannot produce the input (even ids, oversize frames, garbage envelopes).
import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { encodeFrame, FrameDecoder, FrameType, MAX_MESSAGE_LENGTH } from '../../../src/ttrpc/frame-codec';
import { decodeResponse, encodeRequest, type ResponseMessage } from '../../../src/ttrpc/messages';
import { TtrpcServer, type CallContext, type ServerOptions } from '../../../src/ttrpc/server';
import { TtrpcClient } from '../../../src/ttrpc/client';
import { Code, TtrpcError } from '../../../src/ttrpc/status';
import { duplexPair } from './duplex-pair';

const SVC = 'test.v1.Echo';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p.finally(() => clearTimeout(t)), new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)))]);
}

async function rejection(p: Promise<unknown>): Promise<TtrpcError> {
  const err = await withDeadline(
    p.then(
      () => undefined,
      (e: unknown) => e,
    ),
    5000,
    'call to settle',
  );
  expect(err).toBeInstanceOf(TtrpcError);
  return err as TtrpcError;
}

/** A client that writes raw frames and reads responses by stream id. */
class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly got = new Map<number, ResponseMessage>();
  private readonly waiters = new Map<number, (r: ResponseMessage) => void>();
  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) {
        if (!f.payload) throw new Error('oversize response');
        const res = decodeResponse(f.payload);
        const w = this.waiters.get(f.streamId);
        if (w) w(res);
        else this.got.set(f.streamId, res);
      }
    });
    stream.on('error', () => {});
  }
  send(streamId: number, payload: Uint8Array, type: number = FrameType.Request): void {
    this.stream.write(encodeFrame(streamId, type, payload));
  }
  request(streamId: number, method: string, payload: Uint8Array = Buffer.alloc(0), timeoutNano = 0): void {
    this.send(streamId, encodeRequest({ service: SVC, method, payload: Buffer.from(payload), timeoutNano, metadata: [] }));
  }
  response(streamId: number): Promise<ResponseMessage> {
    const have = this.got.get(streamId);
    if (have) return Promise.resolve(have);
    return withDeadline(new Promise((resolve) => this.waiters.set(streamId, resolve)), 5000, `response on stream ${streamId}`);
  }
}

interface Transport {
  name: string;
  /** Serve `server` and return a fresh connected stream to it. */
  connect(server: TtrpcServer): Promise<Duplex>;
  cleanup(): Promise<void>;
}

function memoryTransport(): Transport {
  return {
    name: 'in-memory duplex pair',
    async connect(server) {
      const [a, b] = duplexPair();
      server.serve(a);
      return b;
    },
    async cleanup() {},
  };
}

function unixTransport(): Transport {
  let dir: string | undefined;
  let listening: TtrpcServer | undefined;
  return {
    name: 'unix socket',
    async connect(server) {
      dir ??= await mkdtemp(join(tmpdir(), 'ttrpc-test-'));
      const path = join(dir, 's.sock');
      if (listening !== server) {
        await server.listen(path);
        listening = server;
      }
      const sock = net.createConnection(path);
      await withDeadline(new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject)), 5000, 'connect');
      return sock;
    },
    async cleanup() {
      if (dir) await rm(dir, { recursive: true, force: true });
      dir = undefined;
      listening = undefined;
    },
  };
}

describe.each([
  { name: 'in-memory duplex pair', makeTransport: memoryTransport },
  { name: 'unix socket', makeTransport: unixTransport },
])('ttrpc over $name', ({ makeTransport }) => {
  let transport: Transport;
  let server: TtrpcServer;
  let clients: TtrpcClient[];
  let raws: Duplex[];

  beforeEach(() => {
    transport = makeTransport();
    clients = [];
    raws = [];
  });

  afterEach(async () => {
    for (const r of raws) r.destroy();
    await Promise.all(clients.map((c) => c.close()));
    if (server) await withDeadline(server.close(), 5000, 'server close');
    await transport.cleanup();
  });

  async function start(opts?: ServerOptions, setup?: (s: TtrpcServer) => void): Promise<TtrpcClient> {
    server = new TtrpcServer(opts);
    server.register(SVC, 'Echo', async (payload) => payload);
    setup?.(server);
    const client = new TtrpcClient(await transport.connect(server));
    clients.push(client);
    return client;
  }

  async function raw(): Promise<RawPeer> {
    const s = await transport.connect(server);
    raws.push(s);
    return new RawPeer(s);
  }

  it('answers a call with the handler payload', async () => {
    const client = await start();
    const reply = await client.call(SVC, 'Echo', Buffer.from('ping'));
    expect(reply.toString()).toBe('ping');
    expect(Buffer.isBuffer(reply)).toBe(true);
    expect((await client.call(SVC, 'Echo', new Uint8Array(0))).length).toBe(0);
  });

  it('runs many concurrent calls answered out of order, on odd stream ids', async () => {
    const ids: number[] = [];
    const client = await start({}, (s) =>
      s.register(SVC, 'Slow', async (payload, ctx) => {
        ids.push(ctx.streamId);
        const n = payload.readUInt32BE(0);
        await sleep((50 - n) * 2); // later calls answer first
        return Buffer.from(`r${n}`);
      }),
    );
    const order: number[] = [];
    const calls = Array.from({ length: 50 }, (_, n) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return client.call(SVC, 'Slow', b).then((r) => {
        order.push(n);
        return r.toString();
      });
    });
    const replies = await withDeadline(Promise.all(calls), 5000, 'concurrent calls');
    expect(replies).toEqual(Array.from({ length: 50 }, (_, n) => `r${n}`));
    expect(order[0]).toBe(49);
    expect(ids.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, n) => 1 + 2 * n));
  });

  it('answers Unimplemented (12) for an unknown service or method', async () => {
    const client = await start();
    const m = await rejection(client.call(SVC, 'Nope', Buffer.alloc(0)));
    expect(m.code).toBe(Code.Unimplemented);
    expect(m.message).toContain('Nope');
    expect((await rejection(client.call('no.Such', 'Echo', Buffer.alloc(0)))).code).toBe(12);
  });

  it('maps handler errors through statusFromError', async () => {
    const client = await start({}, (s) => {
      s.register(SVC, 'NotFound', async () => {
        throw new TernError('NotFound', 'task t1: not found');
      });
      s.register(SVC, 'Precondition', async () => {
        throw new TernError('FailedPrecondition', 'not running');
      });
      s.register(SVC, 'Plain', async () => {
        throw new Error('boom');
      });
      s.register(SVC, 'Errno', async () => {
        throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      });
      s.register(SVC, 'Sync', (() => {
        throw new TernError('AlreadyExists', 'dup');
      }) as never);
      s.register(SVC, 'NoBytes', (async () => undefined) as never);
    });
    const nf = await rejection(client.call(SVC, 'NotFound', Buffer.alloc(0)));
    expect([nf.code, nf.message]).toEqual([5, 'task t1: not found']);
    expect((await rejection(client.call(SVC, 'Precondition', Buffer.alloc(0)))).code).toBe(9);
    const plain = await rejection(client.call(SVC, 'Plain', Buffer.alloc(0)));
    expect([plain.code, plain.message]).toEqual([2, 'boom']);
    expect((await rejection(client.call(SVC, 'Errno', Buffer.alloc(0)))).code).toBe(2);
    expect((await rejection(client.call(SVC, 'Sync', Buffer.alloc(0)))).code).toBe(6);
    expect((await rejection(client.call(SVC, 'NoBytes', Buffer.alloc(0)))).code).toBe(13);
    expect((await client.call(SVC, 'Echo', Buffer.from('still ok'))).toString()).toBe('still ok');
  });

  it('passes metadata (keys lowercased, repeated values kept) and the deadline', async () => {
    let seen: CallContext | undefined;
    const client = await start({}, (s) =>
      s.register(SVC, 'Meta', async (_p, ctx) => {
        seen = ctx;
        return Buffer.alloc(0);
      }),
    );
    const before = Date.now();
    await client.call(SVC, 'Meta', Buffer.alloc(0), {
      metadata: { 'containerd-namespace-ttrpc': 'k8s.io', 'X-Multi': ['a', 'b'] },
      timeoutMs: 3000,
    });
    expect(seen?.service).toBe(SVC);
    expect(seen?.method).toBe('Meta');
    expect(seen?.metadata).toEqual({ 'containerd-namespace-ttrpc': ['k8s.io'], 'x-multi': ['a', 'b'] });
    expect(seen?.deadline).toBeGreaterThanOrEqual(before + 3000);
    expect(seen?.deadline).toBeLessThan(Date.now() + 3000 + 50);
    expect(seen?.signal.aborted).toBe(false);
    await client.call(SVC, 'Meta', Buffer.alloc(0));
    expect(seen?.deadline).toBeUndefined();
    expect(seen?.metadata).toEqual({});
  });

  it('rejects a client call locally with DeadlineExceeded (4) and aborts the handler', async () => {
    let signal: AbortSignal | undefined;
    const client = await start({}, (s) =>
      s.register(SVC, 'Hang', (_p, ctx) => {
        signal = ctx.signal;
        return new Promise<Uint8Array>(() => {});
      }),
    );
    const t0 = Date.now();
    const err = await rejection(client.call(SVC, 'Hang', Buffer.alloc(0), { timeoutMs: 100 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(95);
    await withDeadline(
      (async () => {
        while (!signal?.aborted) await sleep(5);
      })(),
      2000,
      'handler abort',
    );
    expect((signal?.reason as TtrpcError | undefined)?.code).toBe(Code.DeadlineExceeded);
    expect(client.pendingCalls).toBe(0);
    expect((await client.call(SVC, 'Echo', Buffer.from('after'))).toString()).toBe('after');
  });

  it('answers DeadlineExceeded from the server when timeout_nano passes', async () => {
    await start({}, (s) => s.register(SVC, 'Hang', () => new Promise<Uint8Array>(() => {})));
    const peer = await raw();
    const t0 = Date.now();
    peer.request(1, 'Hang', Buffer.alloc(0), 80e6);
    const res = await peer.response(1);
    expect(res.status?.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(75);
  });

  it('lets an AbortSignal cancel a call (1)', async () => {
    const client = await start({}, (s) => s.register(SVC, 'Hang', () => new Promise<Uint8Array>(() => {})));
    const ac = new AbortController();
    const p = client.call(SVC, 'Hang', Buffer.alloc(0), { signal: ac.signal });
    ac.abort();
    expect((await rejection(p)).code).toBe(Code.Canceled);
    expect((await rejection(client.call(SVC, 'Echo', Buffer.alloc(0), { signal: ac.signal }))).code).toBe(Code.Canceled);
  });

  it('answers ResourceExhausted (8) to an oversize request and keeps the connection', async () => {
    await start();
    const peer = await raw();
    const header = Buffer.alloc(10);
    header.writeUInt32BE(MAX_MESSAGE_LENGTH + 1, 0);
    header.writeUInt32BE(1, 4);
    header.writeUInt8(FrameType.Request, 8);
    peer.stream.write(header);
    for (let sent = 0; sent < MAX_MESSAGE_LENGTH + 1; sent += 1 << 20) {
      peer.stream.write(Buffer.alloc(Math.min(1 << 20, MAX_MESSAGE_LENGTH + 1 - sent), 0x42));
    }
    peer.request(3, 'Echo', Buffer.from('after oversize'));
    const big = await peer.response(1);
    expect(big.status).toEqual({
      code: Code.ResourceExhausted,
      message: `message length ${MAX_MESSAGE_LENGTH + 1} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`,
      details: [],
    });
    const ok = await peer.response(3);
    expect(ok.status?.code ?? 0).toBe(0);
    expect(ok.payload.toString()).toBe('after oversize');
  });

  it('answers ResourceExhausted when the reply would be over 4 MiB, and the client refuses oversize requests', async () => {
    const client = await start({}, (s) => s.register(SVC, 'Big', async () => Buffer.alloc(MAX_MESSAGE_LENGTH, 1)));
    const err = await rejection(client.call(SVC, 'Big', Buffer.alloc(0)));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.message).toMatch(/exceed maximum message size of 4194304/);
    expect((await rejection(client.call(SVC, 'Echo', Buffer.alloc(MAX_MESSAGE_LENGTH)))).code).toBe(Code.ResourceExhausted);
    const nearMax = Buffer.alloc(MAX_MESSAGE_LENGTH - 100, 7);
    expect((await client.call(SVC, 'Echo', nearMax)).equals(nearMax)).toBe(true);
  });

  it('answers InvalidArgument (3) to an even stream id and to a garbage envelope', async () => {
    await start();
    const peer = await raw();
    peer.request(2, 'Echo', Buffer.from('x'));
    expect((await peer.response(2)).status?.code).toBe(Code.InvalidArgument);
    peer.send(5, Buffer.from([0xff, 0xff, 0xff, 0xff]));
    const garbage = await peer.response(5);
    expect(garbage.status?.code).toBe(Code.InvalidArgument);
    expect(garbage.status?.message).toMatch(/unmarshal request error/);
    peer.send(9, Buffer.from('whatever'), FrameType.Data); // ignored
    peer.request(7, 'Echo', Buffer.from('fine'));
    expect((await peer.response(7)).payload.toString()).toBe('fine');
  });

  it('bounds calls in flight per connection', async () => {
    const release: Array<() => void> = [];
    const client = await start({ maxInFlight: 2 }, (s) =>
      s.register(SVC, 'Hold', () => new Promise<Uint8Array>((resolve) => release.push(() => resolve(Buffer.from('done'))))),
    );
    const a = client.call(SVC, 'Hold', Buffer.alloc(0));
    const b = client.call(SVC, 'Hold', Buffer.alloc(0));
    const c = await rejection(client.call(SVC, 'Hold', Buffer.alloc(0)));
    expect(c.code).toBe(Code.ResourceExhausted);
    expect(release.length).toBe(2);
    for (const r of release) r();
    expect((await Promise.all([a, b])).map(String)).toEqual(['done', 'done']);
  });

  it('rejects pending calls with Unavailable (14) when the client closes', async () => {
    let aborted: AbortSignal | undefined;
    const client = await start({}, (s) =>
      s.register(SVC, 'Hang', (_p, ctx) => {
        aborted = ctx.signal;
        return new Promise<Uint8Array>(() => {});
      }),
    );
    const p = client.call(SVC, 'Hang', Buffer.alloc(0));
    await withDeadline(
      (async () => {
        while (!aborted) await sleep(5);
      })(),
      2000,
      'handler start',
    );
    const closing = client.close();
    expect((await rejection(p)).code).toBe(Code.Unavailable);
    await withDeadline(closing, 3000, 'client close');
    await withDeadline(client.closed, 3000, 'client closed');
    expect(client.isClosed).toBe(true);
    expect((await rejection(client.call(SVC, 'Echo', Buffer.alloc(0)))).code).toBe(Code.Unavailable);
    await withDeadline(
      (async () => {
        while (!aborted?.aborted) await sleep(5);
      })(),
      3000,
      'server abort on close',
    );
    await withDeadline(
      (async () => {
        while (server.connections.size > 0) await sleep(5);
      })(),
      3000,
      'server forgets connection',
    );
  });

  it('rejects pending calls with Unavailable when the server closes, and tracks connections', async () => {
    const seen: number[] = [];
    const client = await start({}, (s) => {
      s.register(SVC, 'Hang', () => new Promise<Uint8Array>(() => {}));
      s.onConnection((c) => seen.push(c.id));
    });
    const pending = rejection(client.call(SVC, 'Hang', Buffer.alloc(0)));
    await client.call(SVC, 'Echo', Buffer.alloc(0));
    expect(server.connections.size).toBe(1);
    await withDeadline(server.close(), 3000, 'server close');
    expect((await pending).code).toBe(Code.Unavailable);
    await withDeadline(client.closed, 3000, 'client closed');
    expect(server.connections.size).toBe(0);
    await server.close(); // idempotent
    expect(seen.length).toBe(1);
  });
});

describe('unix socket specifics', () => {
  let dir: string;
  const pids: number[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ttrpc-unix-'));
  });
  afterEach(async () => {
    for (const pid of pids.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('removes a stale socket file, refuses a live one, and removes its own on close', async () => {
    const path = join(dir, 'stale.sock');
    // A process that dies without closing leaves its socket file behind.
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    pids.push(child.pid!);
    await withDeadline(new Promise((resolve) => child.stdout!.once('data', resolve)), 5000, 'child listening');
    const live = new TtrpcServer();
    await expect(live.listen(path)).rejects.toThrow(/in use/);
    await live.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    process.kill(child.pid!, 'SIGKILL');
    await withDeadline(exited, 5000, 'child exit');
    expect((await stat(path)).isSocket()).toBe(true);

    const server = new TtrpcServer();
    server.register(SVC, 'Echo', async (p) => p);
    const connected: number[] = [];
    server.onConnection((c) => connected.push(c.id));
    await server.listen(path);
    const client = await TtrpcClient.connect(path, 2000);
    expect((await client.call(SVC, 'Echo', Buffer.from('hi'))).toString()).toBe('hi');
    expect(connected.length).toBe(1);
    await client.close();
    await withDeadline(server.close(), 3000, 'server close');
    await expect(stat(path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('TtrpcClient.connect fails with Unavailable when nothing listens', async () => {
    const err = await rejection(TtrpcClient.connect(join(dir, 'none.sock'), 1000));
    expect(err.code).toBe(Code.Unavailable);
  });
});
