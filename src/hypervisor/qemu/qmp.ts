// QMP client over a unix socket: reads the greeting, negotiates capabilities,
// runs commands (replies matched by `id`, answered in order), and re-emits
// asynchronous events. QMP serves one client at a time: keep one per VM.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { TernError, type ErrorCodeName } from '../../common/errors.js';
import { encodeCommand, parseQmpMessage, splitLines } from './qmp-lines.js';

export const DEFAULT_QMP_TIMEOUT_MS = 10_000;
const CONNECT_RETRY_MS = 10;

const CLASS_TO_CODE: Record<string, ErrorCodeName> = {
  DeviceNotFound: 'NotFound',
  CommandNotFound: 'NotImplemented',
  DeviceNotActive: 'FailedPrecondition',
  KVMMissingCap: 'FailedPrecondition',
};

/** A command QEMU refused: carries QMP's own error `class` and `desc`. */
export class QmpError extends TernError {
  readonly qmpClass: string;
  readonly desc: string;
  readonly command: string;
  constructor(command: string, qmpClass: string, desc: string) {
    super(CLASS_TO_CODE[qmpClass] ?? 'Internal', `QMP ${command}: ${qmpClass}: ${desc}`);
    this.qmpClass = qmpClass;
    this.desc = desc;
    this.command = command;
  }
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface QmpClientEvents {
  event: [name: string, data: unknown];
  close: [];
}

export class QmpClient extends EventEmitter<QmpClientEvents> {
  private readonly socket: net.Socket;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private rest = '';
  private closedErr: TernError | undefined;
  private greetingWaiter: { resolve(): void; reject(err: Error): void } | undefined;
  private greeted = false;

  private constructor(socket: net.Socket) {
    super();
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.onClose(err));
    socket.on('close', () => this.onClose());
  }

  /** Connects to a QMP unix socket, waits for the greeting and leaves capability negotiation mode. */
  static async connect(path: string, timeoutMs = DEFAULT_QMP_TIMEOUT_MS): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    // QEMU binds its socket before it listens on it: a connect that falls
    // between the two is refused. Retry that until the deadline.
    let socket: net.Socket;
    for (;;) {
      try {
        socket = await QmpClient.dial(path, Math.max(1, deadline - Date.now()));
        break;
      } catch (err) {
        const code = ((err as TernError).cause as NodeJS.ErrnoException | undefined)?.code;
        if (code !== 'ECONNREFUSED' || Date.now() + CONNECT_RETRY_MS >= deadline) throw err;
        await new Promise((r) => setTimeout(r, CONNECT_RETRY_MS));
      }
    }
    const client = new QmpClient(socket);
    try {
      await client.waitGreeting(Math.max(1, deadline - Date.now()));
      await client.execute('qmp_capabilities', undefined, Math.max(1, deadline - Date.now()));
    } catch (err) {
      client.close();
      throw err;
    }
    return client;
  }

  private static dial(path: string, timeoutMs: number): Promise<net.Socket> {
    return new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(path);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new TernError('DeadlineExceeded', `QMP connect to ${path}: no connection after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new TernError('Unavailable', `QMP connect to ${path}: ${err.message}`, { cause: err }));
      });
    });
  }

  get closed(): boolean {
    return this.closedErr !== undefined;
  }

  private waitGreeting(timeoutMs: number): Promise<void> {
    if (this.greeted) return Promise.resolve();
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWaiter = undefined;
        reject(new TernError('DeadlineExceeded', `QMP: no greeting within ${timeoutMs} ms (another client connected?)`));
      }, timeoutMs);
      this.greetingWaiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  /** Runs a QMP command and resolves with its `return` value; rejects with QmpError on a QMP error. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_QMP_TIMEOUT_MS): Promise<unknown> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        // The late reply (if any) carries this id and is then ignored.
        this.pending.delete(id);
        reject(new TernError('DeadlineExceeded', `QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      this.socket.write(encodeCommand(command, args, id));
    });
  }

  /**
   * Resolves with the data of the next event `name` (for which `match` holds, if given).
   * Register it before the command that triggers the event. `signal` cancels the wait.
   */
  waitEvent(name: string, timeoutMs: number, match?: (data: unknown) => boolean, signal?: AbortSignal): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onEvent = (ev: string, data: unknown) => {
        if (ev === name && (!match || match(data))) finish(() => resolve(data));
      };
      const onClose = () => finish(() => reject(this.closedErr ?? new TernError('Unavailable', `QMP closed while waiting for ${name}`)));
      const onAbort = () => finish(() => reject(new TernError('Canceled', `wait for QMP event ${name} canceled`)));
      const timer = setTimeout(() => finish(() => reject(new TernError('DeadlineExceeded', `QMP event ${name} not seen within ${timeoutMs} ms`))), timeoutMs);
      if (signal?.aborted) return onAbort();
      if (this.closedErr) return onClose();
      this.on('event', onEvent);
      this.on('close', onClose);
      signal?.addEventListener('abort', onAbort);
    });
  }

  /** Closes the connection; pending commands reject with Unavailable. Idempotent. */
  close(): void {
    this.socket.destroy();
    this.onClose();
  }

  private onData(chunk: string): void {
    const { lines, rest } = splitLines(this.rest, chunk);
    this.rest = rest;
    for (const line of lines) {
      let msg: ReturnType<typeof parseQmpMessage>;
      try {
        msg = parseQmpMessage(line);
      } catch {
        continue; // QMP only sends JSON; ignore a garbled line rather than tearing the VM down.
      }
      switch (msg.kind) {
        case 'greeting':
          this.greeted = true;
          this.greetingWaiter?.resolve();
          this.greetingWaiter = undefined;
          break;
        case 'return':
        case 'error': {
          const p = this.takePending(msg.id);
          if (!p) break;
          clearTimeout(p.timer);
          if (msg.kind === 'return') p.resolve(msg.value);
          else p.reject(new QmpError(p.command, msg.errorClass, msg.desc));
          break;
        }
        case 'event':
          this.emit('event', msg.name, msg.data);
          break;
        case 'unknown':
          break;
      }
    }
  }

  /** Replies carry our numeric id; a reply without one goes to the oldest pending command (QMP answers in order). */
  private takePending(id: unknown): Pending | undefined {
    let key: number | undefined;
    if (typeof id === 'number') key = id;
    else if (id === undefined) key = this.pending.keys().next().value;
    if (key === undefined) return undefined;
    const p = this.pending.get(key);
    this.pending.delete(key);
    return p;
  }

  private onClose(err?: Error): void {
    if (this.closedErr) return;
    this.closedErr = new TernError('Unavailable', `QMP connection closed${err ? `: ${err.message}` : ''}`, {
      cause: err,
    });
    this.socket.destroy();
    this.greetingWaiter?.reject(this.closedErr);
    this.greetingWaiter = undefined;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.closedErr);
    }
    this.pending.clear();
    this.emit('close');
  }
}
