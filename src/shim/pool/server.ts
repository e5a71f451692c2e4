// The pool socket: one JSON request line per connection, one reply line.
// Only root reaches it (0600 in a directory only root writes); a second pool
// on the same socket is refused, a dead one's socket file replaced.
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { failedPrecondition } from '../../common/errors';
import type { Logger } from '../../common/logging';
import { canConnect } from '../socket-probe';
import type { WarmPool } from './pool';
import { MAX_LINE_BYTES, parseRequest } from './protocol';

const REQUEST_TIMEOUT_MS = 5_000;

function handle(sock: Socket, pool: WarmPool, log: Logger): void {
  let buf = '';
  let answered = false;
  sock.setEncoding('utf8');
  sock.setTimeout(REQUEST_TIMEOUT_MS, () => sock.destroy());
  sock.on('error', () => sock.destroy());
  const reply = (v: object): void => {
    answered = true;
    sock.end(`${JSON.stringify(v)}\n`);
  };
  sock.on('data', (chunk: string) => {
    if (answered) return;
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl < 0) {
      if (buf.length > MAX_LINE_BYTES) reply({ ok: false, reason: `request longer than ${MAX_LINE_BYTES} bytes` });
      return;
    }
    answered = true;
    let req: ReturnType<typeof parseRequest>;
    try {
      req = parseRequest(buf.slice(0, nl));
    } catch (err) {
      reply({ ok: false, reason: `bad request: ${(err as Error).message}` });
      return;
    }
    if (req.op === 'status') {
      reply(pool.status());
      return;
    }
    sock.setTimeout(0);
    pool.take(req).then(reply, (err: Error) => {
      log.error({ err: err.message }, 'take failed');
      reply({ ok: false, reason: err.message });
    });
  });
}

/** Listens on socketPath; FailedPrecondition if another pool already answers there. */
export async function servePool(pool: WarmPool, socketPath: string, log: Logger): Promise<Server> {
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  if (await canConnect(socketPath, 1000)) throw failedPrecondition(`another warm pool already serves on ${socketPath}`);
  try {
    unlinkSync(socketPath);
  } catch {
    /* none left behind */
  }
  const server = createServer((sock) => handle(sock, pool, log));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o600);
  return server;
}
