// The shim's (and the CLI's) side of the warm pool socket: one request line,
// one reply line, under a deadline.
import { connect } from 'node:net';
import { TernError } from '../../common/errors';
import { MAX_LINE_BYTES, type PoolRequest } from './protocol';

/** Sends one request and resolves with the reply line; Unavailable / DeadlineExceeded on failure. */
export function poolRequest(socketPath: string, req: PoolRequest, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    let settled = false;
    const finish = (err: Error | undefined, line?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(line!);
    };
    const timer = setTimeout(() => finish(new TernError('DeadlineExceeded', `warm pool at ${socketPath} did not answer within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(undefined, buf.slice(0, nl));
      else if (buf.length > MAX_LINE_BYTES) finish(new TernError('Internal', `warm pool reply longer than ${MAX_LINE_BYTES} bytes`));
    });
    sock.on('error', (err) => finish(new TernError('Unavailable', `warm pool at ${socketPath}: ${err.message}`, { cause: err })));
    sock.on('close', () => finish(new TernError('Unavailable', `warm pool at ${socketPath} closed the connection without a reply`)));
  });
}
