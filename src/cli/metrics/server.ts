// The HTTP side of `tern metrics serve` (node:http): GET or HEAD /metrics
// answers a scrape in the Prometheus text format, any other path 404, any
// other method 405. Scrapes that arrive while one runs share its answer. On a
// unix socket, a live server already there is refused and a dead one's
// socket file replaced; the socket is 0600 and removed on close.
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { dirname } from 'node:path';
import { failedPrecondition, messageOf } from '../../common/errors';
import { canConnect } from '../../shim/socket-probe';
import { CONTENT_TYPE } from './exposition';
import { formatListen, type ListenAddress } from './listen';

export interface MetricsServer {
  /** Where it listens, as --listen takes it (with the port picked, for port 0). */
  readonly address: string;
  /** Stops listening, ends idle connections and removes the unix socket. */
  close(): Promise<void>;
}

export async function serveMetrics(
  listen: ListenAddress,
  scrape: () => Promise<string>,
  onError: (err: unknown) => void = () => undefined,
): Promise<MetricsServer> {
  let inflight: Promise<string> | undefined;
  const shared = (): Promise<string> => {
    inflight ??= scrape().finally(() => (inflight = undefined));
    return inflight;
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    shared().then(
      (body) => {
        res.writeHead(200, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        onError(err);
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`scrape failed: ${messageOf(err)}\n`);
      },
    );
  };
  const server = createServer(handle);
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  if (listen.kind === 'unix') {
    mkdirSync(dirname(listen.path), { recursive: true, mode: 0o755 });
    if (await canConnect(listen.path, 1000)) throw failedPrecondition(`another server already listens on ${listen.path}`);
    try {
      unlinkSync(listen.path);
    } catch {
      /* none left behind */
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = () => {
      server.off('error', reject);
      resolve();
    };
    if (listen.kind === 'unix') server.listen(listen.path, done);
    else server.listen(listen.port, listen.host, done);
  });
  if (listen.kind === 'unix') chmodSync(listen.path, 0o600);
  server.on('error', onError);

  const bound = server.address();
  const address = listen.kind === 'tcp' && typeof bound === 'object' && bound ? formatListen({ ...listen, port: bound.port }) : formatListen(listen);
  return { address, close: () => closeServer(server, listen) };
}

function closeServer(server: Server, listen: ListenAddress): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      if (listen.kind === 'unix') {
        try {
          unlinkSync(listen.path);
        } catch {
          /* already gone */
        }
      }
      resolve();
    });
    server.closeIdleConnections();
  });
}
