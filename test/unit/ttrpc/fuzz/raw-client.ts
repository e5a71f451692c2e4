// A client that speaks raw bytes to a ttrpc server and collects what comes
// back, and a way to get hold of the server's side of the next connection.
import { once } from 'node:events';
import net from 'node:net';
import { FrameDecoder, FrameType } from '../../../../src/ttrpc/frame-codec';
import { decodeResponse } from '../../../../src/ttrpc/messages';
import type { ServerConnection, TtrpcServer } from '../../../../src/ttrpc/server';
import { withDeadline } from './deadline';

export interface Received {
  streamId: number;
  code: number;
  message: string;
  payload: Buffer;
}

/** A client speaking raw bytes; collects the answers and notices the close. */
export class Peer {
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

export function nextConnection(server: TtrpcServer): Promise<ServerConnection> {
  return new Promise((resolve) => {
    const off = server.onConnection((conn) => {
      off();
      resolve(conn);
    });
  });
}
