// ttrpc client on any duplex byte stream: each call takes the next odd
// stream id (1, 3, 5, ...), sends one request frame and settles when the
// response frame with that id arrives. Calls run concurrently. A non-OK
// status rejects with TtrpcError(code); a local timeout rejects with
// DeadlineExceeded (and the server is told through timeout_nano); when the
// stream closes every pending call rejects with Unavailable.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { encodeFrame, FrameDecoder, FrameType, MAX_MESSAGE_LENGTH, type DecodedFrame } from './frame-codec';
import { decodeResponse, encodeRequest, type KeyValue, type ResponseMessage } from './messages';
import { Code, oversizeMessage, TtrpcError } from './status';

export interface CallOptions {
  /** Fail the call locally after this long; also sent to the server as timeout_nano. */
  timeoutMs?: number;
  metadata?: Record<string, string | string[]>;
  /** Aborting rejects the call with Canceled (the server's answer is then ignored). */
  signal?: AbortSignal;
}

export interface ClientOptions {
  maxMessageLength?: number;
  /** How long close() lets the stream flush before destroying it (default 1000 ms). */
  closeGraceMs?: number;
}

interface Pending {
  resolve(payload: Buffer): void;
  reject(err: TtrpcError): void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const MAX_STREAM_ID = 0xffffffff;

export class TtrpcClient {
  /** Resolves once the underlying stream has closed (never rejects). */
  readonly closed: Promise<void>;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private readonly maxMessageLength: number;
  private readonly closeGraceMs: number;
  private nextStreamId = 1;
  private isDone = false;
  private closeError: Error | undefined;
  private resolveClosed!: () => void;

  constructor(
    private readonly stream: Duplex,
    opts: ClientOptions = {},
  ) {
    this.maxMessageLength = opts.maxMessageLength ?? MAX_MESSAGE_LENGTH;
    this.closeGraceMs = opts.closeGraceMs ?? 1000;
    this.decoder = new FrameDecoder(this.maxMessageLength);
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    stream.on('data', (chunk: Buffer) => {
      for (const frame of this.decoder.push(chunk)) this.onFrame(frame);
    });
    stream.on('end', () => this.finish());
    stream.on('error', (err) => {
      this.closeError ??= err;
      this.finish();
    });
    stream.on('close', () => this.finish());
    if (stream.destroyed) this.finish();
  }

  /** Connect to a ttrpc server on a unix socket; rejects with Unavailable or DeadlineExceeded. */
  static connect(socketPath: string, timeoutMs: number, opts?: ClientOptions): Promise<TtrpcClient> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      const timer = setTimeout(
        () => {
          sock.destroy();
          reject(new TtrpcError(Code.DeadlineExceeded, `ttrpc: connect ${socketPath}: timed out after ${timeoutMs} ms`));
        },
        Math.min(Math.max(0, timeoutMs), MAX_TIMER_MS),
      );
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(new TtrpcError(Code.Unavailable, `ttrpc: connect ${socketPath}: ${err.message}`, { cause: err }));
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new TtrpcClient(sock, opts));
      });
    });
  }

  get isClosed(): boolean {
    return this.isDone;
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Buffer> {
    if (this.isDone || this.stream.destroyed || !this.stream.writable) {
      return Promise.reject(this.unavailable());
    }
    const { signal, timeoutMs } = opts;
    if (signal?.aborted) {
      return Promise.reject(new TtrpcError(Code.Canceled, `ttrpc: ${service}/${method}: canceled`, { cause: signal.reason }));
    }
    const metadata: KeyValue[] = [];
    for (const [key, v] of Object.entries(opts.metadata ?? {})) {
      for (const value of Array.isArray(v) ? v : [v]) metadata.push({ key, value });
    }
    const request = encodeRequest({
      service,
      method,
      payload: Buffer.from(payload.buffer, payload.byteOffset, payload.length),
      timeoutNano: timeoutMs !== undefined && timeoutMs > 0 ? Math.round(timeoutMs * 1e6) : 0,
      metadata,
    });
    if (request.length > this.maxMessageLength) {
      return Promise.reject(new TtrpcError(Code.ResourceExhausted, oversizeMessage(request.length, this.maxMessageLength)));
    }
    const streamId = this.allocateStreamId();
    return new Promise<Buffer>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => settle(new TtrpcError(Code.Canceled, `ttrpc: ${service}/${method}: canceled`, { cause: signal?.reason }));
      const settle = (outcome: Buffer | TtrpcError) => {
        if (this.pending.get(streamId) !== entry) return;
        this.pending.delete(streamId);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (outcome instanceof TtrpcError) reject(outcome);
        else resolve(outcome);
      };
      const entry: Pending = { resolve: settle, reject: settle };
      this.pending.set(streamId, entry);
      if (timeoutMs !== undefined && timeoutMs > 0 && timeoutMs <= MAX_TIMER_MS) {
        timer = setTimeout(
          () => settle(new TtrpcError(Code.DeadlineExceeded, `ttrpc: ${service}/${method}: deadline exceeded after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.stream.write(encodeFrame(streamId, FrameType.Request, request, 0, this.maxMessageLength));
    });
  }

  /** End the stream; pending calls reject with Unavailable. Resolves when the stream has closed. */
  close(): Promise<void> {
    if (!this.isDone && !this.stream.destroyed) {
      this.rejectAll();
      this.stream.end();
      const t = setTimeout(() => this.stream.destroy(), this.closeGraceMs);
      t.unref();
      void this.closed.then(() => clearTimeout(t));
    }
    this.finishIfDestroyed();
    return this.closed;
  }

  private finishIfDestroyed(): void {
    if (this.stream.destroyed) this.finish();
  }

  private allocateStreamId(): number {
    for (;;) {
      const id = this.nextStreamId;
      this.nextStreamId = id + 2 > MAX_STREAM_ID ? 1 : id + 2;
      if (!this.pending.has(id)) return id;
    }
  }

  private onFrame(frame: DecodedFrame): void {
    if (frame.type !== FrameType.Response) return;
    const entry = this.pending.get(frame.streamId);
    if (!entry) return; // answer to a call that timed out or was canceled
    if (frame.oversize !== undefined) {
      entry.reject(new TtrpcError(Code.ResourceExhausted, oversizeMessage(frame.oversize, this.maxMessageLength)));
      return;
    }
    let res: ResponseMessage;
    try {
      res = decodeResponse(frame.payload);
    } catch (err) {
      entry.reject(new TtrpcError(Code.Internal, `ttrpc: undecodable response: ${(err as Error).message}`));
      return;
    }
    const code = res.status?.code ?? Code.OK;
    if (code !== Code.OK) entry.reject(new TtrpcError(code, res.status?.message ?? ''));
    else entry.resolve(res.payload);
  }

  private unavailable(): TtrpcError {
    const why = this.closeError ? `: ${this.closeError.message}` : '';
    return new TtrpcError(Code.Unavailable, `ttrpc: connection closed${why}`, { cause: this.closeError });
  }

  private rejectAll(): void {
    for (const entry of [...this.pending.values()]) entry.reject(this.unavailable());
  }

  private finish(): void {
    if (this.isDone) return;
    this.isDone = true;
    this.rejectAll();
    if (!this.stream.destroyed) this.stream.destroy();
    this.resolveClosed();
  }
}
