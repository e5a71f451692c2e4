// ttrpc server: handlers are registered per service/method; serve() speaks
// the protocol on any duplex byte stream (unix socket, virtio-serial port).
// Per request frame: check the stream id (odd), the size (oversize answers
// ResourceExhausted, the connection lives on), the in-flight bound, decode
// the envelope, find the handler (Unimplemented if none), run it with a
// context whose signal aborts on deadline or connection close, and answer
// exactly once on the same stream id; calls are answered in any order.
// Reading pauses while the peer does not take the answers (write backpressure).
import net from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, FrameType, MAX_MESSAGE_LENGTH, type DecodedFrame } from './frame-codec';
import { decodeRequest, encodeResponse, type RequestMessage } from './messages';
import { Code, oversizeMessage, statusFromError, TtrpcError, type Status } from './status';

export interface CallContext {
  service: string;
  method: string;
  /** Metadata sent by the client; keys lowercased. */
  metadata: Record<string, string[]>;
  /** Absolute deadline in ms since the epoch, from the request's timeout_nano. */
  deadline?: number;
  /** Aborted when the deadline passes or the connection closes. */
  signal: AbortSignal;
  streamId: number;
}

export type Handler = (payload: Buffer, ctx: CallContext) => Promise<Uint8Array>;

export type ServerLog = (level: 'debug' | 'warn', msg: string, fields?: Record<string, unknown>) => void;

export interface ServerOptions {
  /** Calls in flight per connection before new ones get ResourceExhausted (default 1024). */
  maxInFlight?: number;
  maxMessageLength?: number;
  log?: ServerLog;
  /** How long close() lets a connection flush before destroying it (default 1000 ms). */
  closeGraceMs?: number;
}

export const DEFAULT_MAX_IN_FLIGHT = 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Call {
  timer?: NodeJS.Timeout;
  controller: AbortController;
}

interface ServerCore {
  lookup(service: string, method: string): Handler | Status;
  maxInFlight: number;
  maxMessageLength: number;
  closeGraceMs: number;
  log: ServerLog;
  removed(conn: ServerConnection): void;
}

let nextConnectionId = 1;

/** One peer connection; exposed so callers can track connections (see TtrpcServer.onConnection). */
export class ServerConnection {
  readonly id = nextConnectionId++;
  readonly closed: Promise<void>;
  private readonly decoder: FrameDecoder;
  private readonly calls = new Map<number, Call>();
  private closing = false;
  private done = false;
  private readPaused = false;
  private resolveClosed!: () => void;

  constructor(
    private readonly core: ServerCore,
    readonly stream: Duplex,
  ) {
    this.decoder = new FrameDecoder(core.maxMessageLength);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    // The peer finished sending: like ttrpc-go, the connection is over.
    stream.on('end', () => void this.close());
    stream.on('error', (err) => {
      this.core.log('debug', 'ttrpc server: connection error', { conn: this.id, err: err.message });
      this.finish();
    });
    stream.on('close', () => this.finish());
    if (stream.destroyed) this.finish();
  }

  get inFlight(): number {
    return this.calls.size;
  }

  /** Stop taking calls, abort the ones in flight, flush what was written and end the stream. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.abortAll();
      if (!this.stream.destroyed) {
        this.stream.end();
        const t = setTimeout(() => this.stream.destroy(), this.core.closeGraceMs);
        t.unref();
        void this.closed.then(() => clearTimeout(t));
      }
    }
    return this.closed;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.closing = true;
    this.abortAll();
    if (!this.stream.destroyed) this.stream.destroy();
    this.core.removed(this);
    this.resolveClosed();
  }

  private abortAll(): void {
    for (const call of this.calls.values()) {
      clearTimeout(call.timer);
      call.controller.abort(new TtrpcError(Code.Canceled, 'ttrpc: connection closed'));
    }
    this.calls.clear();
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    for (const frame of this.decoder.push(chunk)) this.onFrame(frame);
  }

  private onFrame(frame: DecodedFrame): void {
    const { streamId } = frame;
    if (frame.type !== FrameType.Request) {
      // v1.1 has nothing else a client may send; ignore for forward compatibility.
      this.core.log('debug', 'ttrpc server: ignoring frame', { conn: this.id, streamId, type: frame.type });
      return;
    }
    if (streamId % 2 === 0) {
      this.reply(streamId, { code: Code.InvalidArgument, message: 'StreamID must be odd for client initiated streams' });
      return;
    }
    if (frame.oversize !== undefined) {
      this.reply(streamId, { code: Code.ResourceExhausted, message: oversizeMessage(frame.oversize, this.core.maxMessageLength) });
      return;
    }
    if (this.calls.has(streamId)) {
      this.core.log('warn', 'ttrpc server: stream id reused while in flight; ignored', { conn: this.id, streamId });
      return;
    }
    if (this.calls.size >= this.core.maxInFlight) {
      this.reply(streamId, { code: Code.ResourceExhausted, message: `too many calls in flight (${this.core.maxInFlight})` });
      return;
    }
    let req: RequestMessage;
    try {
      req = decodeRequest(frame.payload);
    } catch (err) {
      this.reply(streamId, { code: Code.InvalidArgument, message: `unmarshal request error: ${(err as Error).message}` });
      return;
    }
    const found = this.core.lookup(req.service, req.method);
    if (typeof found !== 'function') {
      this.reply(streamId, found);
      return;
    }
    this.start(streamId, req, found);
  }

  private start(streamId: number, req: RequestMessage, handler: Handler): void {
    const call: Call = { controller: new AbortController() };
    this.calls.set(streamId, call);
    // No prototype: a key such as "__proto__" or "constructor" is just a key.
    const metadata: Record<string, string[]> = Object.create(null);
    for (const { key, value } of req.metadata) (metadata[key.toLowerCase()] ??= []).push(value);
    let deadline: number | undefined;
    if (req.timeoutNano > 0) {
      const ms = req.timeoutNano / 1e6;
      deadline = Date.now() + ms;
      if (ms <= MAX_TIMER_MS) {
        call.timer = setTimeout(
          () => {
            const message = `deadline exceeded: ${req.service}/${req.method} after ${Math.round(ms)} ms`;
            call.controller.abort(new TtrpcError(Code.DeadlineExceeded, message));
            this.settle(streamId, call, { code: Code.DeadlineExceeded, message });
          },
          Math.max(0, Math.ceil(ms)),
        );
      }
    }
    const ctx: CallContext = {
      service: req.service,
      method: req.method,
      metadata,
      deadline,
      signal: call.controller.signal,
      streamId,
    };
    Promise.resolve()
      .then(() => handler(req.payload, ctx))
      .then(
        (payload: unknown) =>
          this.settle(
            streamId,
            call,
            payload instanceof Uint8Array ? payload : { code: Code.Internal, message: `handler ${req.service}/${req.method} returned no bytes` },
          ),
        (err: unknown) => this.settle(streamId, call, statusFromError(err)),
      );
  }

  // Answer a call once; later outcomes (after a deadline or close) are dropped.
  private settle(streamId: number, call: Call, outcome: Uint8Array | Status): void {
    if (this.calls.get(streamId) !== call) return;
    this.calls.delete(streamId);
    clearTimeout(call.timer);
    if (outcome instanceof Uint8Array) this.send(streamId, Buffer.from(outcome.buffer, outcome.byteOffset, outcome.length));
    else this.reply(streamId, outcome);
  }

  private reply(streamId: number, status: Status): void {
    let encoded = encodeResponse({ status: { ...status, details: [] }, payload: Buffer.alloc(0) });
    if (encoded.length > this.core.maxMessageLength) {
      // The message quotes the request (a huge id or method name): cut it so the answer can still be sent.
      const message = Buffer.from(status.message)
        .subarray(0, Math.max(0, this.core.maxMessageLength - 64))
        .toString('utf8');
      encoded = encodeResponse({ status: { code: status.code, message, details: [] }, payload: Buffer.alloc(0) });
    }
    this.write(streamId, encoded);
  }

  private send(streamId: number, payload: Buffer): void {
    const encoded = encodeResponse({ payload });
    if (encoded.length > this.core.maxMessageLength) {
      this.reply(streamId, { code: Code.ResourceExhausted, message: oversizeMessage(encoded.length, this.core.maxMessageLength) });
      return;
    }
    this.write(streamId, encoded);
  }

  private write(streamId: number, response: Uint8Array): void {
    if (this.done || this.stream.destroyed || !this.stream.writable) return;
    const flushed = this.stream.write(encodeFrame(streamId, FrameType.Response, response, 0, this.core.maxMessageLength));
    // A peer that sends requests but does not read the answers: stop reading
    // its requests until it does, so the answers waiting here stay bounded.
    if (!flushed && !this.readPaused) {
      this.readPaused = true;
      this.stream.pause();
      this.stream.once('drain', () => {
        this.readPaused = false;
        this.stream.resume();
      });
    }
  }
}

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, Handler>>();
  private readonly conns = new Set<ServerConnection>();
  private readonly listeners: net.Server[] = [];
  private readonly connectionHooks = new Set<(conn: ServerConnection) => void>();
  private readonly core: ServerCore;
  private closePromise: Promise<void> | undefined;

  constructor(opts: ServerOptions = {}) {
    this.core = {
      lookup: (service, method) => this.lookup(service, method),
      maxInFlight: opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      maxMessageLength: opts.maxMessageLength ?? MAX_MESSAGE_LENGTH,
      closeGraceMs: opts.closeGraceMs ?? 1000,
      log: opts.log ?? (() => {}),
      removed: (conn) => this.conns.delete(conn),
    };
  }

  register(service: string, method: string, handler: Handler): void {
    let methods = this.services.get(service);
    if (!methods) this.services.set(service, (methods = new Map()));
    if (methods.has(method)) throw new Error(`ttrpc: ${service}/${method} is already registered`);
    methods.set(method, handler);
  }

  /** Called for every new connection (served or accepted); returns a function that removes the hook. */
  onConnection(hook: (conn: ServerConnection) => void): () => void {
    this.connectionHooks.add(hook);
    return () => this.connectionHooks.delete(hook);
  }

  get connections(): ReadonlySet<ServerConnection> {
    return this.conns;
  }

  /** Speak ttrpc on a connected duplex stream until it closes. */
  serve(stream: Duplex): ServerConnection {
    const conn = new ServerConnection(this.core, stream);
    if (this.closePromise) {
      void conn.close();
      return conn;
    }
    this.conns.add(conn);
    for (const hook of this.connectionHooks) hook(conn);
    return conn;
  }

  /** Listen on a unix socket; a stale socket file left by a dead process is removed first. */
  async listen(socketPath: string): Promise<void> {
    if (this.closePromise) throw new Error('ttrpc: server is closed');
    await removeStaleSocket(socketPath);
    const srv = net.createServer((sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(socketPath, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    srv.on('error', (err) => this.core.log('warn', 'ttrpc server: listener error', { socketPath, err: err.message }));
    this.listeners.push(srv);
  }

  /** Stop listening (the socket file is removed) and end every connection. Idempotent. */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      const stopped = this.listeners.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve())));
      await Promise.all([...stopped, ...[...this.conns].map((c) => c.close())]);
    })();
    return this.closePromise;
  }

  private lookup(service: string, method: string): Handler | Status {
    const methods = this.services.get(service);
    if (!methods) return { code: Code.Unimplemented, message: `service ${service}: not implemented` };
    const handler = methods.get(method);
    if (!handler) return { code: Code.Unimplemented, message: `method ${service}/${method}: not implemented` };
    return handler;
  }
}

async function removeStaleSocket(socketPath: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(socketPath)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new Error(`ttrpc: ${socketPath} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const sock = net.createConnection(socketPath);
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, 1000);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (live) throw Object.assign(new Error(`ttrpc: ${socketPath} is in use by a live server`), { code: 'EADDRINUSE' });
  await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
